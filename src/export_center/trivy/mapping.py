"""Normalized advisories → Trivy DB entries (pure functions, no I/O).

Facts about what Trivy reads are in docs/trivy.md ("What Trivy reads"); where upstream
trivy-db (its OSV source, ``pkg/vulnsrc/osv``) made a choice, we follow it unless noted:

- one advisory bucket per feed and ecosystem, ``<ecosystem>::<feed name>``; OS advisories go to
  the distribution's bucket (``debian 12``, ``alpine 3.22``), shared by every feed;
- package keys normalized the way Trivy looks them up (:func:`normalize_package_name`);
- the key of an entry is the advisory's CVE when it has exactly one CVE id, else the advisory id
  (:func:`vulnerability_key`); upstream writes one entry per CVE when there are several, which
  reports the same finding several times: we keep the advisory's own id instead and list every
  other id in ``VendorIDs``;
- OSV ranges become ``VulnerableVersions`` entries (``">=1.0, <1.2"``, ``"<1.2"``,
  ``"<=1.4"``, ``"=1.4"``); ``fixed`` events also become ``PatchedVersions``; GIT ranges are
  ignored (commits mean nothing to Trivy's version comparers);
- withdrawn advisories are left out.

Everything returned is built in a fixed order (sorted where the source order carries no
meaning), so the same advisories always give the same bytes.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from export_center.model import Advisory, AffectedPackage, VersionRange
from export_center.policy import versions as pv

__all__ = [
    "DATA_SOURCE_BUCKET",
    "VULNERABILITY_BUCKET",
    "AdvisoryEntry",
    "DataSource",
    "MappedAdvisory",
    "TrivyEcosystem",
    "data_source_for",
    "data_source_value",
    "map_advisory",
    "merge_advisory_values",
    "merge_vulnerability_values",
    "normalize_package_name",
    "os_fixed_version",
    "rfc3339",
    "severity_from_label",
    "severity_from_score",
    "trivy_ecosystem",
    "vendor_ids",
    "version_constraints",
    "vulnerability_key",
    "vulnerability_value",
]

VULNERABILITY_BUCKET: Final = "vulnerability"
DATA_SOURCE_BUCKET: Final = "data-source"

# Trivy's severity scale (trivy-db types.Severity).
SEVERITY_UNKNOWN, SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH, SEVERITY_CRITICAL = range(5)
_SEVERITY_NAMES: Final = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_LABELS: Final = {
    "LOW": SEVERITY_LOW,
    "MODERATE": SEVERITY_MEDIUM,  # GHSA's word for medium
    "MEDIUM": SEVERITY_MEDIUM,
    "HIGH": SEVERITY_HIGH,
    "IMPORTANT": SEVERITY_HIGH,  # Red Hat / SUSE wording
    "CRITICAL": SEVERITY_CRITICAL,
}

# Advisory JSON status values (trivy-db types.Status).
STATUS_AFFECTED: Final = 2


# --------------------------------------------------------------------------------------------
# Ecosystems and package names


@dataclass(frozen=True)
class TrivyEcosystem:
    """Where an OSV ecosystem's advisories go in trivy.db.

    ``slug`` is Trivy's ecosystem name (``pip``, ``go``, ``debian``…); ``os_bucket`` is the
    whole bucket name for OS ecosystems (``debian 12``) and None for language ecosystems, whose
    bucket is ``<slug>::<feed name>``.
    """

    slug: str
    os_bucket: str | None = None
    #: the purl type whose version ordering reads this ecosystem's versions (None: no ordering)
    purl_type: str | None = None

    @property
    def is_os(self) -> bool:
        return self.os_bucket is not None

    def bucket(self, feed_name: str) -> str:
        return self.os_bucket if self.os_bucket is not None else f"{self.slug}::{feed_name}"


# OSV ecosystem (lowercased) → (Trivy slug, purl type for version ordering). The slugs are
# trivy-db's ecosystem types; Trivy reads every bucket whose name starts with "<slug>::".
_LANGUAGE: Final[dict[str, tuple[str, str | None]]] = {
    "pypi": ("pip", "pypi"),
    "npm": ("npm", "npm"),
    "go": ("go", "golang"),
    "crates.io": ("cargo", "cargo"),
    "maven": ("maven", "maven"),
    "nuget": ("nuget", "nuget"),
    "rubygems": ("rubygems", "gem"),
    "packagist": ("composer", "composer"),
    "pub": ("pub", "pub"),
    "hex": ("erlang", "hex"),
    "swifturl": ("swift", "swift"),
    "purl-type:swift": ("swift", "swift"),  # GHSA's older spelling
    "conancenter": ("conan", None),
    "julia": ("julia", None),
    "bitnami": ("bitnami", None),
    "kubernetes": ("k8s", None),
}


def _os_release(release: str, parts: int) -> str | None:
    """``v3.22.1`` → ``3.22`` (parts=2); ``12.5`` → ``12`` (parts=1); None if not numeric."""
    m = re.fullmatch(r"v?(\d+(?:\.\d+)*)", release.strip())
    if m is None:
        return None
    numbers = m.group(1).split(".")
    if len(numbers) < parts:
        return None
    return ".".join(numbers[:parts])


def trivy_ecosystem(osv_ecosystem: str) -> TrivyEcosystem | None:
    """The Trivy ecosystem of an OSV ecosystem string, or None when Trivy has no bucket for it
    (or we do not know its bucket naming): ``PyPI`` → ``pip``, ``Debian:12`` → ``debian 12``,
    ``Alpine:v3.22`` → ``alpine 3.22``, ``Ubuntu:22.04:LTS`` → ``ubuntu 22.04``.

    Ubuntu Pro (ESM) ecosystems are not mapped: Trivy's ``ubuntu`` buckets describe the
    standard archive. An OS ecosystem without a usable release is not mapped either.
    """
    base, _, release = osv_ecosystem.partition(":")
    key = base.strip().lower()
    if not release and key in _LANGUAGE:
        slug, purl_type = _LANGUAGE[key]
        return TrivyEcosystem(slug, None, purl_type)
    if key == "alpine":
        ver = _os_release(release, 2)
        return TrivyEcosystem("alpine", f"alpine {ver}", "apk") if ver else None
    if key == "debian":
        ver = _os_release(release, 1)
        return TrivyEcosystem("debian", f"debian {ver}", "deb") if ver else None
    if key == "ubuntu":
        # "Ubuntu:22.04:LTS", "Ubuntu:24.10", but not "Ubuntu:Pro:18.04:LTS"
        first = release.split(":", 1)[0]
        ver = _os_release(first, 2)
        return TrivyEcosystem("ubuntu", f"ubuntu {ver}", "deb") if ver else None
    if key in ("wolfi", "chainguard") and not release:
        return TrivyEcosystem(key, key, "apk")
    if key == "almalinux":
        ver = _os_release(release, 1)
        return TrivyEcosystem("alma", f"alma {ver}", "rpm") if ver else None
    if key == "rocky linux":
        ver = _os_release(release, 1)
        return TrivyEcosystem("rocky", f"rocky {ver}", "rpm") if ver else None
    return None


def normalize_package_name(slug: str, name: str) -> str:
    """The package key Trivy looks up (trivy-db ``NormalizePkgName``): pip lowercased with
    ``_`` → ``-`` (dots kept); Go and CocoaPods as is; Swift without ``https://`` and ``.git``;
    OS package names as is; everything else (npm, Maven ``group:artifact``, NuGet, Cargo,
    RubyGems, Composer, …) lowercased."""
    if slug == "pip":
        return name.lower().replace("_", "-")
    if slug in ("go", "cocoapods"):
        return name
    if slug == "swift":
        return name.removeprefix("https://").removesuffix(".git")
    if slug in ("alpine", "debian", "ubuntu", "wolfi", "chainguard", "alma", "rocky"):
        return name
    return name.lower()


# --------------------------------------------------------------------------------------------
# Ids


def _cve_ids(advisory: Advisory) -> list[str]:
    ids = {advisory.id, *advisory.aliases}
    return sorted(i for i in ids if i.startswith("CVE-"))


def vulnerability_key(advisory: Advisory) -> str:
    """The key Trivy reports as ``VulnerabilityID``: the CVE when the advisory has exactly one
    CVE id (its own or an alias), else the advisory's own id."""
    cves = _cve_ids(advisory)
    return cves[0] if len(cves) == 1 else advisory.id


