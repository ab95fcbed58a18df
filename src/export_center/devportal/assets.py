"""The no-external-assets check: a portal page must not load anything from the network.

The bundle is opened on machines without internet access, so a web font, a CDN script or a
remote style sheet would silently break the portal there (and, on a network that is merely
filtered, leak who reads which page). We refuse, naming ``file:line`` and the URL, every
*loaded* resource whose URL is absolute on the network: ``http:``, ``https:``, ``ws:``,
``wss:``, ``ftp:`` and protocol-relative ``//host/...`` (browsers also read ``\\\\host`` so).

What counts as loading (a static check: it catches the usual mistakes, it is not a sandbox):

- HTML / SVG attributes that fetch: ``src``, ``srcset``, ``data``, ``poster``, ``background``,
  ``manifest``, ``ping``…; ``href`` on every element except ``<a>``/``<area>`` (SVG ``<use>``,
  ``<image>``, ``<script>`` fetch through ``href``/``xlink:href``); ``<link href>`` unless all
  its ``rel`` tokens are navigation or metadata (``canonical``, ``alternate``, ``license``…);
  ``<base href>`` and ``xml:base`` (they would re-root every relative URL); ``url(...)`` in any
  attribute; ``<iframe srcdoc>`` is checked as HTML; import maps.
- CSS (files, ``<style>``, ``style=``): ``@import``, ``url(...)``/``src(...)`` (fonts, images,
  cursors), ``image-set()`` strings, ``sourceMappingURL``. ``@namespace url(...)`` names a
  namespace and is never fetched.
- JavaScript (files, inline scripts, ``on*=`` handlers): static and dynamic ``import``,
  ``export ... from``, ``fetch``, ``importScripts``, ``new Worker/SharedWorker/WebSocket/
  EventSource``, ``sendBeacon``, ``XMLHttpRequest.open``, ``.src =``, ``setAttribute("src")``,
  ``url(...)`` in strings, ``sourceMappingURL``. Comments are not stripped, so a commented-out
  CDN import is refused too (delete it).

Plain hyperlinks (``<a href="https://...">``, ``<area>``, ``<form action>``, a meta refresh)
are navigation: the reader decides to follow them and nothing is fetched while the page
loads, so they are allowed; linking to the online version of a page is normal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from html.parser import HTMLParser

from export_center.devportal.errors import AssetFinding, ExternalAssetError

__all__ = ["CHECKED_SUFFIXES", "check_portal_assets", "is_external_url", "scan_asset"]

#: Portal files the check reads (by lowercase suffix).
CHECKED_SUFFIXES = frozenset({".html", ".htm", ".xhtml", ".css", ".js", ".mjs", ".svg"})

_NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
# Browsers drop leading/trailing C0 controls and spaces and every tab/newline inside a URL.
_URL_TRIM = "".join(chr(c) for c in range(0x21))
_URL_INNER_WS = re.compile(r"[\t\n\r]")


def is_external_url(value: str) -> bool:
    """True when a browser would fetch ``value`` from the network (absolute or ``//host``)."""
    url = _URL_INNER_WS.sub("", value.strip(_URL_TRIM)).lower()
    if url[:2] in ("//", "\\\\", "/\\", "\\/"):
        return True
    m = _SCHEME.match(url)
    return m is not None and m.group(1) in _NETWORK_SCHEMES


def scan_asset(path: str, text: str) -> list[AssetFinding]:
    """Every external load in one portal file, in file order (empty when it is clean).

    ``path`` is bundle-relative and only chooses the language (by suffix) and names findings.
    """
    suffix = path[path.rfind(".") :].lower() if "." in path else ""
    if suffix in (".css",):
        return _scan_css(path, text, 1)
    if suffix in (".js", ".mjs"):
        return _scan_js(path, text, 1)
    if suffix in CHECKED_SUFFIXES:
        return _scan_markup(path, text, 1)
    return []


def check_portal_assets(files: Iterable[tuple[str, bytes]]) -> None:
    """Refuse the portal when any checked file loads an external resource.

    ``files`` are ``(bundle-relative path, bytes)`` pairs; files with other suffixes are
    ignored. Bytes that are not UTF-8 are read with replacement characters (URLs are ASCII).

    Raises:
        ExternalAssetError: with every finding, sorted by path and line.
    """
    findings: list[AssetFinding] = []
    for path, data in files:
        findings.extend(scan_asset(path, data.decode("utf-8", errors="replace")))
    if findings:
        raise ExternalAssetError(sorted(findings, key=lambda f: (f.path, f.line, f.url)))


# -- CSS -----------------------------------------------------------------------------------

_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)
_CSS_NAMESPACE = re.compile(r"@namespace\b[^;{}]*", re.IGNORECASE)
_CSS_URL = re.compile(
    r"""\b(url|src)\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|((?:[^)\s"'\\]|\\.)*))""",
    re.IGNORECASE | re.DOTALL,
)
_CSS_IMPORT = re.compile(
    r"""@import\s+(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""", re.IGNORECASE | re.DOTALL
)
_CSS_IMAGE_SET = re.compile(r"image-set\(([^)]*)\)", re.IGNORECASE)
_CSS_STRING = re.compile(r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'""")
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n]?|(.))", re.DOTALL)
_SOURCE_MAP = re.compile(r"[#@]\s*sourceMappingURL\s*=\s*(\S+)")


