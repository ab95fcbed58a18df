"""Version semantics per ecosystem, and OSV range evaluation on top of them.

Each purl type maps to one ordering scheme from ``univers`` (PEP 440 for pypi, semver for npm and
cargo, Go's semver with a leading ``v`` and pseudo-versions, Maven, NuGet, RubyGems, Debian,
Alpine, RPM, ...). A version that its scheme cannot parse yields ``None``: callers turn that into
a skip reason, never into a guessed finding.

OSV range evaluation follows the OSV schema's algorithm
(https://ossf.github.io/osv-schema/#evaluation): events are sorted by version (``introduced: "0"``
first), then walked; ``introduced`` opens, ``fixed`` closes at that version, ``last_affected``
closes after it, and ``limit`` caps the whole range.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from univers import versions as uv
from univers.nuget import InvalidNuGetVersion

from export_center.model import VersionRange

#: Ordering scheme names (also used in skip reasons).
Scheme = Literal[
    "pypi", "semver", "golang", "maven", "nuget", "gem", "deb", "apk", "rpm", "composer"
]

# purl type -> scheme. Types absent here have no ordering we trust: only an advisory's explicit
# ``versions`` list can match them (exact string equality).
_SCHEME_BY_PURL_TYPE: dict[str, Scheme] = {
    "pypi": "pypi",
    "npm": "semver",
    "cargo": "semver",
    "golang": "golang",
    "maven": "maven",
    "nuget": "nuget",
    "gem": "gem",
    "deb": "deb",
    "apk": "apk",
    "rpm": "rpm",
    "composer": "composer",
    "hex": "semver",
    "pub": "semver",
    "swift": "semver",
    "cocoapods": "semver",
}

_CLASSES: dict[Scheme, Any] = {
    "pypi": uv.PypiVersion,
    "semver": uv.SemverVersion,
    "golang": uv.GolangVersion,
    "maven": uv.MavenVersion,
    "nuget": uv.NugetVersion,
    "gem": uv.RubygemsVersion,
    "deb": uv.DebianVersion,
    "apk": uv.AlpineLinuxVersion,
    "rpm": uv.RpmVersion,
    "composer": uv.ComposerVersion,
}

# What univers raises on a version its scheme refuses (InvalidVersion is a ValueError; the NuGet
# parser has its own root).
_PARSE_ERRORS = (ValueError, TypeError, IndexError, InvalidNuGetVersion)


def scheme_for(purl_type: str) -> Scheme | None:
    """The ordering scheme of a purl type, or None when we have none."""
    return _SCHEME_BY_PURL_TYPE.get(purl_type.lower())


@functools.lru_cache(maxsize=65536)
def parse_version(scheme: Scheme, version: str) -> Any | None:
    """A comparable version object, or None when ``version`` is not valid in ``scheme``.

    Semver-family schemes drop build metadata (``+incompatible``, ``+build.5``): semver 2.0 and
    Go's module versions both ignore it for precedence, while univers would order on it.
    """
    text = version.strip()
    if not text:
        return None
    if scheme in ("semver", "golang", "composer") and "+" in text:
        text = text.split("+", 1)[0]
    if scheme == "golang" and text.startswith("go") and text[2:3].isdigit():
        text = text[2:]  # the Go toolchain's own spelling: go1.21.3
    try:
        parsed = _CLASSES[scheme](text)
    except _PARSE_ERRORS:
        return None
    # univers orders its wrappers by ``value`` alone (an attrs-generated comparison that
    # costs ~5x the comparison of the value itself); hand out the value.
    return parsed.value


def sort_versions(scheme: Scheme | None, versions: Iterable[str]) -> tuple[str, ...]:
    """Distinct versions in the scheme's order; unparseable ones after, bytewise."""
    distinct = sorted(set(versions), key=lambda s: s.encode())
    if scheme is None:
        return tuple(distinct)
    parsed = [(parse_version(scheme, v), v) for v in distinct]
    good = sorted(((p, v) for p, v in parsed if p is not None), key=_order_key)
    bad = [v for p, v in parsed if p is None]
    return tuple(v for _p, v in good) + tuple(bad)


def _order_key(item: tuple[Any, str]) -> Any:
    return functools.cmp_to_key(_cmp_parsed)(item)


def _cmp_parsed(a: tuple[Any, str], b: tuple[Any, str]) -> int:
    if a[0] < b[0]:
        return -1
    if b[0] < a[0]:
        return 1
    # Equal in the scheme ("1.0" and "1.0.0"): keep a stable, bytewise order.
    return (a[1].encode() > b[1].encode()) - (a[1].encode() < b[1].encode())


