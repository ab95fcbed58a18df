"""OSV advisories: JSON and YAML, schema versions absent through 1.7.x, and the osv.dev
``{"vulns": [...]}`` bundle (one record per entry).

Required: ``id`` (a non-empty string) and ``modified`` (a string), as in the OSV schema.
Everything else is optional, but a field that is present must have the right type; free-form
objects (``database_specific``, ``ecosystem_specific``) are read only where we know their shape
(GHSA ``severity``/``cwe_ids``, RustSec ``informational``) and otherwise ignored.

Spec: https://ossf.github.io/osv-schema/
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import rfc8785

from export_center.ingest._common import (
    Invalid,
    as_obj,
    as_str,
    at,
    canonical_purl,
    check_upstream_id,
    loose_str,
    obj_list,
    opt_list,
    opt_obj,
    opt_str,
    parse_purl,
    req_str,
    sorted_unique,
    str_list,
    unique,
)
from export_center.ingest.interface import RecordRefused
from export_center.model import (
    Advisory,
    AffectedPackage,
    ParsedRecord,
    RangeEvent,
    Severity,
    VersionRange,
)

__all__ = ["ECOSYSTEM_PURL_TYPES", "OsvReader", "purl_type_for_ecosystem"]

MEDIA_JSON = "application/osv+json"
MEDIA_YAML = "application/osv+yaml"

# The Go vulnerability database writes this for "unknown" times.
_ZERO_TIME = "0001-01-01T00:00:00Z"

_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")

#: OSV ecosystem (the part before the first ":") → purl type.
ECOSYSTEM_PURL_TYPES: dict[str, str] = {
    "PyPI": "pypi",
    "Go": "golang",
    "crates.io": "cargo",
    "npm": "npm",
    "Maven": "maven",
    "NuGet": "nuget",
    "RubyGems": "gem",
    "Packagist": "composer",
    "Pub": "pub",
    "Hex": "hex",
    "SwiftURL": "swift",
    "CRAN": "cran",
    "Hackage": "hackage",
    "GHC": "hackage",
    "ConanCenter": "conan",
    "GitHub Actions": "github",
    "Bitnami": "bitnami",
    "Debian": "deb",
    "Ubuntu": "deb",
    "Alpine": "apk",
    "Wolfi": "apk",
    "Chainguard": "apk",
    "MinimOS": "apk",
    "Rocky Linux": "rpm",
    "AlmaLinux": "rpm",
    "Red Hat": "rpm",
    "openSUSE": "rpm",
    "SUSE": "rpm",
    "Photon OS": "rpm",
    "Mageia": "rpm",
    "openEuler": "rpm",
    "Azure Linux": "rpm",
}

# Distro namespace for purls we build for OS ecosystems (package.purl absent).
_DISTRO_NAMESPACES: dict[str, str] = {
    "Debian": "debian",
    "Ubuntu": "ubuntu",
    "Alpine": "alpine",
    "Wolfi": "wolfi",
    "Chainguard": "chainguard",
    "Rocky Linux": "rocky-linux",
    "AlmaLinux": "almalinux",
    "Red Hat": "redhat",
    "openSUSE": "opensuse",
    "SUSE": "suse",
}

# Package-name shapes whose last path segment is the purl name and the rest its namespace.
_SLASH_NAMESPACED = ("golang", "composer", "swift", "github", "npm")


def purl_type_for_ecosystem(ecosystem: str, purl: str | None = None) -> str:
    """The purl type for an OSV ecosystem string (``Debian:12`` → ``deb``).

    Unknown ecosystems take the type of the record's own purl when it has a valid one, else the
    lowercased ecosystem name, so that two unknown ecosystems never share an index bucket.
    """
    base = ecosystem.split(":", 1)[0]
    known = ECOSYSTEM_PURL_TYPES.get(base)
    if known:
        return known
    parsed = parse_purl(purl)
    if parsed is not None:
        return str(parsed.type)
    return re.sub(r"[^a-z0-9.+-]+", "-", base.lower()).strip("-") or "unknown"


def _build_purl(purl_type: str, ecosystem: str, name: str) -> str | None:
    """A version-less purl for a package given without one (Go, RustSec records)."""
    base = ecosystem.split(":", 1)[0]
    if base not in ECOSYSTEM_PURL_TYPES:
        return None
    namespace: str | None = None
    short = name
    if purl_type == "maven":
        if ":" not in name:
            return None
        namespace, short = name.split(":", 1)
    elif purl_type in _SLASH_NAMESPACED and "/" in name:
        namespace, short = name.rsplit("/", 1)
    elif purl_type in ("deb", "apk", "rpm"):
        namespace = _DISTRO_NAMESPACES.get(base)
        if namespace is None:
            return None
    text = f"pkg:{purl_type}/{namespace}/{short}" if namespace else f"pkg:{purl_type}/{short}"
    return canonical_purl(text)


def _time(d: dict[str, Any], key: str) -> str | None:
    value = opt_str(d, key)
    return None if value == _ZERO_TIME else value


def _ranges(a: dict[str, Any], path: str) -> tuple[tuple[VersionRange, ...], list[str]]:
    ranges: list[VersionRange] = []
    fixed: list[str] = []
    for rpath, r in obj_list(a, "ranges", path):
        rtype = req_str(r, "type", rpath)
        events: list[RangeEvent] = []
        for epath, e in obj_list(r, "events", rpath):
            if len(e) != 1:
                raise Invalid(epath, f"an event has exactly one of {', '.join(_EVENT_KINDS)}")
            ((ekind, value),) = e.items()
            if ekind not in _EVENT_KINDS:
                raise Invalid(
                    at(epath, ekind), f"unknown event (expected {', '.join(_EVENT_KINDS)})"
                )
            version = as_str(value, at(epath, ekind))
            events.append(RangeEvent(ekind, version))
            # GIT "fixed" events are commit hashes, not versions.
            if ekind == "fixed" and rtype != "GIT":
                fixed.append(version)
        ranges.append(VersionRange(rtype, tuple(events)))
    return tuple(ranges), fixed


def _affected(doc: dict[str, Any]) -> tuple[AffectedPackage, ...]:
    out: list[AffectedPackage] = []
    for path, a in obj_list(doc, "affected"):
        pkg = opt_obj(a, "package", path)
        if pkg is None:
            # Allowed by OSV for GIT-only entries; nothing to match a package against.
            continue
        ppath = at(path, "package")
        ecosystem = req_str(pkg, "ecosystem", ppath)
        name = req_str(pkg, "name", ppath)
        given_purl = opt_str(pkg, "purl", ppath)
        purl_type = purl_type_for_ecosystem(ecosystem, given_purl)
        purl = canonical_purl(given_purl) if given_purl else _build_purl(purl_type, ecosystem, name)
        ranges, fixed = _ranges(a, path)
        out.append(
            AffectedPackage(
                purl_type=purl_type,
                name=name,
                ecosystem=ecosystem,
                purl=purl,
                ranges=ranges,
                versions=tuple(str_list(a, "versions", path)),
                fixed=unique(fixed),
            )
        )
    return tuple(out)


def _severities(doc: dict[str, Any]) -> tuple[Severity, ...]:
    seen: dict[tuple[str, str], None] = {}
    for path, s in obj_list(doc, "severity"):
        seen[(req_str(s, "type", path), req_str(s, "score", path))] = None
    return tuple(Severity(t, v) for t, v in seen)


def _severity_label(doc: dict[str, Any]) -> str | None:
    # GHSA: database_specific.severity ("HIGH", "MODERATE", ...).
    label = loose_str(doc.get("database_specific"), "severity")
    if label:
        return label
    # RustSec: affected[].database_specific.informational ("unmaintained", "unsound", ...).
    for a in opt_list(doc, "affected"):
        if isinstance(a, dict):
            info = loose_str(a.get("database_specific"), "informational")
            if info:
                return info
    return None


def _cwe_ids(doc: dict[str, Any]) -> tuple[str, ...]:
    ds = doc.get("database_specific")
    cwes = ds.get("cwe_ids") if isinstance(ds, dict) else None
    if not isinstance(cwes, list):
        return ()
    return sorted_unique(c for c in cwes if isinstance(c, str))


def normalize(doc: dict[str, Any]) -> Advisory:
    """The normalized view of one OSV record.

    Raises:
        Invalid: a required field is missing or a field has the wrong type.
    """
    osv_id = req_str(doc, "id")
    req_str(doc, "modified")
    return Advisory(
        id=osv_id,
        aliases=sorted_unique(str_list(doc, "aliases"), exclude=osv_id),
        summary=opt_str(doc, "summary"),
        details=opt_str(doc, "details"),
        affected=_affected(doc),
        severities=_severities(doc),
        severity_label=_severity_label(doc),
        cwe_ids=_cwe_ids(doc),
        references=unique(req_str(r, "url", p) for p, r in obj_list(doc, "references")),
        published=_time(doc, "published"),
        modified=_time(doc, "modified"),
        withdrawn=_time(doc, "withdrawn"),
    )


def _format_for(osv_id: str) -> str:
    # GitHub-reviewed content keeps its vendor name whatever delivered it (the advisory-database
    # layout or an osv.dev bundle); the syntax is OSV either way.
    return "ghsa" if osv_id.startswith("GHSA-") else "osv"


def _record(doc: dict[str, Any], content: bytes, media_type: str) -> ParsedRecord:
    adv = normalize(doc)
    return ParsedRecord(
        upstream_id=check_upstream_id(adv.id),
        doc_type="advisory",
        format=_format_for(adv.id),
        media_type=media_type,
        content=content,
        normalized=adv,
        withdrawn="withdrawn" in doc and doc["withdrawn"] is not None,
    )


def _is_wrapper(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("vulns"), list) and "id" not in doc


def _is_record(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("id"), str)
        and any(k in doc for k in ("modified", "affected", "schema_version"))
    )


class OsvReader:
    """OSV records (format ``osv``, or ``ghsa`` for ``GHSA-`` ids)."""

    name = "osv"

    def sniff(self, doc: Any, filename: str) -> bool:
        return _is_wrapper(doc) or _is_record(doc)

    def read(self, doc: Any, content: bytes, where: str) -> Iterator[ParsedRecord | RecordRefused]:
        yaml_source = where.lower().endswith((".yaml", ".yml"))
        media = MEDIA_YAML if yaml_source else MEDIA_JSON
        if not _is_wrapper(doc):
            try:
                yield _record(as_obj(doc, ""), content, media)
            except Invalid as e:
                yield RecordRefused(where, f"invalid OSV record: {e.message}")
            return
        entries: list[Any] = doc["vulns"]
        if not entries:
            yield RecordRefused(where, 'OSV bundle {"vulns": []} holds no records')
            return
        for i, entry in enumerate(entries):
            rid = entry.get("id") if isinstance(entry, dict) else None
            label = f"{where}#vulns[{i}] ({rid if isinstance(rid, str) else '?'})"
            try:
                obj = as_obj(entry, "")
                # The bundle's bytes cannot be split exactly: each entry is stored as its
                # RFC 8785 canonical JSON (always JSON, even from a YAML bundle).
                yield _record(obj, rfc8785.dumps(obj), MEDIA_JSON)
            except Invalid as e:
                yield RecordRefused(label, f"invalid OSV record: {e.message}")
            except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
                yield RecordRefused(label, f"cannot canonicalize the record: {e}")