def _css_unescape(value: str) -> str:
    # `url(h\74tps://x)` is `url(https://x)` to a browser.
    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            code = int(m.group(1), 16)
            return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"
        return m.group(2)

    return _CSS_ESCAPE.sub(repl, value)


def _blank(m: re.Match[str]) -> str:
    # Keep offsets and line numbers: replace the comment with spaces, keep its newlines.
    return re.sub(r"[^\n]", " ", m.group(0))


def _line_at(text: str, offset: int, base: int) -> int:
    return base + text.count("\n", 0, offset)


def _scan_css(path: str, text: str, base: int) -> list[AssetFinding]:
    found: list[AssetFinding] = []

    def add(offset: int, url: str, what: str) -> None:
        if is_external_url(url):
            found.append(AssetFinding(path, _line_at(text, offset, base), url.strip(), what))

    for m in _SOURCE_MAP.finditer(text):
        add(m.start(1), m.group(1), "CSS sourceMappingURL")
    code = _CSS_COMMENT.sub(_blank, text)
    namespaces = [m.span() for m in _CSS_NAMESPACE.finditer(code)]
    for m in _CSS_URL.finditer(code):
        if any(a <= m.start() < b for a, b in namespaces):
            continue
        raw = next((g for g in m.groups()[1:] if g is not None), "")
        add(m.start(), _css_unescape(raw), f"CSS {m.group(1).lower()}()")
    for m in _CSS_IMPORT.finditer(code):
        raw = m.group(1) if m.group(1) is not None else m.group(2)
        add(m.start(), _css_unescape(raw), "CSS @import")
    for m in _CSS_IMAGE_SET.finditer(code):
        for s in _CSS_STRING.finditer(m.group(1)):
            raw = s.group(1) if s.group(1) is not None else s.group(2)
            add(m.start(1) + s.start(), _css_unescape(raw), "CSS image-set()")
    return sorted(found, key=lambda f: f.line)


# -- JavaScript ----------------------------------------------------------------------------

_JS_STR = r"""\s*(["'`])\s*((?:[^"'`\\\s]|\\.)*)"""
_JS_LOADS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (what, re.compile(prefix + _JS_STR))
    for what, prefix in (
        ("JS import()", r"\bimport\s*\("),
        ("JS import", r"\bimport\b"),
        ("JS import/export from", r"\bfrom\b"),
        ("JS fetch()", r"\bfetch\s*\("),
        ("JS importScripts()", r"\bimportScripts\s*\("),
        (
            "JS new Worker/WebSocket/EventSource",
            r"\bnew\s+(?:Worker|SharedWorker|WebSocket|EventSource)\s*\(",
        ),
        ("JS sendBeacon()", r"\bsendBeacon\s*\("),
        ("JS XMLHttpRequest.open()", r"\.open\s*\(\s*[\"'`][A-Za-z]+[\"'`]\s*,"),
        ("JS .src/.srcset =", r"\.(?:src|srcset)\s*=(?!=)"),
        (
            "JS setAttribute()",
            r"""\bsetAttribute(?:NS)?\s*\((?:[^,()]*,)?\s*["'](?:src|srcset|data|poster)["']\s*,""",
        ),
    )
)
_JS_CSS_URL = re.compile(r"""\burl\(\s*["']?\s*([^)"'\s]*)""", re.IGNORECASE)


def _scan_js(path: str, text: str, base: int) -> list[AssetFinding]:
    found: list[AssetFinding] = []
    seen: set[tuple[int, str]] = set()

    def add(offset: int, url: str, what: str) -> None:
        line = _line_at(text, offset, base)
        if is_external_url(url) and (line, url) not in seen:
            seen.add((line, url))
            found.append(AssetFinding(path, line, url, what))

    for what, pattern in _JS_LOADS:
        for m in pattern.finditer(text):
            add(m.start(2), m.group(2), what)
    for m in _JS_CSS_URL.finditer(text):
        add(m.start(1), m.group(1), "JS url()")
    for m in _SOURCE_MAP.finditer(text):
        add(m.start(1), m.group(1), "JS sourceMappingURL")
    return sorted(found, key=lambda f: f.line)


