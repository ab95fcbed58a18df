"""The console works inside an air gap: the devportal's no-external-assets check passes on
every template and static file the console serves (and would catch one that did load from
the network). The pages as rendered are checked too, in the browser tests (``_page``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from export_center.devportal import ExternalAssetError
from export_center.devportal.assets import CHECKED_SUFFIXES, check_portal_assets
from export_center.service.console.context import STATIC, TEMPLATES

# Files the console cannot do without: if one moved, the scan below would pass on nothing.
ESSENTIAL = {"templates/base.html", "templates/run.html", "static/console.js", "static/console.css"}


def _console_files() -> dict[str, bytes]:
    return {
        f"{folder.name}/{p.relative_to(folder).as_posix()}": p.read_bytes()
        for folder in (TEMPLATES, STATIC)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_console_templates_and_static_files_load_nothing_external() -> None:
    files = _console_files()
    assert set(files) >= ESSENTIAL
    # Every file is one the check reads: nothing the console serves escapes it unread.
    unread = sorted(n for n in files if Path(n).suffix.lower() not in CHECKED_SUFFIXES)
    assert unread == []
    check_portal_assets(files.items())


@pytest.mark.parametrize(
    ("name", "edit", "url", "what"),
    [
        (
            "templates/base.html",
            lambda t: t.replace(
                "</head>", '<script src="https://cdn.example.com/htmx.js"></script>\n</head>'
            ),
            "https://cdn.example.com/htmx.js",
            "<script src>",
        ),
        (
            "static/console.css",
            lambda t: "@import '//fonts.example.net/inter.css';\n" + t,
            "//fonts.example.net/inter.css",
            "CSS @import",
        ),
        (
            "static/console.js",
            lambda t: t.replace(
                'new EventSource(root.getAttribute("data-events"))',
                'new EventSource("wss://events.example.org/stream")',
            ),
            "wss://events.example.org/stream",
            "JS new Worker/WebSocket/EventSource",
        ),
    ],
)
def test_the_check_refuses_an_external_load_added_to_a_console_file(
    name: str, edit: Callable[[str], str], url: str, what: str
) -> None:
    files = _console_files()
    original = files[name].decode()
    changed = edit(original)
    assert changed != original, "the edit no longer applies to the console's file"
    line = next(i for i, text in enumerate(changed.splitlines(), 1) if url in text)
    files[name] = changed.encode()
    with pytest.raises(ExternalAssetError) as caught:
        check_portal_assets(files.items())
    assert f"{name}:{line}: {what} loads {url}" in str(caught.value)
    # Only the edited file is named: the rest of the console stays clean.
    assert {f.path for f in caught.value.findings} == {name}
