"""Normalized evidence: the typed view derived from raw documents.

These frozen dataclasses are what ingesters produce and what adapters, the policy engine and the
Trivy writer consume; :class:`ParsedRecord` is one record on its way into the store. They
serialize to JSON with :func:`to_json_dict`; keys are sorted by the canonical writer, and every
tuple here is built in a stable order (sorted where the source order carries no meaning) so that
output never depends on set or dict iteration order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

DocType = Literal["advisory", "vex", "sbom"]
DOC_TYPES: tuple[DocType, ...] = ("advisory", "vex", "sbom")

# OpenVEX vocabulary is our normalized VEX vocabulary; CSAF and CycloneDX map onto it.
VexStatus = Literal["not_affected", "affected", "fixed", "under_investigation"]
VEX_STATUSES: tuple[str, ...] = ("not_affected", "affected", "fixed", "under_investigation")


@dataclass(frozen=True)
class RangeEvent:
    """One OSV range event: ``introduced``, ``fixed``, ``last_affected`` or ``limit``."""

    kind: str
    version: str


@dataclass(frozen=True)
class VersionRange:
    """An OSV range: ``type`` is SEMVER, ECOSYSTEM or GIT; events in source order."""

    type: str
    events: tuple[RangeEvent, ...]


@dataclass(frozen=True)
class AffectedPackage:
    """One affected package of an advisory.

    ``purl_type`` is the purl type (pypi, golang, cargo, npm, maven, deb, apk, ...);
    ``name`` is the ecosystem's own package name (Maven: ``group:artifact``; Go: module path);
    ``ecosystem`` is the source's ecosystem string as given (``PyPI``, ``Debian:12``).
    """

    purl_type: str
    name: str
    ecosystem: str
    purl: str | None = None
    ranges: tuple[VersionRange, ...] = ()
    versions: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Severity:
    """A severity score: ``type`` is CVSS_V2, CVSS_V3, CVSS_V4 or a source label; ``score`` is
    the vector (or label)."""

    type: str
    score: str


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...] = ()
    summary: str | None = None
    details: str | None = None
    affected: tuple[AffectedPackage, ...] = ()
    severities: tuple[Severity, ...] = ()
    # A qualitative label when the source gives one (GHSA "HIGH", RustSec informational, ...).
    severity_label: str | None = None
    cwe_ids: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    published: str | None = None
    modified: str | None = None
    withdrawn: str | None = None


@dataclass(frozen=True)
class VexStatement:
    """One VEX statement about one vulnerability and one product."""

    vulnerability: str
    product: str
    status: str
    provider: str
    aliases: tuple[str, ...] = ()
    subcomponents: tuple[str, ...] = ()
    justification: str | None = None
    impact_statement: str | None = None
    action_statement: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class VexDocument:
    id: str
    format: str
    provider: str
    statements: tuple[VexStatement, ...]
    timestamp: str | None = None


@dataclass(frozen=True)
class Component:
    name: str
    version: str | None = None
    purl: str | None = None
    purl_type: str | None = None
    # (algorithm lowercased without dashes, e.g. "sha1", "sha256"; hex value lowercased)
    hashes: tuple[tuple[str, str], ...] = ()
    ref: str | None = None

    def hash(self, alg: str) -> str | None:
        return next((v for a, v in self.hashes if a == alg), None)


@dataclass(frozen=True)
class Sbom:
    subject: str
    format: str
    spec_version: str
    name: str | None
    components: tuple[Component, ...]
    # VEX statements carried inside a CycloneDX BOM's ``vulnerabilities`` array.
    vex: tuple[VexStatement, ...] = ()


Normalized = Advisory | VexDocument | Sbom


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


def to_json_dict(obj: Any) -> Any:
    """Dataclasses to plain JSON values (tuples become lists). Key order is left to the writer,
    which always sorts.

    An orjson round trip: orjson serializes dataclasses (fields in definition order) and tuples
    natively, so this gives the values a field-by-field recursion gives, about five times
    faster (ingest normalizes every record through here).
    """
    return orjson.loads(orjson.dumps(obj))


def _tuple(v: Any) -> tuple[Any, ...]:
    return tuple(v) if v is not None else ()


def advisory_from_json(d: dict[str, Any]) -> Advisory:
    """Inverse of :func:`to_json_dict` for :class:`Advisory`."""
    return Advisory(
        id=d["id"],
        aliases=_tuple(d.get("aliases")),
        summary=d.get("summary"),
        details=d.get("details"),
        affected=tuple(
            AffectedPackage(
                purl_type=a["purl_type"],
                name=a["name"],
                ecosystem=a["ecosystem"],
                purl=a.get("purl"),
                ranges=tuple(
                    VersionRange(
                        type=r["type"],
                        events=tuple(RangeEvent(e["kind"], e["version"]) for e in r["events"]),
                    )
                    for r in a.get("ranges", ())
                ),
                versions=_tuple(a.get("versions")),
                fixed=_tuple(a.get("fixed")),
            )
            for a in d.get("affected", ())
        ),
        severities=tuple(Severity(s["type"], s["score"]) for s in d.get("severities", ())),
        severity_label=d.get("severity_label"),
        cwe_ids=_tuple(d.get("cwe_ids")),
        references=_tuple(d.get("references")),
        published=d.get("published"),
        modified=d.get("modified"),
        withdrawn=d.get("withdrawn"),
    )


def vex_statement_from_json(d: dict[str, Any]) -> VexStatement:
    return VexStatement(
        vulnerability=d["vulnerability"],
        product=d["product"],
        status=d["status"],
        provider=d["provider"],
        aliases=_tuple(d.get("aliases")),
        subcomponents=_tuple(d.get("subcomponents")),
        justification=d.get("justification"),
        impact_statement=d.get("impact_statement"),
        action_statement=d.get("action_statement"),
        timestamp=d.get("timestamp"),
    )


def component_from_json(d: dict[str, Any]) -> Component:
    return Component(
        name=d["name"],
        version=d.get("version"),
        purl=d.get("purl"),
        purl_type=d.get("purl_type"),
        hashes=tuple((a, v) for a, v in d.get("hashes", ())),
        ref=d.get("ref"),
    )
