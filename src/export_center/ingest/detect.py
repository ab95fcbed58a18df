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

__all__ = ["detect", "not_evidence", "parse_document", "unread_format"]

_YAML_SUFFIXES = (".yaml", ".yml")
TAG_VALUE = "SPDX tag-value is not supported: provide the SPDX document as JSON (.spdx.json)"
# spdx-tools (the SPDX reference library) was tried for tag-value: its parser refused 12 of the
# 18 real tag-value SBOMs of the bom-shelter corpus (dates, file checksums, relationship case),
# took 21 s for a 1 MB document, none of the 6 it read carried a purl, and it would bring
# rdflib, ply and beartype along. docs/formats.md has the details.
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
        raise DocumentRefused(filename, TAG_VALUE)
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


def unread_format(name: str) -> str:
    """Why a file found in a folder or archive is not read, by its name (only ``.json``,
    ``.yaml`` and ``.yml`` files are evidence there)."""
    lower = name.lower()
    base = lower.replace("\\", "/").rsplit("/", 1)[-1]
    if lower.endswith((".spdx", ".spdx.tv", ".spdx.tag")):
        return TAG_VALUE
    if lower.endswith((".rdf", ".spdx.rdf", ".spdx.xml")):
        return "SPDX RDF/XML is not supported: provide the SPDX document as JSON (.spdx.json)"
    if lower.endswith(".xml"):
        return "XML is not supported: provide the document as JSON (CycloneDX, CSAF)"
    suffix = base.rsplit(".", 1)[-1] if "." in base.lstrip(".") else ""
    return f"not an evidence file (.{suffix})" if suffix else "not an evidence file (no extension)"


def _is_vex_repository_index(doc: dict[str, Any]) -> bool:
    packages = doc.get("packages")
    return (
        isinstance(packages, list)
        and "updated_at" in doc
        and all(isinstance(p, dict) and "id" in p and "location" in p for p in packages)
    )


def _is_vex_repository_manifest(doc: dict[str, Any]) -> bool:
    sources = doc.get("Sources")
    return (
        isinstance(doc.get("ID"), str)
        and isinstance(sources, list)
        and all(isinstance(s, dict) and "Path" in s for s in sources)
    )


def _is_vex_repository_description(doc: dict[str, Any]) -> bool:
    versions = doc.get("versions")
    return (
        isinstance(doc.get("name"), str)
        and isinstance(versions, list)
        and bool(versions)
        and all(isinstance(v, dict) and "spec_version" in v for v in versions)
    )


def _is_rolie_feed(doc: dict[str, Any]) -> bool:
    feed = doc.get("feed")
    return len(doc) == 1 and isinstance(feed, dict) and isinstance(feed.get("entry"), list)


def _is_nodejs_wg_index(doc: dict[str, Any], filename: str) -> bool:
    # vuln/{npm,core,deps}/index.json: every record of the folder again, keyed by number.
    return (
        filename.replace("\\", "/").rsplit("/", 1)[-1] == "index.json"
        and bool(doc)
        and all(k.isdigit() and isinstance(v, dict) for k, v in doc.items())
    )


def not_evidence(doc: Any, filename: str) -> str | None:
    """Why a parsed document that no reader recognises is a known file that is not evidence
    (a VEX repository's index, a CSAF feed), or None (it is then an unknown format).

    Such files sit beside the evidence in the sources' own layouts; they are skipped with this
    reason instead of refused."""
    if not isinstance(doc, dict):
        return None
    if _is_vex_repository_index(doc):
        return "VEX repository index (index.json: where the documents are), not evidence"
    if _is_vex_repository_manifest(doc):
        return "VEX repository manifest (manifest.json: a package's document list), not evidence"
    if _is_vex_repository_description(doc):
        return "VEX repository description (vex-repository.json), not evidence"
    if _is_rolie_feed(doc):
        return "CSAF ROLIE feed (distribution metadata), not evidence"
    if _is_nodejs_wg_index(doc, filename):
        return "Node.js security-wg index (a copy of the folder's records), not evidence"
    return None
