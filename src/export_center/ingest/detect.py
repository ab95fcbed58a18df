"""Parse a document's bytes and find the reader for its format.

JSON is parsed with orjson; YAML (``.yaml``/``.yml``, the pypa advisory database) with libyaml's
``CSafeLoader``. YAML aliases are refused outright: no evidence format we read uses them, and
they are how "billion laughs" expansion bombs work. YAML timestamps stay strings, so an OSV
``modified`` reads the same from YAML as from JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from export_center.errors import DocumentRefused
from export_center.ingest.interface import FormatReader
from export_center.ingest.registry import READERS

__all__ = ["detect", "parse_document"]

_YAML_SUFFIXES = (".yaml", ".yml")
_UTF8_BOM = b"\xef\xbb\xbf"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _EvidenceYamlLoader(yaml.CSafeLoader):
    """libyaml's safe loader without the implicit timestamp resolver (timestamps stay text)."""


_EvidenceYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}


def _refuse_yaml_aliases(content: bytes, where: str) -> None:
    # An alias needs a '*'; most documents have none, so only those with one pay for the
    # event scan (libyaml composes aliases in C, where no hook can stop them).
    if b"*" not in content:
        return
    for event in yaml.parse(content, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            pos = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            raise DocumentRefused(
                where,
                f"YAML alias *{event.anchor}{pos}: aliases are not accepted in evidence documents",
            )


def _parse_yaml(content: bytes, where: str) -> Any:
    try:
        _refuse_yaml_aliases(content, where)
        return yaml.load(content, Loader=_EvidenceYamlLoader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        pos = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise DocumentRefused(where, f"malformed YAML{pos}: {problem}") from e
    except yaml.YAMLError as e:
        raise DocumentRefused(where, f"malformed YAML: {e}") from e


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
            and column), the YAML uses aliases, or the file is SPDX tag-value.
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
