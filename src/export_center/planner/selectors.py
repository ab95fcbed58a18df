"""Selector matching: pure functions over one record's metadata and normalized JSON.

Selection is per document, so a document's raw bytes and its normalized view are always
exported together. What each selector filters (decided here, documented in docs/profiles.md):
- ``sources``: every record type (applied in SQL).
- ``includeIds`` / ``excludeIds``: a record's upstream id, normalized id, or any alias.
- ``ecosystems`` (purl types): advisories with an affected package of that type; VEX documents
  with a statement whose product or subcomponent purl has that type. SBOMs are not filtered.
- ``modifiedSince`` / ``modifiedUntil``: advisories by ``modified`` (else ``published``), VEX
  documents by their timestamp; records without a date are kept. SBOMs are not filtered.
- ``products`` (purl prefixes): VEX documents with a statement about such a product, SBOMs whose
  subject starts with one. Advisories are not filtered.
- ``sbomSubjects``: SBOMs whose subject equals or starts with one of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from export_center.planner.profiles import Selectors


def _ids(upstream_id: str, data: dict[str, Any]) -> set[str]:
    ids = {upstream_id}
    if isinstance(data.get("id"), str):
        ids.add(data["id"])
    ids.update(a for a in data.get("aliases") or () if isinstance(a, str))
    return ids


def _purl_type(purl: str) -> str | None:
    if not purl.startswith("pkg:"):
        return None
    return purl[4:].split("/", 1)[0].lower()


def _statements(doc_type: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    if doc_type == "vex":
        return list(data.get("statements") or ())
    if doc_type == "sbom":
        return list(data.get("vex") or ())
    return []


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def needs_record_data(sel: Selectors) -> bool:
    """False when every selector is applied in SQL (sources, tenants): then no record needs to
    be parsed to decide whether it is exported."""
    return bool(
        sel.include_ids
        or sel.exclude_ids
        or sel.ecosystems
        or sel.modified_since
        or sel.modified_until
        or sel.products
        or sel.sbom_subjects
    )


def matches(sel: Selectors, doc_type: str, upstream_id: str, data: dict[str, Any]) -> bool:
    """True when the record passes every selector."""
    if sel.include_ids and not (_ids(upstream_id, data) & set(sel.include_ids)):
        return False
    if sel.exclude_ids and (_ids(upstream_id, data) & set(sel.exclude_ids)):
        return False
    statements = _statements(doc_type, data)
    if sel.ecosystems:
        wanted = set(sel.ecosystems)
        if doc_type == "advisory":
            if not {a.get("purl_type") for a in data.get("affected") or ()} & wanted:
                return False
        elif doc_type == "vex":
            purls = [st.get("product", "") for st in statements] + [
                sub for st in statements for sub in st.get("subcomponents") or ()
            ]
            if not {_purl_type(p) for p in purls} & wanted:
                return False
    if (sel.modified_since or sel.modified_until) and doc_type in {"advisory", "vex"}:
        when = _parse_time(
            data.get("modified") or data.get("published")
            if doc_type == "advisory"
            else data.get("timestamp")
        )
        if when is not None:
            if sel.modified_since and when < sel.modified_since:
                return False
            if sel.modified_until and when > sel.modified_until:
                return False
    if sel.products:
        prefixes = tuple(sel.products)
        if doc_type == "vex" and not any(
            str(st.get("product", "")).startswith(prefixes) for st in statements
        ):
            return False
        if doc_type == "sbom" and not str(data.get("subject", "")).startswith(prefixes):
            return False
    if sel.sbom_subjects and doc_type == "sbom":
        subject = str(data.get("subject", ""))
        if not any(subject == s or subject.startswith(s) for s in sel.sbom_subjects):
            return False
    return True