@dataclass(frozen=True)
class RangeResult:
    """The outcome of checking one version against one OSV range.

    ``affected`` is None when the range could not be evaluated; ``problem`` then says why.
    """

    affected: bool | None
    problem: str | None = None


_EVENT_ORDER = {"introduced": 0, "last_affected": 1, "fixed": 2, "limit": 3}


def range_scheme(rng: VersionRange, package_scheme: Scheme | None) -> Scheme | None:
    """SEMVER ranges compare as semver whatever the ecosystem; ECOSYSTEM ranges use the
    package's own scheme (Go's ranges are typed SEMVER but its versions are Go semver)."""
    if rng.type.upper() == "SEMVER":
        return "golang" if package_scheme == "golang" else "semver"
    return package_scheme


def version_in_range(version: Any, rng: VersionRange, scheme: Scheme) -> RangeResult:
    """Whether the parsed ``version`` falls inside the OSV range ``rng``.

    Args:
        version: a value from :func:`parse_version` in ``scheme``.
        rng: an ECOSYSTEM or SEMVER range (GIT ranges are the caller's to skip).
        scheme: the scheme the range's event versions are read in.
    """
    compiled = _compile_range(rng, scheme)
    if isinstance(compiled, RangeResult):
        return compiled
    limits, ordered = compiled
    if any(not (version < lim) for lim in limits):
        return RangeResult(False)
    affected = False
    for _rank, parsed, kind, _raw in ordered:
        if kind == "introduced":
            if parsed is None or not (version < parsed):
                affected = True
        elif kind == "fixed":
            if not (version < parsed):
                affected = False
        elif kind == "last_affected" and parsed < version:
            affected = False
    return RangeResult(affected)


_Compiled = tuple[tuple[Any, ...], tuple[tuple[int, Any, str, str], ...]]


@functools.lru_cache(maxsize=8192)
def _compile_range(rng: VersionRange, scheme: Scheme) -> _Compiled | RangeResult:
    """Parse and order a range's events once: an advisory's range is checked against every
    version of its ``versions`` list, and every component of a package (ranges are frozen, so
    they key the cache)."""
    events: list[tuple[int, Any, str, str]] = []  # (rank, parsed, kind, raw)
    limits: list[Any] = []
    for ev in rng.events:
        kind = ev.kind
        if kind not in _EVENT_ORDER:
            return RangeResult(None, f"unknown range event {kind!r}")
        if kind == "introduced" and ev.version == "0":
            events.append((-1, None, kind, ev.version))
            continue
        if kind == "limit" and ev.version == "*":
            continue
        parsed = parse_version(scheme, ev.version)
        if parsed is None:
            return RangeResult(
                None, f"{kind} version {ev.version!r} is not a valid {scheme} version"
            )
        if kind == "limit":
            limits.append(parsed)
        else:
            events.append((0, parsed, kind, ev.version))
    return tuple(limits), tuple(sorted(events, key=functools.cmp_to_key(_cmp_events)))


def _cmp_events(a: tuple[int, Any, str, str], b: tuple[int, Any, str, str]) -> int:
    if a[0] != b[0]:
        return a[0] - b[0]
    if a[1] is not None and b[1] is not None:
        if a[1] < b[1]:
            return -1
        if b[1] < a[1]:
            return 1
    # Same version: the source order of equal events is kept by the stable sort, but an
    # ``introduced`` at v must be seen before a ``fixed`` at v so the pair means "none".
    return _EVENT_ORDER[a[2]] - _EVENT_ORDER[b[2]]


def versions_equal(scheme: Scheme | None, a: str, b: str) -> bool:
    """Equality in the scheme when both parse, else exact string equality.

    Build metadata is ignored for ordering but not for identity: ``v1.33.3+rke2r1`` and
    ``v1.33.3+rke2r2`` are two releases, so their ``+`` suffixes must agree.
    """
    if a == b:
        return True
    if scheme is None or a.partition("+")[2] != b.partition("+")[2]:
        return False
    pa, pb = parse_version(scheme, a), parse_version(scheme, b)
    return pa is not None and pb is not None and not (pa < pb) and not (pb < pa)


def fixed_versions(ranges: Sequence[VersionRange]) -> list[str]:
    """Every ``fixed`` event of the non-GIT ranges."""
    return [
        ev.version
        for r in ranges
        if r.type.upper() != "GIT"
        for ev in r.events
        if ev.kind == "fixed"
    ]