def vendor_ids(advisory: Advisory, key: str) -> list[str]:
    """Every id of the advisory except ``key``, sorted: the advisory's own id and its aliases
    (GHSA, PYSEC, GO, RUSTSEC and, when the key is not a CVE, the CVEs)."""
    return sorted({advisory.id, *advisory.aliases} - {key})


# --------------------------------------------------------------------------------------------
# Versions


def _scheme(eco: TrivyEcosystem) -> pv.Scheme | None:
    return pv.scheme_for(eco.purl_type) if eco.purl_type else None


def _range_bounds(rng: VersionRange) -> list[tuple[str, str | None, bool]]:
    """(introduced, upper bound, upper inclusive) per interval of an OSV range, read the way
    trivy-db reads it: each ``introduced`` opens an interval, ``fixed`` (exclusive) or
    ``last_affected`` (inclusive) sets its upper bound, and ``limit`` caps an interval still
    open. A closing event with no ``introduced`` before it opens at ``0``.
    """
    intervals: list[tuple[str, str | None, bool]] = []
    for ev in rng.events:
        if ev.kind == "introduced":
            intervals.append((ev.version, None, False))
        elif ev.kind in ("fixed", "last_affected"):
            lower = intervals.pop()[0] if intervals else "0"
            intervals.append((lower, ev.version, ev.kind == "last_affected"))
        elif ev.kind == "limit" and intervals and intervals[-1][1] is None and ev.version != "*":
            intervals[-1] = (intervals[-1][0], ev.version, False)
    return intervals


