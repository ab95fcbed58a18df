"""The format-reader plug-in point.

A reader recognises one evidence format from an already-parsed document (``sniff``) and turns it
into :class:`ParsedRecord` values (``read``). Readers are pure: they never touch the store or the
file system. Multi-record files (the OSV ``{"vulns": [...]}`` wrapper) yield one record per entry;
a bad entry yields a :class:`RecordRefused` and the rest still go through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from export_center.model import DocType, Normalized


@dataclass(frozen=True)
class ParsedRecord:
    """One evidence record ready for the store.

    ``content`` is what the store keeps as the raw record: the file's exact bytes for a
    single-record file; for an entry of a multi-record container, the RFC 8785 canonical JSON of
    that entry (the container's own bytes cannot be split byte-exactly; documented in
    docs/evidence-store.md).
    """

    upstream_id: str
    doc_type: DocType
    format: str
    media_type: str
    content: bytes
    normalized: Normalized
    withdrawn: bool = False


@dataclass(frozen=True)
class RecordRefused:
    """A record (or whole document) that was refused, with where and why."""

    where: str
    reason: str


class FormatReader(Protocol):
    """One evidence format."""

    #: Short format name: ``osv``, ``csaf``, ``openvex``, ``cyclonedx``, ``spdx``, ``ghsa``.
    name: str

    def sniff(self, doc: Any, filename: str) -> bool:
        """True when ``doc`` (parsed JSON/YAML) looks like this format."""
        ...

    def read(self, doc: Any, content: bytes, where: str) -> Iterator[ParsedRecord | RecordRefused]:
        """Validate and normalize ``doc``; ``content`` is the file's exact bytes; ``where`` names
        the file for error messages."""
        ...
