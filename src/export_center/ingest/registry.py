"""The closed list of format readers, in sniffing order.

Order matters: the formats with an unambiguous marker come first (CSAF ``document.csaf_version``,
OpenVEX ``@context``, CycloneDX ``bomFormat``, SPDX ``spdxVersion``); OSV, recognised by the
shape ``id`` + ``modified``, comes after them so that it never claims another format's document;
the Node.js security-wg shape (``module_name`` + ``vulnerable_versions``) is last.
"""

from __future__ import annotations

from export_center.ingest.csaf import CsafReader
from export_center.ingest.cyclonedx import CycloneDxReader
from export_center.ingest.interface import FormatReader
from export_center.ingest.nodejs_wg import NodeWgReader
from export_center.ingest.openvex import OpenVexReader
from export_center.ingest.osv import OsvReader
from export_center.ingest.spdx import SpdxReader

__all__ = ["READERS", "reader_named"]

READERS: tuple[FormatReader, ...] = (
    CsafReader(),
    OpenVexReader(),
    CycloneDxReader(),
    SpdxReader(),
    OsvReader(),
    NodeWgReader(),
)


def reader_named(name: str) -> FormatReader | None:
    """The reader whose ``name`` is ``name`` (``ghsa`` records are read by the OSV reader)."""
    wanted = "osv" if name == "ghsa" else name
    return next((r for r in READERS if r.name == wanted), None)