def _constraint(lower: str, upper: str | None, inclusive: bool) -> str:
    # Same spelling as trivy-db's OSV source: "=v" for a one-version interval, ">=0" dropped
    # when there is an upper bound, ", " between the bounds (AND).
    if upper is not None and inclusive and upper == lower:
        return f"={lower}"
    if upper is None:
        return f">={lower}"
    bound = f"<={upper}" if inclusive else f"<{upper}"
    return bound if lower == "0" else f">={lower}, {bound}"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def version_constraints(
    affected: AffectedPackage, eco: TrivyEcosystem
) -> tuple[list[str], list[str]]:
    """(VulnerableVersions, PatchedVersions) for a language package.

    Every non-GIT range interval gives one VulnerableVersions entry; every ``fixed`` event of
    those ranges is a patched version. Each version of the explicit ``versions`` list that no
    interval already covers (checked with the ecosystem's version ordering) is added as
    ``=v``; a version we cannot order is added too (listing it is never wrong).
    """
    vulnerable: list[str] = []
    patched: list[str] = []
    ranges = [r for r in affected.ranges if r.type.upper() != "GIT"]
    for rng in ranges:
        for lower, upper, inclusive in _range_bounds(rng):
            vulnerable.append(_constraint(lower, upper, inclusive))
        patched.extend(ev.version for ev in rng.events if ev.kind == "fixed")
    scheme = _scheme(eco)
    for version in affected.versions:
        if not _covered(version, ranges, scheme):
            vulnerable.append(f"={version}")
    return _unique(vulnerable), _unique(patched)


def _covered(version: str, ranges: Sequence[VersionRange], scheme: pv.Scheme | None) -> bool:
    if scheme is None or not ranges:
        return False
    for rng in ranges:
        rscheme = pv.range_scheme(rng, scheme)
        if rscheme is None:
            continue
        parsed = pv.parse_version(rscheme, version)
        if parsed is not None and pv.version_in_range(parsed, rng, rscheme).affected:
            return True
    return False


def os_fixed_version(affected: AffectedPackage) -> str:
    """The ``FixedVersion`` of an OS package: the last ``fixed`` event of its non-GIT ranges in
    source order (distro feeds give one), or ``""`` when there is no fix yet."""
    fixed = [
        ev.version
        for rng in affected.ranges
        if rng.type.upper() != "GIT"
        for ev in rng.events
        if ev.kind == "fixed"
    ]
    return fixed[-1] if fixed else ""


# --------------------------------------------------------------------------------------------
# Severity, CVSS, dates


def severity_from_label(label: str | None) -> int:
    """Trivy's severity for a qualitative label (GHSA ``MODERATE`` → MEDIUM); 0 when unknown
    (RustSec's ``unmaintained`` and the like are not severities)."""
    return _LABELS.get((label or "").strip().upper(), SEVERITY_UNKNOWN)


def severity_from_score(score: float) -> int:
    """CVSS score → severity, with Trivy's thresholds (9, 7, 4, >0)."""
    if score >= 9.0:
        return SEVERITY_CRITICAL
    if score >= 7.0:
        return SEVERITY_HIGH
    if score >= 4.0:
        return SEVERITY_MEDIUM
    if score > 0.0:
        return SEVERITY_LOW
    return SEVERITY_UNKNOWN


def _cvss_module() -> Any | None:
    # The ``cvss`` package (Red Hat Product Security) computes scores from vectors. Without it
    # the vectors are still written, only the scores are absent.
    try:
        return importlib.import_module("cvss")
    except ImportError:
        return None


_CVSS = _cvss_module()


