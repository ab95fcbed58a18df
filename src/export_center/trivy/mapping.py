"""Normalized advisories → Trivy DB entries (pure functions, no I/O).

Facts about what Trivy reads are in docs/trivy.md ("What Trivy reads") and in :mod:`.grammar`;
docs/trivy.md records every mapping decision. In short:

- one advisory bucket per feed and ecosystem, ``<ecosystem>::<feed name>``; OS advisories go to
  the distribution's bucket (``debian 12``, ``alpine 3.22``), shared by every feed;
- package keys normalized the way Trivy looks them up (:func:`normalize_package_name`); a pip
  package is written under every spelling of its separators (``oslo-utils`` and ``oslo.utils``:
  :func:`package_keys`), because Trivy looks up the spelling of the lock file;
- keys are the vulnerability names of :mod:`export_center.policy.ids` (one entry per CVE, else
  the advisory's smallest id), the rule ``stella findings`` and json:policy name findings by;
  ``VendorIDs`` lists the advisory's other ids;
- OSV ranges are evaluated as the OSV schema says (events sorted by version, whatever their source
  order) into intervals, each one ``VulnerableVersions`` entry (``">=1.0, <1.2"``, ``"<1.2"``,
  ``"<=1.4"``, ``"=1.4"``); an interval open at both ends (``introduced: "0"``, no fix) is ``""``,
  Trivy's "always vulnerable" (``>=0`` would miss Go pseudo-versions, which sort below ``0``);
  every entry of the ``versions`` list becomes ``"=v"``; GIT ranges are ignored (commits mean
  nothing to Trivy's comparers);
- ``PatchedVersions`` is not written: Trivy subtracts it from *every* range of the entry, so a
  version one range fixes and another still covers would be missed; Trivy derives the fixed
  version it shows from the ``<v`` bounds instead;
- a clause the ecosystem's comparer cannot read exactly (:func:`.grammar.constraint`) is never
  written (one would make Trivy drop the whole advisory); it is counted in ``dropped``;
- withdrawn advisories are left out.

Everything returned is built in a fixed order (sorted where the source order carries no
meaning), so the same advisories always give the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import itertools
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import orjson

from export_center.model import Advisory, AffectedPackage, to_json_dict
from export_center.policy import versions as pv
from export_center.policy.ids import names_and_other_ids
from export_center.trivy.grammar import Comparer, Op, comparer_for, constraint, spelling

__all__ = [
    "DATA_SOURCE_BUCKET",
    "PIP_SPELLINGS_MAX_SEPARATORS",
    "VULNERABILITY_BUCKET",
    "AdvisoryEntry",
    "DataSource",
    "MappedAdvisory",
    "TrivyEcosystem",
    "data_source_for",
    "data_source_value",
    "map_advisory",
    "map_record",
    "merge_advisory_values",
    "merge_vulnerability_values",
    "normalize_package_name",
    "os_fixed_version",
    "osv_intervals",
    "package_keys",
    "rfc3339",
    "severity_from_label",
    "severity_from_score",
    "trivy_ecosystem",
    "vulnerability_value",
    "vulnerable_versions",
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


@functools.lru_cache(maxsize=4096)
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


#: A pip name is written under every spelling of up to this many separators (2**6 = 64 keys);
#: a longer name gets its all-``-`` and all-``.`` spellings only, and is counted.
PIP_SPELLINGS_MAX_SEPARATORS: Final = 6
_PIP_SEPARATOR = re.compile(r"[-.]")


@functools.lru_cache(maxsize=4096)
def package_keys(slug: str, name: str) -> tuple[tuple[str, ...], bool]:
    """The package keys one affected package is written under, and whether the list was cut.

    Trivy looks up the name as the lock file spells it, normalized (``oslo.utils`` stays
    ``oslo.utils``), while PyPA and GHSA spell the PEP 503 form (``oslo-utils``). PEP 503 makes
    ``-``, ``_`` and ``.`` one character; Trivy already folds ``_`` into ``-``, so a pip package
    is written under each choice of ``-`` or ``.`` at each separator. Other ecosystems have one key.
    """
    key = normalize_package_name(slug, name)
    if slug != "pip":
        return (key,), False
    pieces = _PIP_SEPARATOR.split(key)
    separators = len(pieces) - 1
    if separators == 0:
        return (key,), False
    if separators > PIP_SPELLINGS_MAX_SEPARATORS:
        spelled = {key, "-".join(pieces), ".".join(pieces)}
        return tuple(sorted(spelled, key=str.encode)), True
    spelled = set()
    for seps in itertools.product("-.", repeat=separators):
        spelled.add("".join(p + s for p, s in zip(pieces, (*seps, ""), strict=True)))
    return tuple(sorted(spelled, key=str.encode)), False


# --------------------------------------------------------------------------------------------
# Versions

#: One interval of affected versions: (lower bound or None for "from the start", upper bound or
#: None for "no end", upper bound included).
Interval = tuple[str | None, str | None, bool]

_EVENT_ORDER: Final = {"introduced": 0, "last_affected": 1, "fixed": 2, "limit": 3}


def _range_scheme(range_type: str, scheme: pv.Scheme | None) -> pv.Scheme | None:
    # The matcher's rule (policy/versions.range_scheme), on the range type string.
    if range_type.upper() == "SEMVER":
        return "golang" if scheme == "golang" else "semver"
    return scheme


def _lt(a: Any, b: Any) -> bool:
    return bool(a < b)


def osv_intervals(
    events: Sequence[tuple[str, str]], scheme: pv.Scheme
) -> tuple[list[Interval], str | None]:
    """The affected intervals of one OSV range, exactly as the matcher evaluates it
    (:func:`export_center.policy.versions.version_in_range`): events sorted by version
    (``introduced: "0"`` first, ties in the order introduced, last_affected, fixed, limit), then
    a version is affected when the last event that reaches it opens; ``limit`` caps the range.

    Returns (intervals, None), or ([], problem) when an event cannot be read in ``scheme``.
    """
    points: list[tuple[int, Any, int, str, str]] = []  # (rank, parsed, kind order, kind, raw)
    limits: list[tuple[Any, str]] = []
    for kind, version in events:
        order = _EVENT_ORDER.get(kind)
        if order is None:
            return [], f"unknown range event {kind!r}"
        if kind == "introduced" and version == "0":
            points.append((-1, None, order, kind, version))
            continue
        if kind == "limit" and version == "*":
            continue
        parsed = pv.parse_version(scheme, version)
        if parsed is None:
            return [], f"{kind} version is not a valid {scheme} version"
        if kind == "limit":
            limits.append((parsed, version))
        else:
            points.append((0, parsed, order, kind, version))
    points.sort(key=functools.cmp_to_key(_cmp_points))
    # Distinct versions in order; each gives a point {v} and the gap above it. The state of a
    # region is the kind of the last event (in sorted order) that reaches it: introduced and
    # fixed reach v and above, last_affected only what is above v.
    distinct: list[tuple[Any, str]] = []
    for rank, parsed, _order, _kind, raw in points:
        if rank < 0:
            continue
        if not distinct or _lt(distinct[-1][0], parsed):
            distinct.append((parsed, raw))

    def state(at: Any | None, point: bool) -> bool:
        affected = False
        for rank, parsed, _order, kind, _raw in points:
            if rank < 0:
                reaches = True
            elif at is None:
                reaches = False
            elif kind == "last_affected" and point:
                reaches = _lt(parsed, at)
            else:
                reaches = not _lt(at, parsed)
            if reaches:
                affected = kind == "introduced"
        return affected

    intervals: list[Interval] = []
    open_at: str | None = None
    is_open = state(None, point=False)  # below every version: only introduced "0" reaches
    for parsed, raw in distinct:
        on_point, above = state(parsed, point=True), state(parsed, point=False)
        if not is_open and on_point:
            open_at, is_open = raw, True
        if is_open and not on_point:
            intervals.append((open_at, raw, False))
            is_open = False
        if is_open and not above:
            intervals.append((open_at, raw, True))
            is_open = False
        if above and not is_open:
            # Cannot happen: only a last_affected event separates a point from the gap above
            # it, and it closes. Kept total rather than trusting the argument: open at v.
            open_at, is_open = raw, True
    if is_open:
        intervals.append((open_at, None, False))
    if limits:
        cap_parsed, cap = limits[0]
        for parsed, raw in limits[1:]:
            if _lt(parsed, cap_parsed):
                cap_parsed, cap = parsed, raw
        intervals = _capped(intervals, cap_parsed, cap, scheme)
    return intervals, None


def _cmp_parsed(a: Any, b: Any) -> int:
    return -1 if _lt(a, b) else 1 if _lt(b, a) else 0


def _cmp_points(a: tuple[int, Any, int, str, str], b: tuple[int, Any, int, str, str]) -> int:
    if a[0] != b[0]:
        return a[0] - b[0]
    if a[1] is not None and b[1] is not None:
        c = _cmp_parsed(a[1], b[1])
        if c:
            return c
    return a[2] - b[2]


def _capped(
    intervals: list[Interval], cap_parsed: Any, cap: str, scheme: pv.Scheme
) -> list[Interval]:
    """Intervals below ``limit`` (exclusive), as the matcher requires of every version."""
    out: list[Interval] = []
    for lower, upper, inclusive in intervals:
        if lower is not None and not _lt(pv.parse_version(scheme, lower), cap_parsed):
            continue
        if upper is None or not _lt(pv.parse_version(scheme, upper), cap_parsed):
            out.append((lower, cap, False))
        else:
            out.append((lower, upper, inclusive))
    return out


Clause = tuple[str, tuple[tuple[Op, str], ...]]  # (text, its ANDed parts)


def _interval_clauses(interval: Interval, comparer: Comparer) -> tuple[list[Clause], str | None]:
    """The VulnerableVersions entries of one bounded interval, or ([], reason) when Trivy's
    comparer cannot read a bound."""
    lower, upper, inclusive = interval
    bounds = [b for b in (lower, upper) if b is not None]
    spelled = {b: spelling(comparer, b) for b in bounds}
    if any(s is None for s in spelled.values()):
        return [], f"range bound not readable by Trivy's {comparer} comparer"
    parts: list[tuple[Op, str]] = []
    if lower is not None and upper is not None and inclusive and spelled[lower] == spelled[upper]:
        parts.append(("=", spelled[lower] or ""))
    else:
        if lower is not None:
            parts.append((">=", spelled[lower] or ""))
        if upper is not None:
            parts.append(("<=" if inclusive else "<", spelled[upper] or ""))
    text = constraint(comparer, tuple(parts))
    if text is None:
        return [], f"range not readable by Trivy's {comparer} comparer"
    clauses: list[Clause] = [(text, tuple(parts))]
    if comparer == "pep440" and upper is not None and not inclusive:
        extra = _pep440_prereleases_of_bound(lower, spelled[upper] or "")
        if extra is not None:
            clauses.append(extra)
    return clauses, None


def _pep440_prereleases_of_bound(lower: str | None, upper: str) -> Clause | None:
    """The clause that gives back what Trivy's ``<X`` leaves out of ``[lower, X)``.

    PEP 440 (and go-pep440-version) read ``<2.0`` as "below 2.0 but no pre-release of 2.0", so a
    pinned 2.0rc1, which sorts below 2.0 and which the OSV range covers, would not be found.
    ``>=2.0.dev0, <=2.0, !=2.0`` is exactly those pre-releases (2.0.dev0 is the lowest version
    of release 2.0); its lower bound is raised to ``lower`` when that is higher.
    """
    bound = _pep440(upper)
    if bound.is_prerelease:
        return None  # "<2.0rc2" keeps the pre-releases below it
    floor = str(_pep440(f"{bound.base_version}.dev0"))
    if lower is not None and _lt(_pep440(floor), _pep440(lower)):
        floor = spelling("pep440", lower) or floor
    if not _lt(_pep440(floor), bound):
        return None
    parts: tuple[tuple[Op, str], ...] = ((">=", floor), ("<=", upper), ("!=", upper))
    text = constraint("pep440", parts)
    return None if text is None else (text, parts)


@functools.lru_cache(maxsize=65536)
def _pep440(text: str) -> Any:
    return pv.parse_version("pypi", text)


def _key(version: Any) -> Any:
    # packaging's own sort key (a tuple compared in C); the Version itself orders the same way.
    return getattr(version, "_key", version)


@functools.lru_cache(maxsize=65536)
def _pep440_facts(text: str) -> tuple[Any, Any, Any, bool, bool]:
    """(key, key of the public version, key of the release, is a pre-release, has a local
    label) of a PEP 440 version."""
    v = _pep440(text)
    public = _pep440(v.public) if v.local else v
    return (
        _key(v),
        _key(public),
        _key(_pep440(v.base_version)),
        bool(v.is_prerelease),
        bool(v.local),
    )


#: One part of a pip clause, its spec read: (op, key, release key, spec is a pre-release, spec
#: has a local label).
_Pep440Part = tuple[Op, Any, Any, bool, bool]


@functools.lru_cache(maxsize=65536)
def _pep440_clause(parts: tuple[tuple[Op, str], ...]) -> tuple[_Pep440Part, ...]:
    """A clause's parts with their specs read once: (op, key, release key, spec is a
    pre-release, spec has a local label)."""
    out = []
    for op, spec in parts:
        key, _public, base, pre, local = _pep440_facts(spec)
        out.append((op, key, base, pre, local))
    return tuple(out)


def _pep440_covered(version: str, clauses: Sequence[tuple[_Pep440Part, ...]]) -> bool:
    """Whether Trivy's pip comparer (go-pep440-version, a port of PyPA packaging's specifiers)
    matches ``version`` with one of the ``clauses`` (as :func:`_pep440_clause` reads them):
    comparisons are on the public version (local label dropped), and ``<X`` refuses
    pre-releases of X itself unless X is one ("<2.0" does not match "2.0rc1", which sorts below
    2.0)."""
    key, public, base, is_pre, _local = _pep440_facts(version)
    for parts in clauses:
        for op, s, s_base, s_pre, s_local in parts:
            if op == ">=":
                ok = not public < s
            elif op == "<":
                ok = public < s and not (is_pre and not s_pre and base == s_base)
            elif op == "<=":
                ok = not s < public
            else:  # "=", "!=" (">" is never written)
                equal = (key if s_local else public) == s
                ok = equal if op == "=" else not equal
            if not ok:
                break
        else:
            return True
    return False


_NUMERIC = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def _numeric(text: str) -> tuple[int, ...] | None:
    if not _NUMERIC.fullmatch(text):
        return None
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _numeric_clauses(
    written: Sequence[tuple[tuple[Op, str], ...]],
) -> list[tuple[tuple[Op, tuple[int, ...]], ...]]:
    """The written clauses whose bounds are all plain ``N.N.N``, bounds read as numbers."""
    out = []
    for parts in written:
        bounds = [(op, _numeric(spec)) for op, spec in parts]
        if all(b is not None for _op, b in bounds):
            out.append(tuple((op, b) for op, b in bounds if b is not None))
    return out


def _numeric_covered(
    version: str, clauses: Sequence[tuple[tuple[Op, tuple[int, ...]], ...]]
) -> bool:
    """For Maven and npm: a plain ``N.N.N`` version inside a clause whose bounds are all plain
    ``N.N.N`` (:func:`_numeric_clauses`). There both comparers (and every other ordering)
    agree: numbers compared one by one, trailing zeros ignored. Anything with a qualifier or
    pre-release is left to its own clause rather than to our reading of the comparer's rules."""
    v = _numeric(version)
    if v is None:
        return False
    for bounds in clauses:
        if all(
            (v == b)
            if op == "="
            else (v >= b)
            if op == ">="
            else (v < b)
            if op == "<"
            else (v <= b)
            for op, b in bounds
        ):
            return True
    return False


