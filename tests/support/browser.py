"""A real browser for the console tests: Debian's headless Chromium driven through Debian's
chromedriver (Selenium), on loopback only, with a fresh profile per browser."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from support.tools import need_tool

T = TypeVar("T")

# A control's name in reports: enough to find it in the template.
_KEY_JS = """function (e) {
  if (!e || e === document.body) { return "(body)"; }
  var text = (e.getAttribute("aria-label") || e.textContent || "").trim().replace(/\\s+/g, " ");
  return e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
    (e.name ? "[name=" + e.name + "]" : "") +
    (e.getAttribute("href") ? "[href=" + e.getAttribute("href") + "]" : "") +
    (text ? " '" + text.slice(0, 40) + "'" : "");
}"""
_VISIBLE_CONTROLS_JS = """Array.prototype.filter.call(document.querySelectorAll(
    "a[href], button, input:not([type=hidden]), select, textarea, summary, " +
    "[tabindex]:not([tabindex='-1'])"),
  function (e) { return !e.disabled && e.getClientRects().length > 0; })"""
_CONTROLS_JS = f"var key = {_KEY_JS}; return {_VISIBLE_CONTROLS_JS}.map(key);"
_UNLABELLED_JS = f"""var key = {_KEY_JS};
return {_VISIBLE_CONTROLS_JS}.filter(function (e) {{
  if (!/^(INPUT|SELECT|TEXTAREA)$/.test(e.tagName)) {{ return false; }}
  return !(e.labels && e.labels.length) && !e.getAttribute("aria-label") &&
    !e.getAttribute("aria-labelledby");
}}).map(key);"""

# The machine has no network: without these, Chromium's background services (updates, sync,
# safe browsing, metrics) keep trying and fill the logs with errors.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--password-store=basic",
    "--window-size=1366,900",  # a laptop screen
)


class Browser:
    """One Chromium window, with the waits and checks the console tests use."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, downloads: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.downloads = downloads

    def fresh(self, base_url: str, downloads: Path) -> Browser:
        """The same window for another test: signed out (no cookies: they are per host, not
        per port), an empty page, no pending dialog or console messages, its own download
        folder. (Starting Chromium takes about 2 s; a module's tests share one.)"""
        with suppress(NoAlertPresentException):
            self.driver.switch_to.alert.dismiss()
        self.driver.get("about:blank")
        # Every site's cookies (WebDriver's own delete only reaches the current page's host).
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        self.driver.get_log("browser")  # read is gone: the next test sees only its own
        downloads.mkdir(parents=True, exist_ok=True)
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        return Browser(self.driver, base_url, downloads)

    def go(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def wait(self, condition: Callable[[webdriver.Chrome], T], timeout: float = 30.0) -> T:
        """``condition``'s first truthy value within ``timeout`` s (checked every 0.1 s).

        An element that goes stale while checked (the page navigated, or the runs list's
        live refresh replaced it) is checked again at the next poll. chromedriver reports some
        of those as a generic error ("Node with given id does not belong to the document", when
        the node went away between finding it and reading it): the same case.
        """

        def checked(d: webdriver.Chrome) -> T | bool:
            try:
                return condition(d)
            except WebDriverException as e:
                if "does not belong to the document" in (e.msg or ""):
                    return False
                raise

        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.1,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(checked)  # type: ignore[return-value]

    def wait_text(self, css: str, expected: str, timeout: float = 30.0) -> WebElement:
        def has_text(d: webdriver.Chrome) -> WebElement | bool:
            found = d.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found and expected in found[0].text else False

        try:
            return self.wait(has_text, timeout)
        except TimeoutException:
            found = self.find_all(css)
            shown = found[0].text if found else "(no such element)"
            raise AssertionError(
                f"{css} did not show {expected!r} within {timeout} s at {self.path()}: {shown!r}"
            ) from None

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def path(self) -> str:
        url = str(self.driver.current_url)
        return url[len(self.base_url) :] if url.startswith(self.base_url) else url

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def screenshot(self, path: Path) -> Path:
        """The whole page (not only the window) as a PNG."""
        width = int(self.js("return document.documentElement.scrollWidth"))
        height = int(self.js("return document.documentElement.scrollHeight"))
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def sign_in(self, token: str, tenant: str = "") -> None:
        """Sign in to the console through its form and wait for the runs page."""
        self.go("/console/sign-in")
        self.fill("#token", token)
        if tenant:
            self.fill("#tenant", tenant)
        self.find("main form button[type=submit]").click()
        self.wait_text("main h1", "Runs")

    def downloaded(self, name: str, timeout: float = 30.0) -> bytes:
        """The bytes of a finished download called ``name``."""
        target = self.downloads / name

        def done(_d: webdriver.Chrome) -> bool:
            partial = list(self.downloads.glob("*.crdownload"))
            return target.is_file() and not partial

        self.wait(done, timeout)
        return target.read_bytes()

    def unlabelled_controls(self) -> list[str]:
        """Visible form controls a screen reader would announce without a name: no <label>,
        no aria-label, no aria-labelledby (buttons are named by their text)."""
        return list(self.js(_UNLABELLED_JS))

    def controls_not_reached_by_tab(self) -> list[str]:
        """Visible controls (links, buttons, fields, <summary>) that pressing Tab from the
        top of the page never focuses: a keyboard user could not reach them."""
        controls: list[str] = list(self.js(_CONTROLS_JS))
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
        reached: set[str] = set()
        # Every control once, plus a margin for the browser's own stops (none in headless).
        for _ in range(len(controls) + 5):
            # A new chain each time: perform() empties the chain it ran.
            ActionChains(self.driver).send_keys(Keys.TAB).perform()
            reached.add(str(self.js(f"return ({_KEY_JS})(document.activeElement)")))
            if reached >= set(controls):
                break
        return [c for c in controls if c not in reached]

    def console_errors(self) -> list[str]:
        """Severe messages of the pages' console: script errors, CSP refusals. (Error statuses
        of pages are left out: the flows ask for refusals on purpose.)"""
        return [
            str(e["message"])
            for e in self.driver.get_log("browser")
            if e.get("level") == "SEVERE"
            and "Failed to load resource: the server responded" not in str(e.get("message"))
        ]


@contextmanager
def chromium(base_url: str) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile and download folder, closed afterwards."""
    binary = need_tool("chromium")
    driver_path = need_tool("chromedriver", "chromium-driver")
    with tempfile.TemporaryDirectory(prefix="stella-chromium-") as tmp:
        profile = Path(tmp) / "profile"
        downloads = Path(tmp) / "downloads"
        downloads.mkdir()
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
            },
        )
        # An explicit chromedriver: Selenium never looks for (or downloads) a driver itself.
        service = Service(executable_path=driver_path)
        try:
            driver = webdriver.Chrome(options=options, service=service)
        except WebDriverException as e:
            raise AssertionError(f"chromium did not start: {e.msg}") from e
        try:
            driver.execute_cdp_cmd(
                "Browser.setDownloadBehavior",
                {"behavior": "allow", "downloadPath": str(downloads)},
            )
            yield Browser(driver, base_url, downloads)
        finally:
            driver.quit()