@functools.lru_cache(maxsize=4096)
def _score(kind: str, vector: str) -> float | None:
    """The score of a CVSS vector, or None when it cannot be computed.

    v3: the environmental score, as trivy-db does (equal to the base score when the vector has
    no temporal or environmental metrics); v2 and v4: the base score.
    """
    if _CVSS is None:
        return None
    try:
        if kind == "V3":
            return float(_CVSS.CVSS3(vector).scores()[-1])
        if kind == "V2":
            return float(_CVSS.CVSS2(vector).scores()[0])
        return float(_CVSS.CVSS4(vector).base_score)
    except (_CVSS.CVSSError, ValueError, KeyError, TypeError, ArithmeticError):
        return None


def cvss_value(advisory: Advisory) -> dict[str, Any]:
    """The advisory's CVSS object (``V3Vector``/``V3Score``, ``V2…``, ``V40…``): the first vector
    of each version, with its score when it can be computed."""
    out: dict[str, Any] = {}
    for sev in advisory.severities:
        kind = sev.type.upper()
        vector = sev.score.strip().removesuffix("/")  # GHSA vectors sometimes end in "/"
        if kind == "CVSS_V3" and "V3Vector" not in out and vector.startswith("CVSS:3."):
            key = "V3"
        elif kind == "CVSS_V2" and "V2Vector" not in out:
            key = "V2"
        elif kind == "CVSS_V4" and "V40Vector" not in out and vector.startswith("CVSS:4.0"):
            key = "V40"
        else:
            continue
        out[f"{key}Vector"] = vector
        score = _score("V3" if key == "V3" else "V2" if key == "V2" else "V4", vector)
        if score is not None:
            out[f"{key}Score"] = score
    return out


def advisory_severity(advisory: Advisory, cvss: dict[str, Any] | None = None) -> int:
    """The source's label when it gives one, else the CVSS v3, v4 then v2 score."""
    from_label = severity_from_label(advisory.severity_label)
    if from_label:
        return from_label
    cvss = cvss_value(advisory) if cvss is None else cvss
    for key in ("V3Score", "V40Score", "V2Score"):
        if key in cvss:
            return severity_from_score(float(cvss[key]))
    return SEVERITY_UNKNOWN


def rfc3339(value: str | None) -> str | None:
    """A timestamp as RFC 3339 UTC with whole seconds (what Go's ``time.Time`` decodes), or
    None when absent, unparseable, or Go's zero-time placeholder (year 1)."""
    if not value:
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# JSON values


@dataclass(frozen=True)
class DataSource:
    """One feed as Trivy shows it (``DataSource`` in reports): ``id`` keys ``VendorSeverity`` and
    ``CVSS``; ``name`` names the language buckets (``pip::<name>``)."""

    id: str
    name: str
    url: str = ""