def _coverage(
    comparer: Comparer, written: Sequence[tuple[tuple[Op, str], ...]]
) -> Callable[[str], bool] | None:
    """Whether a range entry already written makes Trivy match a listed version, so its ``=v``
    clause would be redundant; None where that is never decided (the comparer's rules are not
    mirrored exactly: the clause is always written). The clauses are read once here, not once
    per listed version (PyPA lists every affected release: this check was half the mapping)."""
    if not written:
        return None
    if comparer == "pep440":
        pep = [_pep440_clause(parts) for parts in written]
        return lambda version: _pep440_covered(version, pep)
    if comparer in ("maven", "npm"):
        numeric = _numeric_clauses(written)
        if not numeric:
            return None
        return lambda version: _numeric_covered(version, numeric)
    return None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def vulnerable_versions(
    affected: Mapping[str, Any], eco: TrivyEcosystem
) -> tuple[list[str], list[str]]:
    """(VulnerableVersions, dropped) of one language package (a normalized ``affected`` dict).

    Every interval of the non-GIT ranges is one entry; every entry of the ``versions`` list is
    ``"=v"``, unless a range entry already makes Trivy match it (:func:`_coverage`: PyPA and
    osv.dev list every affected release, and Trivy re-parses every clause for every package it
    checks, so redundant clauses made scans several times slower). What Trivy's comparer for the
    ecosystem cannot read is left out, one reason per left-out clause in ``dropped``. ``[""]``
    (Trivy's "always vulnerable") when an interval is open at both ends.
    """
    comparer = comparer_for(eco.slug)
    if comparer is None:
        return [], []
    scheme = pv.scheme_for(eco.purl_type) if eco.purl_type else None
    vulnerable: list[str] = []
    dropped: list[str] = []
    written: list[tuple[tuple[Op, str], ...]] = []  # the parts of each range clause
    for rng in affected.get("ranges") or ():
        rtype = rng["type"]
        if rtype.upper() == "GIT":
            continue
        rscheme = _range_scheme(rtype, scheme)
        if rscheme is None:
            dropped.append(f"{eco.slug}: range with no version ordering")
            continue
        events = tuple((e["kind"], e["version"]) for e in rng["events"])
        clauses, lost, always = _range_clauses(comparer, rscheme, events)
        if always:
            return [""], []
        dropped.extend(f"{eco.slug}: {reason}" for reason in lost)
        for clause, parts in clauses:
            vulnerable.append(clause)
            written.append(parts)
    covered = _coverage(comparer, written)
    for version in affected.get("versions") or ():
        listed = _listed_clause(comparer, version)
        if listed is None:
            dropped.append(
                f"{eco.slug}: listed version not readable by Trivy's {comparer} comparer"
            )
            continue
        if covered is not None and covered(listed[0]):
            continue
        vulnerable.append(listed[1])
    return _unique(vulnerable), dropped


