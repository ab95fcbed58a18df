"""The web console in a real browser (Debian's Chromium, headless, on loopback): sign in,
create a profile, start a run and watch it succeed live, download its archive, a failed run's
error, another tenant's runs, CSRF, sign-out, keyboard use, and a screenshot of every page.

The server is the API application with its console under uvicorn, and a worker in the same
process whose runs of ``gated-*`` profiles wait for the test after their first progress report
(support/console.py): the browser sees a run that is really still running.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from export_center.devportal.assets import scan_asset
from export_center.importer import generations
from export_center.planner.profiles import parse_profile_spec
from export_center.runs.clock import utcnow
from export_center.runtime.container import Services
from export_center.service.auth import TokenStore
from export_center.settings import Settings
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from support.browser import Browser
from support.console import ACME_RECORDS, Gate, Tokens
from support.service import LiveServer, free_port, wait_for


def _page(browser: Browser, shots: Path, name: str) -> None:
    """Check the page in front of the browser as served, and screenshot it to ``name``.png:
    the rendered HTML passes the devportal's no-external-assets check, every field has a
    label, and Tab from the top reaches every control."""
    browser.screenshot(shots / f"{name}.png")  # first: the Tab walk below moves the focus
    html = browser.driver.page_source
    assert [str(f) for f in scan_asset(f"{name}.html", html)] == []
    assert browser.unlabelled_controls() == [], name
    assert browser.controls_not_reached_by_tab() == [], name


def _status_is(browser: Browser, status: str) -> None:
    browser.wait_text("#run-status", status)


def _progress(browser: Browser) -> float:
    return float(browser.find("#run-progress").get_attribute("value") or "nan")


def test_sign_in_create_profile_run_live_and_download(
    browser: Browser,
    api: httpx.Client,
    settings: Settings,
    tokens: Tokens,
    gate: Gate,
    shots: Path,
) -> None:
    # Signed out: any page leads to the sign-in form, which comes back to the page.
    browser.go("/console/profiles")
    assert browser.path().startswith("/console/sign-in?")
    _page(browser, shots, "sign-in")
    browser.fill("#token", "stl_not-a-token")
    browser.find("main form button[type=submit]").click()
    browser.wait_text(".error", "ERR_EXPORT_UNAUTHENTICATED")
    browser.fill("#token", tokens.acme)
    browser.find("main form button[type=submit]").click()
    browser.wait_text("main h1", "Profiles")
    assert browser.text("#tenant") == "acme"

    # Create a profile through the form: first refused by the API's own validation (the
    # message and field path are the API's), then accepted.
    browser.find("a.button.primary").click()
    browser.wait_text("main h1", "New profile")
    browser.fill("#name", "gated-nightly")
    Select(browser.find("#compression")).select_by_value("zstd")
    browser.fill("#level", "30")
    browser.fill("#sources", "feed")
    _page(browser, shots, "profile-new")
    browser.find("form.form-grid button[type=submit]").click()
    refusal = browser.wait_text(".error", "ERR_EXPORT_BAD_INPUT").text
    assert "compression.level" in refusal
    assert browser.find("#name").get_attribute("value") == "gated-nightly"
    assert api.get("/api/export/profiles/gated-nightly").status_code == 404
    browser.fill("#level", "7")
    browser.find("form.form-grid button[type=submit]").click()
    browser.wait_text(".notice", "Profile gated-nightly created")
    created = api.get("/api/export/profiles/gated-nightly").json()
    assert created["revision"] == 1
    assert created["spec"]["compression"] == {"algorithm": "zstd", "level": 7}
    assert created["spec"]["selectors"]["sources"] == ["feed"]

    # Start a run from the profile's row; the run holds after its first progress report.
    browser.find("#p-gated-nightly button[aria-label^='Start a run']").click()
    browser.wait_text("main h1", "Run of gated-nightly")
    run_id = browser.path().rsplit("/", 1)[-1]
    _status_is(browser, "running")
    browser.wait_text("#timeline", "progress")
    assert 0 < _progress(browser) < 100
    assert "200 of 450 items" in browser.text("#run-progress-label")
    _page(browser, shots, "run-running")

    # Live: the same page (no reload: the marker survives) follows the run to the end.
    browser.js("window.__sameDocument = 'yes'")
    gate.release()
    _status_is(browser, "succeeded")
    browser.wait(lambda d: _progress(browser) == 100.0)
    link = browser.wait(lambda d: d.find_elements(By.ID, "download-archive"))[0]
    assert browser.js("return window.__sameDocument") == "yes"
    timeline = browser.text("#timeline")
    for event in ("queued", "started", "progress", "artifact_ready", "succeeded"):
        assert event in timeline
    run = api.get(f"/api/export/runs/{run_id}").json()
    assert run["status"] == "succeeded"
    artifact = run["artifact"]
    assert browser.text(".digest") == f"sha256 {artifact['sha256']}"
    command = browser.text("#verify-command")
    assert command.endswith(
        f"stella export verify {artifact['name']} --trust-roots trusted-keys.pem --tenant acme"
    )
    assert browser.console_errors() == []
    _page(browser, shots, "run")

    # Download through the browser: the bytes are the API's, and their sha256 the run's.
    link.click()
    data = browser.downloaded(artifact["name"])
    from_api = api.get(f"/api/export/runs/{run_id}/download")
    assert from_api.status_code == 200
    assert data == from_api.content
    assert hashlib.sha256(data).hexdigest() == artifact["sha256"]

    # The sidecars the page lists (checksum, signature...) download next to it, byte for byte.
    sidecars = browser.find_all("ul.downloads li a:not(#download-archive)")
    assert sidecars, "the run lists no sidecar"
    for sidecar in sidecars:
        name = str(sidecar.get_attribute("download"))
        sidecar.click()
        relayed = str(sidecar.get_attribute("href"))
        from_api = api.get(relayed.replace(f"{browser.base_url}/console/api", "/api/export"))
        assert from_api.status_code == 200, name
        assert browser.downloaded(name) == from_api.content, name

    # The page's verify command, typed as shown next to the downloads with the tenant's public
    # key: the real tools, offline, verify the downloaded bundle.
    keys = KeyStore(settings.key_dir)
    (browser.downloads / "trusted-keys.pem").write_bytes(
        keys.export_public(keys.tenant_key("acme").keyid)
    )
    stella = str(Path(sys.executable).with_name("stella"))
    for line in command.splitlines():
        argv = shlex.split(line)
        argv[0] = stella if argv[0] == "stella" else argv[0]
        done = subprocess.run(
            argv, cwd=browser.downloads, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert f"verified {artifact['exportId']}" in done.stdout

    # The manifest link relays the signed bytes.
    browser.find("a[href$='/manifest']").click()
    shown = browser.wait_text("pre", artifact["exportId"]).text
    assert shown == api.get(f"/api/export/runs/{run_id}/manifest").text


@pytest.mark.slow  # several seconds of waiting on the server (polls, caches, start-up)
def test_runs_list_filters_and_follows_status(
    browser: Browser, api: httpx.Client, services: Services, tokens: Tokens, gate: Gate, shots: Path
) -> None:
    spec = parse_profile_spec({"kind": "json", "variant": "raw"})
    services.registry.create("acme", "gated-hourly", spec)
    services.registry.create("acme", "weekly", spec)
    browser.sign_in(tokens.acme)
    assert "No runs yet" in browser.text(".empty")
    _page(browser, shots, "runs-empty")

    # A run started elsewhere (the API) appears in the open list and its status follows.
    browser.js("window.__sameDocument = 'yes'")
    started = api.post("/api/export/runs", json={"profile": "gated-hourly"})
    assert started.status_code == 202
    run_id = started.json()["id"]
    row = f"tr[data-key='{run_id}']"
    browser.wait_text(row, "running")
    done = api.post("/api/export/runs", json={"profile": "weekly"}).json()["id"]
    browser.wait_text(f"tr[data-key='{done}']", "succeeded")
    gate.release()
    browser.wait_text(row, "succeeded")
    assert browser.js("return window.__sameDocument") == "yes"
    _page(browser, shots, "runs")

    # Filters: by profile, by status; an empty result says so.
    Select(browser.find("#f-profile")).select_by_value("weekly")
    browser.find("form.filters button").click()
    browser.wait(lambda d: "profile=weekly" in browser.path())
    keys = [r.get_attribute("data-key") for r in browser.find_all("#run-rows tr")]
    assert keys == [done]
    browser.go("/console/runs?status=failed")
    assert "No run matches these filters" in browser.text(".empty")
    assert browser.find_all("#run-rows tr") == []


def test_failed_run_shows_its_error_code_and_hint(
    browser: Browser, services: Services, tokens: Tokens, shots: Path
) -> None:
    # A profile signs with one of acme's keys; then the operator takes the key away from
    # acme: the profile stays, and its next run fails (a real failure of the exporter).
    keys = KeyStore(services.settings.key_dir)
    keyid = keys.generate(KeyType.ED25519, tenants=("acme",)).keyid
    spec = parse_profile_spec({"kind": "json", "variant": "raw", "signing": {"key": keyid}})
    services.registry.create("acme", "unsigned", spec)
    keys.unassign(keyid, "acme")
    browser.sign_in(tokens.acme)
    Select(browser.find("#start-profile")).select_by_value("unsigned")
    browser.find("form.start-run button").click()
    _status_is(browser, "failed")
    error = browser.wait_text("#run-details .error", "ERR_EXPORT_NOT_FOUND")
    assert f"no key '{keyid}' is assigned to tenant 'acme'" in error.text
    assert "full keyid" in browser.text("#run-details .error .hint")
    browser.wait_text("#timeline", "failed")
    assert browser.find_all("#download-archive") == []
    _page(browser, shots, "run-failed")
    browser.go("/console/runs?status=failed")
    assert "ERR_EXPORT_NOT_FOUND" in browser.text("#run-rows")


def test_another_tenants_runs_are_not_visible(
    browser: Browser, server: LiveServer, services: Services, tokens: Tokens, shots: Path
) -> None:
    theirs, _ = services.runs.create("zeta", "zeta-json")
    wait_for(lambda: services.repo.get("zeta", theirs.id).status == "succeeded")
    browser.sign_in(tokens.acme)
    assert theirs.id not in browser.find("main").get_attribute("innerHTML")
    assert "zeta-json" not in browser.find("#f-profile").get_attribute("innerHTML")
    browser.go("/console/profiles")
    assert "zeta-json" not in browser.find("main").text

    # Asking for it by id: the API's answer, not found (never "forbidden": no existence leak).
    browser.go(f"/console/runs/{theirs.id}")
    assert browser.text("main h1") == "Not found"
    assert "ERR_EXPORT_NOT_FOUND" in browser.text(".error")
    _page(browser, shots, "error")
    for what in ("download", "manifest", "events"):
        browser.go(f"/console/api/runs/{theirs.id}/{what}")
        assert "ERR_EXPORT_NOT_FOUND" in browser.find("body").text

    # The same browser signed in for zeta sees it.
    browser.go("/console/runs")
    browser.find("form[action='/console/sign-out'] button").click()
    browser.wait_text("main h1", "Sign in")
    browser.sign_in(tokens.multi, tenant="zeta")
    assert browser.text("#tenant") == "zeta"
    browser.wait_text(f"tr[data-key='{theirs.id}']", "succeeded")


def test_forms_without_their_csrf_token_are_refused(
    browser: Browser, api: httpx.Client, tokens: Tokens
) -> None:
    browser.sign_in(tokens.acme)
    field = "document.querySelector('form.form-grid input[name=csrf]')"
    for tamper in (f"{field}.remove()", f"{field}.value = 'forged'"):
        browser.go("/console/profiles/new")
        browser.fill("#name", "sneaky")
        browser.js(tamper)
        browser.find("form.form-grid button[type=submit]").click()
        browser.wait_text("main h1", "Not allowed")
        assert "ERR_EXPORT_FORBIDDEN" in browser.text(".error")
        assert "CSRF" in browser.text(".error")
    assert api.get("/api/export/profiles/sneaky").status_code == 404

    # The sign-in form too (login CSRF): without its token nobody is signed in.
    browser.driver.delete_all_cookies()
    browser.go("/console/sign-in")
    browser.fill("#token", tokens.acme)
    browser.js("document.querySelector('main input[name=csrf]').remove()")
    browser.find("main form button[type=submit]").click()
    browser.wait_text(".error", "ERR_EXPORT_FORBIDDEN")
    assert browser.driver.get_cookie("stella_console") is None


def test_sign_out_ends_the_session_on_the_server(
    browser: Browser, server: LiveServer, services: Services, tokens: Tokens
) -> None:
    browser.sign_in(tokens.acme)
    cookie = browser.driver.get_cookie("stella_console")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    browser.find("form[action='/console/sign-out'] button").click()
    browser.wait_text(".notice", "You are signed out")
    assert browser.driver.get_cookie("stella_console") is None
    browser.go("/console/runs")
    assert browser.path().startswith("/console/sign-in")
    # The old cookie, replayed, opens nothing: the session row is gone.
    replay = httpx.get(
        f"{server.url}/console/runs", cookies={"stella_console": cookie["value"]}, timeout=30
    )
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/console/sign-in")


@pytest.mark.slow  # several seconds of waiting on the server (polls, caches, start-up)
def test_a_revoked_token_ends_the_console_session(
    browser: Browser, services: Services, tokens: Tokens
) -> None:
    token_store = TokenStore(services.store)
    info, secret = token_store.create("short-lived", ["acme"], ["export:read"])
    browser.sign_in(secret)
    token_store.revoke(info.id)

    def signed_out(_d: WebDriver) -> bool:
        browser.go("/console/evidence")
        return browser.path().startswith("/console/sign-in")

    # The API remembers a verified token for a few seconds: wait for the revocation to bite.
    browser.wait(signed_out, timeout=30)
    assert "Your session has ended" in browser.text(".notice")


def test_profiles_new_revision_and_archive(
    browser: Browser, api: httpx.Client, services: Services, tokens: Tokens, shots: Path
) -> None:
    services.registry.create(
        "acme", "nightly-raw", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    browser.sign_in(tokens.acme)
    browser.go("/console/profiles")
    browser.find("#p-nightly-raw a[aria-label^='New revision']").click()
    browser.wait_text("main h1", "New revision of nightly-raw")
    _page(browser, shots, "profile-revise")
    spec = browser.find("#spec")
    text = spec.get_attribute("value") or ""
    assert '"variant": "raw"' in text
    # A bad edit is refused by the API with its field path; the text stays as typed.
    browser.js("arguments[0].value = arguments[0].value.replace('\"raw\"', '\"policy-ish\"')", spec)
    browser.find("main form button[type=submit]").click()
    assert "variant" in browser.wait_text(".error", "ERR_EXPORT_BAD_INPUT").text
    assert "policy-ish" in (browser.find("#spec").get_attribute("value") or "")
    browser.js(
        "arguments[0].value = arguments[0].value.replace('\"policy-ish\"', '\"raw\"')"
        ".replace('\"level\": 10', '\"level\": 3')",
        browser.find("#spec"),
    )
    browser.find("main form button[type=submit]").click()
    browser.wait_text(".notice", "revision 2 saved")
    newest = api.get("/api/export/profiles/nightly-raw").json()
    assert newest["revision"] == 2
    assert newest["spec"]["compression"]["level"] == 3
    _page(browser, shots, "profiles")

    # Archive asks first; dismissing keeps the profile, accepting archives it.
    archive = "#p-nightly-raw button[aria-label^='Archive']"
    browser.find(archive).click()
    browser.wait(lambda d: d.switch_to.alert).dismiss()
    assert api.get("/api/export/profiles/nightly-raw").json()["archived"] is False
    browser.find(archive).click()
    browser.wait(lambda d: d.switch_to.alert).accept()
    browser.wait_text(".notice", "Profile nightly-raw archived")
    assert "archived" in browser.text("#p-nightly-raw")
    assert api.get("/api/export/profiles/nightly-raw").json()["archived"] is True


def test_a_read_only_token_is_offered_no_changes_and_the_api_refuses_them(
    browser: Browser, api: httpx.Client, tokens: Tokens
) -> None:
    api.post(
        "/api/export/profiles",
        json={"name": "nightly-raw", "spec": {"kind": "json", "variant": "raw"}},
    )
    browser.sign_in(tokens.reader)
    assert browser.find_all("form.start-run") == []
    browser.go("/console/profiles")
    assert browser.find_all("a[href='/console/profiles/new']") == []
    assert browser.find_all("#p-nightly-raw button") == []
    # Posting the form anyway (the page would not offer it): the API's 403, shown as a page.
    browser.go("/console/profiles/new")
    browser.fill("#name", "not-allowed")
    browser.find("form.form-grid button[type=submit]").click()
    assert "export:profile:manage" in browser.wait_text(".error", "ERR_EXPORT_FORBIDDEN").text
    assert api.get("/api/export/profiles/not-allowed").status_code == 404


def test_evidence_and_airgap_pages(
    browser: Browser, services: Services, tokens: Tokens, shots: Path
) -> None:
    browser.sign_in(tokens.acme)
    browser.go("/console/evidence")
    assert browser.text(".tiles .tile:first-child .big") == str(ACME_RECORDS)
    assert "feed" in browser.text("table.grid")
    _page(browser, shots, "evidence")

    browser.go("/console/airgap")
    assert "Nothing imported yet" in browser.text(".empty")
    # Generations as the importer records them (the import itself is tested in tests/importer):
    # acme has two mirror streams, zeta one.
    now = utcnow()
    imports = (
        ("acme", "mirror-nightly", 1),
        ("acme", "mirror-nightly", 2),
        ("acme", "mirror-weekly", 1),
        ("zeta", "mirror-nightly", 1),
    )
    with services.store.session() as s, s.begin():
        for tenant, stream, generation in imports:
            base = f"{stream}-r1-s10-0123456789abcdef"
            generations.record(
                s,
                tenant=tenant,
                stream=stream,
                generation=generation,
                export_id=f"{stream}-r1-s{generation * 10}-0123456789abcdef",
                profile=stream,
                kind="full" if generation == 1 else "delta",
                manifest_digest="sha256:" + "ab" * 32,
                root_hash="sha256:" + "cd" * 32,
                rerun_hash="sha256:" + "ef" * 32,
                source_seq=generation * 10,
                source_time=now,
                base_export_id=None if generation == 1 else base,
                base_manifest_digest=None if generation == 1 else "sha256:" + "ab" * 32,
                base_seq=None if generation == 1 else 10,
                replaced_stream=None,
                store_seq=generation * 10,
                added=10 if generation == 1 else 2,
                updated=0 if generation == 1 else 1,
                removed=0,
                tuf_root="{}",
                imported_by="operator",
                imported_at=now,
                forced=False,
                reason=None,
            )
    browser.go("/console/airgap")
    installed = [h.text for h in browser.find_all("main section.card h2")]
    assert installed == [
        "Stream mirror-nightly: generation 2 installed",
        "Stream mirror-weekly: generation 1 installed",
    ]
    rows = [r.text.split()[:2] for r in browser.find_all("table.grid tbody tr")]
    # zeta's generation is not acme's; newest import first.
    assert rows == [["mirror-weekly", "1"], ["mirror-nightly", "2"], ["mirror-nightly", "1"]]
    _page(browser, shots, "airgap")


def test_keyboard_only_sign_in_and_navigation(browser: Browser, tokens: Tokens) -> None:
    browser.go("/console/sign-in")
    active = browser.driver.switch_to.active_element
    assert active.get_attribute("id") == "token"  # the form has the focus at once
    active.send_keys(tokens.acme, Keys.ENTER)
    browser.wait_text("main h1", "Runs")
    body = browser.find("body")
    body.send_keys(Keys.TAB)
    skip = browser.driver.switch_to.active_element
    assert skip.text == "Skip to content"
    skip.send_keys(Keys.ENTER)
    assert browser.driver.switch_to.active_element.get_attribute("id") == "main"
    # Tab order from the top reaches every section of the console.
    browser.go("/console/runs")
    reached = []
    for _ in range(12):
        browser.driver.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(browser.driver.switch_to.active_element.text)
    for page in ("Runs", "Profiles", "Evidence", "Air gap"):
        assert page in reached


@pytest.mark.slow  # several seconds of waiting on the server (polls, caches, start-up)
def test_stella_serve_serves_the_console(
    chromium_window: Browser, settings: Settings, tmp_path: Path
) -> None:
    """The console is part of ``stella serve`` (not only of the test app)."""
    services = Services.open(settings)
    try:
        _, token = TokenStore(services.store).create("console", ["acme"], ["export:read"])
    finally:
        services.close()
    port = free_port()
    env = {**os.environ, "STELLA_DATA_DIR": str(settings.data_dir)}
    env.pop("STELLA_CONFIG", None)
    stella = str(Path(sys.executable).with_name("stella"))
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [stella, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                return False

        wait_for(up, timeout=60, step=0.2)
        browser = chromium_window.fresh(url, tmp_path / "downloads")
        browser.sign_in(token)
        assert browser.text("#tenant") == "acme"
        assert "No runs yet" in browser.text(".empty")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