# -- HTML and SVG --------------------------------------------------------------------------

# Attributes whose URL is fetched while the page loads, on any element.
_LOAD_ATTRS = frozenset(
    [
        "src",
        "data",
        "poster",
        "background",
        "manifest",
        "codebase",
        "archive",
        "lowsrc",
        "dynsrc",
        "ping",
        "base",
    ]
)
_SRCSET_ATTRS = frozenset({"srcset", "imagesrcset"})
# Elements whose href is a hyperlink the reader may follow, not a load.
_NAVIGATION_ELEMENTS = frozenset({"a", "area"})
# <link rel=...> values that fetch nothing (HTML Living Standard, "Link types").
_NAVIGATION_RELS = frozenset(
    [
        "alternate",
        "author",
        "bookmark",
        "canonical",
        "external",
        "help",
        "license",
        "me",
        "next",
        "nofollow",
        "noopener",
        "noreferrer",
        "opener",
        "prev",
        "search",
        "tag",
    ]
)
_IMPORTMAP_URL = re.compile(r""""((?:[^"\\]|\\.)*)\"""")


def _local(name: str) -> str:
    # SVG in XML syntax: xlink:href, svg:image ... are matched on their local name.
    return name.rsplit(":", 1)[-1]


class _MarkupScanner(HTMLParser):
    def __init__(self, path: str, base: int) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.base = base
        self.findings: list[AssetFinding] = []
        self._data_kind: str | None = None  # "css" | "js" | "importmap" inside <style>/<script>

    def _line(self) -> int:
        return self.base + self.getpos()[0] - 1

    def _attr_line(self, raw_value: str) -> int:
        # The tag may span lines; point at the line of the attribute value when we can.
        tag = self.get_starttag_text() or ""
        idx = tag.find(raw_value) if raw_value else -1
        return self._line() + (tag.count("\n", 0, idx) if idx >= 0 else 0)

    def _add(self, line: int, url: str, what: str) -> None:
        if is_external_url(url):
            self.findings.append(AssetFinding(self.path, line, url.strip(), what))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check_tag(tag, attrs)
        name = _local(tag)
        if name == "style":
            self._data_kind = "css"
        elif name == "script":
            kind = next((v or "" for k, v in attrs if k == "type"), "").strip().lower()
            self._data_kind = "importmap" if kind == "importmap" else "js"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check_tag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if _local(tag) in ("style", "script"):
            self._data_kind = None

    def handle_data(self, data: str) -> None:
        scan: Callable[[str, str, int], list[AssetFinding]] | None = None
        if self._data_kind == "css":
            scan = _scan_css
        elif self._data_kind == "js":
            scan = _scan_js
        elif self._data_kind == "importmap":
            for m in _IMPORTMAP_URL.finditer(data):
                self._add(_line_at(data, m.start(), self._line()), m.group(1), "import map")
            return
        if scan is not None:
            self.findings.extend(scan(self.path, data, self._line()))

    def _check_tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = _local(tag)
        rels: set[str] = set()
        for k, v in attrs:
            if k == "rel" and v:
                rels = set(v.lower().split())
        for raw_name, value in attrs:
            if value is None:
                continue
            attr = _local(raw_name)
            line = self._attr_line(value)
            if attr.startswith("on"):
                self.findings.extend(_scan_js(self.path, value, line))
                continue
            if attr == "srcdoc":
                self.findings.extend(_scan_markup(self.path, value, line))
                continue
            if attr in _LOAD_ATTRS:
                self._add(line, value, f"<{element} {raw_name}>")
            elif attr in _SRCSET_ATTRS:
                for candidate in value.split(","):
                    self._add(line, candidate.strip().split(" ", 1)[0], f"<{element} {raw_name}>")
            elif attr == "href" and not self._is_navigation(element, rels):
                rel = f" rel={' '.join(sorted(rels))}" if rels else ""
                self._add(line, value, f"<{element}{rel} {raw_name}>")
            if "url(" in value.lower():
                self.findings.extend(_scan_css(self.path, value, line))

    @staticmethod
    def _is_navigation(element: str, rels: set[str]) -> bool:
        # <a>/<area> are hyperlinks (see the module docstring); <link rel=canonical|license...>
        # is metadata. Everything else with an href fetches it (SVG <use>, <image>, <script>).
        if element in _NAVIGATION_ELEMENTS:
            return True
        return element == "link" and bool(rels) and rels <= _NAVIGATION_RELS


def _scan_markup(path: str, text: str, base: int) -> list[AssetFinding]:
    scanner = _MarkupScanner(path, base)
    scanner.feed(text)
    scanner.close()
    return sorted(scanner.findings, key=lambda f: f.line)