def data_source_for(source_name: str) -> DataSource:
    """The default data source of a feed: its name, and an id made of it (lowercase, runs of
    other characters as ``-``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", source_name.lower()).strip("-") or "feed"
    return DataSource(id=slug, name=source_name)


def data_source_value(source: DataSource) -> dict[str, Any]:
    value: dict[str, Any] = {"ID": source.id, "Name": source.name}
    if source.url:
        value["URL"] = source.url
    return value


def vulnerability_value(advisory: Advisory, source: DataSource) -> dict[str, Any]:
    """The Vulnerability JSON of one advisory, severity and CVSS keyed by ``source.id``."""
    value: dict[str, Any] = {}
    if advisory.summary:
        value["Title"] = advisory.summary
    if advisory.details:
        value["Description"] = advisory.details
    cvss = cvss_value(advisory)
    severity = advisory_severity(advisory, cvss)
    if severity:
        value["Severity"] = _SEVERITY_NAMES[severity]
        value["VendorSeverity"] = {source.id: severity}
    if cvss:
        value["CVSS"] = {source.id: cvss}
    if advisory.cwe_ids:
        value["CweIDs"] = sorted(set(advisory.cwe_ids))
    refs = sorted({r.strip() for r in advisory.references if r.strip()})
    if refs:
        value["References"] = refs
    published = rfc3339(advisory.published)
    if published:
        value["PublishedDate"] = published
    modified = rfc3339(advisory.modified)
    if modified:
        value["LastModifiedDate"] = modified
    return value


@dataclass(frozen=True)
class AdvisoryEntry:
    """One key of an advisory bucket: ``bucket`` → ``package`` → ``vuln_id`` = ``value``."""

    bucket: str
    package: str
    vuln_id: str
    value: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class MappedAdvisory:
    """What one advisory contributes: its entries, its Vulnerability JSON under ``vuln_id``
    (None when it has no entry), and why affected packages were left out."""

    vuln_id: str
    entries: tuple[AdvisoryEntry, ...]
    vulnerability: dict[str, Any] | None
    skipped: tuple[str, ...] = ()


def map_advisory(advisory: Advisory, source: DataSource) -> MappedAdvisory:
    """The trivy.db entries of one advisory from feed ``source``.

    An advisory that is withdrawn, or none of whose affected packages maps to a Trivy bucket,
    gives no entry; ``skipped`` says why, one reason per left-out package (reasons name the
    ecosystem, never the advisory, so they can be counted).
    """
    key = vulnerability_key(advisory)
    if advisory.withdrawn:
        return MappedAdvisory(key, (), None, ("withdrawn advisory",))
    ids = vendor_ids(advisory, key)
    severity = advisory_severity(advisory)
    # Several affected[] entries may name the same package (one per range): combine them, as
    # upstream does.
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: list[str] = []
    for affected in advisory.affected:
        eco = trivy_ecosystem(affected.ecosystem)
        if eco is None:
            skipped.append(f"ecosystem {affected.ecosystem.split(':', 1)[0]!r} has no Trivy bucket")
            continue
        if eco.is_os:
            value = _os_value(affected, ids, severity)
        else:
            vulnerable, patched = version_constraints(affected, eco)
            if not vulnerable:
                skipped.append(f"{eco.slug}: no version range or version (GIT ranges only)")
                continue
            value = {"VulnerableVersions": vulnerable}
            if patched:
                value["PatchedVersions"] = patched
            if ids:
                value["VendorIDs"] = ids
        slot = (eco.bucket(source.name), normalize_package_name(eco.slug, affected.name))
        merged[slot] = merge_advisory_values([merged[slot], value]) if slot in merged else value
    entries = tuple(
        AdvisoryEntry(bucket, package, key, value)
        for (bucket, package), value in sorted(merged.items())
    )
    vulnerability = vulnerability_value(advisory, source) if entries else None
    return MappedAdvisory(key, entries, vulnerability, tuple(skipped))


def _os_value(affected: AffectedPackage, ids: list[str], severity: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    fixed = os_fixed_version(affected)
    if fixed:
        value["FixedVersion"] = fixed
    else:
        value["Status"] = STATUS_AFFECTED
    if severity:
        value["Severity"] = severity
    if ids:
        value["VendorIDs"] = ids
    return value


# --------------------------------------------------------------------------------------------
# Merging: several advisories under one key


_LIST_FIELDS: Final = ("VulnerableVersions", "PatchedVersions", "UnaffectedVersions", "VendorIDs")


def merge_advisory_values(values: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine the Advisory JSON of several advisories that share bucket, package and key.

    ``values`` must come in a deterministic order (the writer sorts by feed id, then advisory
    id). Version lists and VendorIDs are unioned (VulnerableVersions entries are ORed, so the
    union flags a version when any advisory does; a patched version excludes only itself), in
    first-seen order, VendorIDs sorted. ``FixedVersion``, ``Status`` and ``Severity`` come from
    the first value that has them; a value without a fix (always affected) wins over fixed ones.
    """
    if len(values) == 1:
        return values[0]
    out: dict[str, Any] = {}
    for name in _LIST_FIELDS:
        items = _unique(item for v in values for item in v.get(name, ()))
        if items:
            out[name] = sorted(items) if name == "VendorIDs" else items
    unfixed = [v for v in values if "FixedVersion" not in v and v.get("Status")]
    source = unfixed or values
    for name in ("FixedVersion", "Status", "Severity"):
        for v in source:
            if name in v:
                out[name] = v[name]
                break
    if unfixed:
        out.pop("FixedVersion", None)
    return dict(sorted(out.items()))


def merge_vulnerability_values(values: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine the Vulnerability JSON written for one key by several advisories.

    ``values`` come in the writer's deterministic order (feed id, then advisory id). Per-source
    maps (``VendorSeverity``, ``CVSS``) are merged, the first value for a source id winning;
    ``References`` and ``CweIDs`` are unioned and sorted; every other field is taken from the
    first value that has it.
    """
    if len(values) == 1:
        return values[0]
    out: dict[str, Any] = {}
    for v in values:
        for name, item in v.items():
            if name in ("VendorSeverity", "CVSS"):
                per_source = out.setdefault(name, {})
                for src, val in item.items():
                    per_source.setdefault(src, val)
            elif name in ("References", "CweIDs"):
                out[name] = sorted(set(out.get(name, ())) | set(item))
            else:
                out.setdefault(name, item)
    return dict(sorted(out.items()))
