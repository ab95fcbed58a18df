"""SPDX 2.2 and 2.3 JSON SBOMs (tag-value is refused by :func:`detect.parse_document`).

Components are the document's ``packages`` in source order: purl from the first valid
``externalRefs`` entry of ``referenceType`` ``purl``, hashes from ``checksums``. The subject is
the package the document describes (``documentDescribes``, or a ``DESCRIBES`` relationship from
``SPDXRef-DOCUMENT``; Trivy writes ``DESCRIBE``, also accepted, as is ``DESCRIBED_BY``).

Spec: https://spdx.github.io/spdx-spec/v2.3/
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from export_center.ingest._common import (
    Invalid,
    as_obj,
    canonical_purl,
    check_upstream_id,
    obj_list,
    opt_str,
    parse_purl,
    req_str,
    str_list,
)
from export_center.ingest.cyclonedx import hash_alg
from export_center.ingest.interface import RecordRefused
from export_center.model import Component, ParsedRecord, Sbom

__all__ = ["SpdxReader"]

MEDIA_TYPE = "application/spdx+json"
VERSIONS = ("SPDX-2.2", "SPDX-2.3")
_DOCUMENT = "SPDXRef-DOCUMENT"


def _package(p: dict[str, Any], path: str) -> Component:
    purl: str | None = None
    for rpath, ref in obj_list(p, "externalRefs", path):
        if opt_str(ref, "referenceType", rpath) == "purl":
            purl = canonical_purl(opt_str(ref, "referenceLocator", rpath))
            if purl:
                break
    parsed = parse_purl(purl)
    hashes = tuple(
        (hash_alg(req_str(c, "algorithm", cpath)), req_str(c, "checksumValue", cpath).lower())
        for cpath, c in obj_list(p, "checksums", path)
    )
    return Component(
        name=req_str(p, "name", path),
        version=opt_str(p, "versionInfo", path),
        purl=purl,
        purl_type=str(parsed.type) if parsed is not None else None,
        hashes=hashes,
        ref=opt_str(p, "SPDXID", path),
    )


def _described(doc: dict[str, Any]) -> list[str]:
    """SPDX ids the document describes, in source order."""
    out = str_list(doc, "documentDescribes")
    for rpath, rel in obj_list(doc, "relationships"):
        rtype = opt_str(rel, "relationshipType", rpath)
        a = opt_str(rel, "spdxElementId", rpath)
        b = opt_str(rel, "relatedSpdxElement", rpath)
        if rtype in ("DESCRIBES", "DESCRIBE") and a == _DOCUMENT and b:
            out.append(b)
        elif rtype == "DESCRIBED_BY" and b == _DOCUMENT and a:
            out.append(a)
    return out


def normalize(doc: dict[str, Any]) -> tuple[str, Sbom]:
    """(document namespace, normalized SBOM) of one SPDX JSON document.

    Raises:
        Invalid: the document is not valid SPDX 2.2/2.3 JSON (the message names the field).
    """
    version = req_str(doc, "spdxVersion")
    if version not in VERSIONS:
        raise Invalid("spdxVersion", f"{version!r} is not supported ({', '.join(VERSIONS)} are)")
    namespace = req_str(doc, "documentNamespace")
    name = opt_str(doc, "name")
    components = [_package(p, path) for path, p in obj_list(doc, "packages")]
    by_id = {c.ref: c for c in components if c.ref}
    subject = None
    for spdx_id in _described(doc):
        c = by_id.get(spdx_id)
        if c is not None:
            subject = c.purl or (f"{c.name}@{c.version}" if c.version else c.name)
            break
    return namespace, Sbom(
        subject=subject or name or namespace,
        format="spdx",
        spec_version=version.removeprefix("SPDX-"),
        name=name,
        components=tuple(components),
    )


class SpdxReader:
    """SPDX 2.2/2.3 JSON (format ``spdx``)."""

    name = "spdx"

    def sniff(self, doc: Any, filename: str) -> bool:
        return isinstance(doc, dict) and "spdxVersion" in doc

    def read(self, doc: Any, content: bytes, where: str) -> Iterator[ParsedRecord | RecordRefused]:
        try:
            namespace, sbom = normalize(as_obj(doc, ""))
            upstream_id = check_upstream_id(namespace)
        except Invalid as e:
            yield RecordRefused(where, f"invalid SPDX document: {e.message}")
            return
        yield ParsedRecord(
            upstream_id=upstream_id,
            doc_type="sbom",
            format="spdx",
            media_type=MEDIA_TYPE,
            content=content,
            normalized=sbom,
        )
