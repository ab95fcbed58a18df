"""Parse a document's bytes and find the reader for its format.

JSON is parsed with orjson; YAML (``.yaml``/``.yml``, the pypa advisory database) with the
package's one YAML loader (:mod:`export_center.safe_yaml`): anchors and aliases refused (no
evidence format uses them, and they are how "billion laughs" expansion bombs work), timestamps
kept as strings, so an OSV ``modified`` reads the same from YAML as from JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from export_center.errors import DocumentRefused
from export_center.ingest.interface import FormatReader
from export_center.ingest.registry import READERS
from export_center.safe_yaml import YamlRefused, load_yaml

__all__ = ["detect", "parse_document"]

_YAML_SUFFIXES = (".yaml", ".yml")
_UTF8_BOM = b"\xef\xbb\xbf"


def _parse_yaml(content: bytes, where: str) -> Any:
    # The pipeline has bounded the document's size already (STELLA_MAX_DOCUMENT_BYTES).
    try:
        return load_yaml(content, where, max_bytes=len(content))
    except YamlRefused as e:
        raise DocumentRefused(where, e.reason) from e


def _parse_json(content: bytes, where: str) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as e:
        head = content.lstrip()[:1]
        if head == b"<":
            raise DocumentRefused(
                where, "XML is not supported: convert the document to JSON (CycloneDX, CSAF)"
            ) from e
        raise DocumentRefused(
            where, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from e


def parse_document(content: bytes, filename: str) -> Any:
    """Parse ``content`` as YAML (``.yaml``/``.yml``) or JSON (anything else).

    ``filename`` names the document in messages (a path, or ``archive!member``).

    Raises:
        DocumentRefused: the bytes are not well-formed JSON/YAML (the message gives the line
            and column), the YAML uses anchors or aliases, or the file is SPDX tag-value.
    """
    body = content[len(_UTF8_BOM) :] if content.startswith(_UTF8_BOM) else content
    lower = filename.lower()
    if lower.endswith(".spdx") or body.lstrip().startswith(b"SPDXVersion:"):
        raise DocumentRefused(
            filename,
            "SPDX tag-value is not supported: provide the SPDX document as JSON (.spdx.json)",
        )
    if lower.endswith(_YAML_SUFFIXES):
        return _parse_yaml(body, filename)
    return _parse_json(body, filename)


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = sorted(str(k) for k in doc)
        shown = ", ".join(keys[:8]) + (", …" if len(keys) > 8 else "")
        return f"an object with keys {shown}" if keys else "an empty object"
    if isinstance(doc, list):
        return f"an array of {len(doc)} items"
    return f"a {type(doc).__name__} value"


def detect(doc: Any, filename: str) -> FormatReader:
    """The reader for a parsed document: the first in :data:`READERS` whose ``sniff`` accepts
    it.

    Raises:
        DocumentRefused: no reader recognises the document.
    """
    for reader in READERS:
        if reader.sniff(doc, filename):
            return reader
    raise DocumentRefused(
        filename,
        f"unknown format: found {_describe(doc)}; looked for CSAF 2.0 (document.csaf_version), "
        "OpenVEX (@context https://openvex.dev/ns…), CycloneDX JSON (bomFormat), SPDX 2.x JSON "
        '(spdxVersion), OSV (id + modified, or {"vulns": […]}) and Node.js security-wg JSON',
    )