class _ContentMemo:
    """A bounded least-recently-used memo keyed by the SHA-256 of a result's inputs (as JSON):
    32 bytes per entry whatever the size of the inputs (keyed on the JSON itself, PyPA's long
    version lists made it 30 MB per mapping process)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = self.misses = 0
        self._items: OrderedDict[bytes, tuple[tuple[str, ...], tuple[str, ...]]] = OrderedDict()

    def get(self, key: bytes) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return found

    def put(self, key: bytes, value: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
        self.hits = self.misses = 0


#: Results of :func:`vulnerable_versions` remembered by :func:`_vulnerable_versions_of`.
_VULNERABLE_BY_CONTENT = _ContentMemo(8192)


def _vulnerable_versions_of(
    affected: Mapping[str, Any], eco: TrivyEcosystem
) -> tuple[list[str], list[str]]:
    """:func:`vulnerable_versions`, remembered by content. Advisories repeat the same ranges
    and version lists: in the real Go, PyPA and RustSec corpora half of the affected entries
    (61 % of Go's, 19 % of PyPI's) repeat an earlier entry's ranges and versions (one module
    fixed in one release across packages; GHSA and PYSEC records of one vulnerability). The
    result depends on nothing else, so the memo never changes a byte (a test compares)."""
    inputs = (eco.slug, eco.purl_type, affected.get("ranges"), affected.get("versions"))
    key = hashlib.sha256(orjson.dumps(inputs)).digest()
    found = _VULNERABLE_BY_CONTENT.get(key)
    if found is None:
        vulnerable, dropped = vulnerable_versions(affected, eco)
        _VULNERABLE_BY_CONTENT.put(key, (tuple(vulnerable), tuple(dropped)))
        return vulnerable, dropped
    return list(found[0]), list(found[1])


@functools.lru_cache(maxsize=65536)
def _range_clauses(
    comparer: Comparer, scheme: pv.Scheme, events: tuple[tuple[str, str], ...]
) -> tuple[tuple[Clause, ...], tuple[str, ...], bool]:
    """(clauses, dropped reasons, always vulnerable) of one range; keyed on plain strings, which
    are cheap to hash (a range's events repeat across the advisories of a package)."""
    intervals, problem = osv_intervals(events, scheme)
    if problem is not None:
        return (), (f"range not evaluable ({problem})",), False
    clauses: list[Clause] = []
    dropped: list[str] = []
    for interval in intervals:
        if interval[0] is None and interval[1] is None:
            return (), (), True
        found, reason = _interval_clauses(interval, comparer)
        if reason is not None:
            dropped.append(reason)
        clauses.extend(found)
    return tuple(clauses), tuple(dropped), False


@functools.lru_cache(maxsize=65536)
def _listed_clause(comparer: Comparer, version: str) -> tuple[str, str] | None:
    """(spelling, ``=v`` clause) of a listed version, or None when Trivy cannot read it."""
    spelled = spelling(comparer, version)
    if spelled is None:
        return None
    text = constraint(comparer, (("=", spelled),))
    return None if text is None else (spelled, text)


def os_fixed_version(affected: AffectedPackage) -> str:
    """The ``FixedVersion`` of an OS package: the last ``fixed`` event of its non-GIT ranges in
    source order (distro feeds give one), or ``""`` when there is no fix yet."""
    return _os_fixed(to_json_dict(affected))


def _os_fixed(affected: Mapping[str, Any]) -> str:
    fixed = [
        ev["version"]
        for rng in affected.get("ranges") or ()
        if rng["type"].upper() != "GIT"
        for ev in rng["events"]
        if ev["kind"] == "fixed"
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
    return _cvss([{"type": s.type, "score": s.score} for s in advisory.severities])


def _cvss(severities: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sev in severities:
        kind = sev["type"].upper()
        vector = sev["score"].strip().removesuffix("/")  # GHSA vectors sometimes end in "/"
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


def _severity(label: str | None, cvss: Mapping[str, Any]) -> int:
    """The source's label when it gives one, else the CVSS v3, v4 then v2 score."""
    from_label = severity_from_label(label)
    if from_label:
        return from_label
    for key in ("V3Score", "V40Score", "V2Score"):
        if key in cvss:
            return severity_from_score(float(cvss[key]))
    return SEVERITY_UNKNOWN


def advisory_severity(advisory: Advisory) -> int:
    """The source's label when it gives one, else the CVSS v3, v4 then v2 score."""
    return _severity(advisory.severity_label, cvss_value(advisory))


_RFC3339_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def rfc3339(value: str | None) -> str | None:
    """A timestamp as RFC 3339 UTC with whole seconds (what Go's ``time.Time`` decodes), or
    None when absent, unparseable, or Go's zero-time placeholder (year 1)."""
    if not value:
        return None
    if _RFC3339_Z.fullmatch(value):
        # Already the form we write (most feeds): it only has to be a real date after year 1.
        try:
            return value if datetime.fromisoformat(value).year > 1 else None
        except ValueError:
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
    return _vulnerability_value(to_json_dict(advisory), source)


def _vulnerability_value(doc: Mapping[str, Any], source: DataSource) -> dict[str, Any]:
    value: dict[str, Any] = {}
    if doc.get("summary"):
        value["Title"] = doc["summary"]
    if doc.get("details"):
        value["Description"] = doc["details"]
    cvss = _cvss(doc.get("severities") or ())
    severity = _severity(doc.get("severity_label"), cvss)
    if severity:
        value["Severity"] = _SEVERITY_NAMES[severity]
        value["VendorSeverity"] = {source.id: severity}
    if cvss:
        value["CVSS"] = {source.id: cvss}
    cwes = doc.get("cwe_ids")
    if cwes:
        value["CweIDs"] = sorted(set(cwes))
    refs = sorted({r.strip() for r in doc.get("references") or () if r.strip()})
    if refs:
        value["References"] = refs
    published = rfc3339(doc.get("published"))
    if published:
        value["PublishedDate"] = published
    modified = rfc3339(doc.get("modified"))
    if modified:
        value["LastModifiedDate"] = modified
    return value


class AdvisoryEntry(NamedTuple):
    """One key of an advisory bucket: ``bucket`` → ``package`` → ``vuln_id`` = ``value``.
    (Named tuples: one advisory makes a few, a million-advisory build several million.)"""

    bucket: str
    package: str
    vuln_id: str
    value: dict[str, Any]


class MappedAdvisory(NamedTuple):
    """What one advisory contributes.

    ``vuln_ids`` are its keys (:func:`export_center.policy.ids.vulnerability_names`); ``entries``
    its advisory-bucket keys, sorted; ``vulnerability`` the Vulnerability JSON written under each
    of ``vuln_ids`` (None when it has no entry). ``skipped`` says why affected packages were left
    out, ``dropped`` why clauses were (reasons name the ecosystem, never the advisory, so they
    can be counted).
    """

    vuln_ids: tuple[str, ...]
    entries: tuple[AdvisoryEntry, ...]
    vulnerability: dict[str, Any] | None
    skipped: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def map_advisory(advisory: Advisory, source: DataSource) -> MappedAdvisory:
    """:func:`map_record` of an :class:`~export_center.model.Advisory`."""
    return map_record(to_json_dict(advisory), source)


def map_record(doc: Mapping[str, Any], source: DataSource) -> MappedAdvisory:
    """The trivy.db entries of one advisory from feed ``source``, read from its normalized JSON
    (the store's form of :class:`~export_center.model.Advisory`, as ``to_json_dict`` writes it).

    An advisory that is withdrawn, or none of whose affected packages maps to a Trivy bucket,
    gives no entry; ``skipped`` says why, one reason per left-out package.
    """
    aid = doc["id"]
    keys, other = names_and_other_ids(aid, doc.get("aliases") or ())
    if doc.get("withdrawn"):
        return MappedAdvisory(keys, (), None, ("withdrawn advisory",))
    ids = list(other)
    severity: int | None = None
    # Several affected[] entries may name the same package (one per range): combine them, as
    # upstream does.
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: list[str] = []
    dropped: list[str] = []
    for affected in doc.get("affected") or ():
        eco = trivy_ecosystem(affected["ecosystem"])
        if eco is None:
            base = affected["ecosystem"].split(":", 1)[0]
            skipped.append(f"ecosystem {base!r} has no Trivy bucket")
            continue
        if eco.is_os:
            if severity is None:
                severity = _severity(doc.get("severity_label"), _cvss(doc.get("severities") or ()))
            value = _os_value(affected, ids, severity)
            names: tuple[str, ...] = (normalize_package_name(eco.slug, affected["name"]),)
        else:
            if comparer_for(eco.slug) is None:
                skipped.append(f"{eco.slug}: no Trivy version comparer we can write for")
                continue
            vulnerable, lost = _vulnerable_versions_of(affected, eco)
            dropped.extend(lost)
            if not vulnerable:
                skipped.append(f"{eco.slug}: no version range or version Trivy can read")
                continue
            value = {"VulnerableVersions": vulnerable}
            if ids:
                value["VendorIDs"] = ids
            names, cut = package_keys(eco.slug, affected["name"])
            if cut:
                dropped.append(
                    f"{eco.slug}: name with more than "
                    f"{PIP_SPELLINGS_MAX_SEPARATORS} separators, two spellings written"
                )
        bucket = eco.bucket(source.name)
        for package in names:
            slot = (bucket, package)
            held = merged.get(slot)
            merged[slot] = value if held is None else merge_advisory_values([held, value])
    entries = tuple(
        [
            AdvisoryEntry(bucket, package, key, value)
            for (bucket, package), value in sorted(merged.items())
            for key in keys
        ]
    )
    vulnerability = _vulnerability_value(doc, source) if entries else None
    return MappedAdvisory(keys, entries, vulnerability, tuple(skipped), tuple(dropped))


def _os_value(affected: Mapping[str, Any], ids: list[str], severity: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    fixed = _os_fixed(affected)
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
        if name == "VulnerableVersions" and "" in items:
            items = [""]  # "always vulnerable" ORed with anything is itself
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
