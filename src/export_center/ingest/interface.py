"""The format-reader plug-in point.

A reader recognises one evidence format from an already-parsed document (``sniff``) and turns it
into :class:`ParsedRecord` values (``read``). Readers are pure: they never touch the store or the
file system. Multi-record files (the OSV ``{"vulns": [...]}`` wrapper) yield one record per entry;
a bad entry yields a :class:`RecordRefused` and the rest still go through.

:class:`~export_center.model.ParsedRecord` lives in :mod:`export_center.model`: the store
accepts it too (and so does the air-gap importer), and the store sits below the readers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from export_center.model import ParsedRecord


@dataclass(frozen=True)
class RecordRefused:
    """A record (or whole document) that was refused, with where and why."""

    where: str
    reason: str


@dataclass(frozen=True)
class Skipped:
    """A file that is not evidence, or in a format we do not read, with where and why: counted
    and reported, never an error (a VEX repository's own index, a README, SPDX tag-value)."""

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
