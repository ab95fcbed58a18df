"""The export API's own OpenAPI document as the portal's spec, and a portal page made from it.

A devportal:offline run packages the service's OpenAPI document (what ``GET
/.well-known/openapi`` serves) as :data:`SPEC_PATH`. When the operator's tree has no
``portal/``, the run also writes :data:`INDEX_PATH`, one static page listing the API's
operations, so that the bundle is a usable portal on its own. Both are pure functions of the
document: the same document gives the same bytes.

The page loads nothing (no script, style sheet, font or image), so it passes the builder's
no-external-assets check by construction; it links to the spec by a relative path.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["INDEX_PATH", "SPEC_PATH", "parse_document", "render_index"]

SPEC_PATH = "specs/stella-export-center.openapi.json"
INDEX_PATH = "portal/index.html"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def parse_document(data: bytes) -> dict[str, Any]:
    """The OpenAPI document's JSON object.

    Raises:
        ValueError: not a JSON object.
    """
    doc = orjson.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("the OpenAPI document is not a JSON object")
    return doc


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True) if value is not None else ""


def render_index(doc: Mapping[str, Any]) -> bytes:
    """``portal/index.html`` for the OpenAPI document ``doc``: title, version, description and
    one row per operation (method, path, summary), sorted by path then method."""
    info = doc.get("info") if isinstance(doc.get("info"), Mapping) else {}
    assert isinstance(info, Mapping)
    title = _text(info.get("title") or "API")
    rows: list[str] = []
    paths = doc.get("paths") if isinstance(doc.get("paths"), Mapping) else {}
    assert isinstance(paths, Mapping)
    for path in sorted(paths, key=lambda p: str(p).encode()):
        item = paths[path]
        if not isinstance(item, Mapping):
            continue
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{_text(path)}</code></td>"
                f"<td>{_text(op.get('summary') or '')}</td></tr>"
            )
    spec_link = "../" + SPEC_PATH
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            '<head><meta charset="utf-8">',
            f"<title>{title}</title></head>",
            "<body>",
            f"<h1>{title} <small>{_text(info.get('version') or '')}</small></h1>",
            f"<p>{_text(info.get('description') or '')}</p>",
            f'<p>OpenAPI document: <a href="{spec_link}">{_text(SPEC_PATH)}</a></p>',
            "<table>",
            "<thead><tr><th>Method</th><th>Path</th><th>Summary</th></tr></thead>",
            "<tbody>",
            *rows,
            "</tbody>",
            "</table>",
            "</body>",
            "</html>",
            "",
        ]
    )
    return page.encode("utf-8")
