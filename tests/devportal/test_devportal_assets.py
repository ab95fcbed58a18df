"""The no-external-assets check: loaded resources are refused with file:line; links are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_center.devportal import ExternalAssetError, build_bundle
from export_center.devportal.assets import is_external_url, scan_asset
from export_center.errors import BadInputError, ExitCode
from support.devportal import Key


def _found(path: str, text: str) -> list[tuple[int, str]]:
    return [(f.line, f.url) for f in scan_asset(path, text)]


# -- through the builder: what the issue asks for ------------------------------------------


def test_external_font_in_css_is_refused_with_its_location(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    (demo_input / "portal" / "assets" / "fonts.css").write_text(
        "/* brand font */\n"
        "@font-face {\n"
        "  font-family: Brand;\n"
        "  src: url(https://fonts.gstatic.com/s/brand/v1/brand.woff2) format('woff2');\n"
        "}\n"
    )
    with pytest.raises(ExternalAssetError) as caught:
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)
    error = caught.value
    assert isinstance(error, BadInputError) and error.exit_code == ExitCode.BAD_INPUT
    assert (
        "portal/assets/fonts.css:4: CSS url() loads "
        "https://fonts.gstatic.com/s/brand/v1/brand.woff2" in str(error)
    )
    assert [(f.path, f.line) for f in error.findings] == [("portal/assets/fonts.css", 4)]
    assert "relative path" in error.diagnostics()


def test_external_script_is_refused_with_its_location(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    page = demo_input / "portal" / "index.html"
    lines = page.read_text().splitlines()
    lines.insert(5, '  <script src="https://cdn.example.com/analytics.js" async></script>')
    page.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ExternalAssetError,
        match=r"portal/index\.html:6: <script src> loads https://cdn\.example\.com/analytics\.js",
    ):
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)


def test_every_finding_is_reported(demo_input: Path, tmp_path: Path, ed25519_key: Key) -> None:
    (demo_input / "portal" / "a.js").write_text("fetch('https://api.example/x')\n")
    (demo_input / "portal" / "b.css").write_text("\n\n@import '//cdn.example/b.css';\n")
    with pytest.raises(ExternalAssetError) as caught:
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)
    assert [(f.path, f.line) for f in caught.value.findings] == [
        ("portal/a.js", 1),
        ("portal/b.css", 3),
    ]


def test_hyperlinks_to_the_web_are_allowed(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    (demo_input / "portal" / "links.html").write_text(
        "<a href='https://example.com/docs'>online docs</a>\n"
        "<area href='https://example.com/map' alt=''>\n"
        "<form action='https://example.com/search'></form>\n"
        "<link rel='canonical' href='https://example.com/portal/'>\n"
        "<meta http-equiv='refresh' content='30; url=https://example.com/'>\n"
        "<svg xmlns='http://www.w3.org/2000/svg'><a href='https://example.com'>x</a></svg>\n"
    )
    build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)


def test_other_portal_files_are_not_scanned(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    (demo_input / "portal" / "notes.txt").write_text("see https://example.com/x.js\n")
    (demo_input / "portal" / "data.json").write_text('{"src": "https://example.com/a.png"}\n')
    build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)


# -- the scanner, language by language -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "external"),
    [
        ("https://x.example/a", True),
        ("HTTP://X.EXAMPLE/A", True),
        ("//cdn.example/a.js", True),
        ("\\\\cdn.example\\a.js", True),
        ("  https://x.example/a  ", True),
        ("ht\ntps://x.example/a", True),
        ("wss://x.example", True),
        ("ftp://x.example/f", True),
        ("assets/a.css", False),
        ("/assets/a.css", False),
        ("../specs/x.yaml", False),
        ("data:image/png;base64,AAAA", False),
        ("#anchor", False),
        ("mailto:someone@example.com", False),
    ],
)
def test_is_external_url(url: str, external: bool) -> None:
    assert is_external_url(url) is external


def test_css() -> None:
    css = (
        "@import 'https://cdn.example/a.css';\n"  # 1
        '@import url("//cdn.example/b.css");\n'  # 2
        "@namespace svg url(http://www.w3.org/2000/svg);\n"  # 3: a name, never fetched
        "/* url(https://commented.example/x.png) */\n"  # 4: a comment
        ".a { background: url( h\\74tps://escaped.example/a.png ) }\n"  # 5: CSS escape
        ".b { background-image: image-set('https://set.example/a.png' 1x) }\n"  # 6
        ".c { background: url(img/local.png); cursor: url(#x) }\n"  # 7: local
        ".d { content: 'https://text.example' }\n"  # 8: text, not a load
        "/*# sourceMappingURL=https://maps.example/a.css.map */\n"  # 9
    )
    assert _found("p/a.css", css) == [
        (1, "https://cdn.example/a.css"),
        (2, "//cdn.example/b.css"),
        (5, "https://escaped.example/a.png"),
        (6, "https://set.example/a.png"),
        (9, "https://maps.example/a.css.map"),
    ]


def test_javascript() -> None:
    js = (
        "import x from 'https://esm.example/x.js';\n"  # 1
        'const y = await import("https://esm.example/y.js");\n'  # 2
        "fetch('//api.example/v1');\n"  # 3
        "const docs = 'https://docs.example';\n"  # 4: a string, not a load
        "location.href = 'https://nav.example';\n"  # 5: navigation
        "img.src = `https://img.example/a.png`;\n"  # 6
        "new WebSocket('wss://ws.example');\n"  # 7
        "import './local.js';\n"  # 8
        "importScripts('https://w.example/w.js');\n"  # 9
        "el.style.background = 'url(https://bg.example/a.png)';\n"  # 10
        "export { z } from 'https://esm.example/z.js';\n"  # 11
        "//# sourceMappingURL=https://maps.example/a.js.map\n"  # 12
    )
    assert _found("p/a.mjs", js) == [
        (1, "https://esm.example/x.js"),
        (2, "https://esm.example/y.js"),
        (3, "//api.example/v1"),
        (6, "https://img.example/a.png"),
        (7, "wss://ws.example"),
        (9, "https://w.example/w.js"),
        (10, "https://bg.example/a.png"),
        (11, "https://esm.example/z.js"),
        (12, "https://maps.example/a.js.map"),
    ]


def test_html() -> None:
    html = (
        "<!doctype html>\n"  # 1
        "<html xmlns='http://www.w3.org/1999/xhtml'><head>\n"  # 2: a namespace name
        "<link rel=stylesheet\n"  # 3
        "  href='https://cdn.example/a.css'>\n"  # 4: the line of the value
        "<link rel=preconnect href='https://fonts.gstatic.com'>\n"  # 5
        "<link rel='icon' href='//cdn.example/favicon.ico'>\n"  # 6
        "<style>\n"  # 7
        ".x { background: url(https://bg.example/a.png) }\n"  # 8
        "</style>\n"  # 9
        "<script>fetch('https://api.example/x')</script>\n"  # 10
        '<script type=importmap>{"imports": {"vue": "https://unpkg.example/vue"}}</script>\n'
        "</head><body onload=\"import('https://on.example/x.js')\">\n"  # 12
        "<img src='local.png' srcset='a.png 1x, https://img.example/b.png 2x'>\n"  # 13
        "<div style=\"background: url('https://style.example/x.png')\"></div>\n"  # 14
        "<iframe srcdoc=\"<img src='https://srcdoc.example/a.png'>\"></iframe>\n"  # 15
        "<base href='https://base.example/'>\n"  # 16
        "<a ping='https://ping.example' href='https://nav.example'>x</a>\n"  # 17
        "<video poster='https://poster.example/p.jpg'></video>\n"  # 18
        "<object data='https://obj.example/o.pdf'></object>\n"  # 19
        "</body></html>\n"
    )
    assert _found("p/index.html", html) == [
        (4, "https://cdn.example/a.css"),
        (5, "https://fonts.gstatic.com"),
        (6, "//cdn.example/favicon.ico"),
        (8, "https://bg.example/a.png"),
        (10, "https://api.example/x"),
        (11, "https://unpkg.example/vue"),
        (12, "https://on.example/x.js"),
        (13, "https://img.example/b.png"),
        (14, "https://style.example/x.png"),
        (15, "https://srcdoc.example/a.png"),
        (16, "https://base.example/"),
        (17, "https://ping.example"),
        (18, "https://poster.example/p.jpg"),
        (19, "https://obj.example/o.pdf"),
    ]


def test_svg() -> None:
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' xmlns:xlink='http://www.w3.org/1999/xlink'>\n"
        "<use xlink:href='https://sprites.example/s.svg#i'/>\n"  # 2
        "<a xlink:href='https://nav.example'><text>t</text></a>\n"  # 3: a link
        "<rect fill='url(https://grad.example/g.svg#g)'/>\n"  # 4
        "<image href='//img.example/x.png'/>\n"  # 5
        "<use href='#local'/>\n"  # 6
        "<style>@import url(https://css.example/s.css);</style>\n"  # 7
        "</svg>\n"
    )
    assert _found("p/logo.svg", svg) == [
        (2, "https://sprites.example/s.svg#i"),
        (4, "https://grad.example/g.svg#g"),
        (5, "//img.example/x.png"),
        (7, "https://css.example/s.css"),
    ]


def test_demo_portal_is_clean() -> None:
    from support.devportal import DEMO

    for path in sorted((DEMO / "portal").rglob("*")):
        if path.is_file():
            rel = path.relative_to(DEMO).as_posix()
            assert scan_asset(rel, path.read_text()) == [], rel
