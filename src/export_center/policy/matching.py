"""Match SBOM components against advisories, with each ecosystem's own version semantics.

:class:`AdvisoryIndex` keeps only what matching needs (ids, aliases, affected packages,
severities) keyed by package identity, so matching N components costs N look-ups, not N×M.
:func:`match_component` returns one :class:`Match` per vulnerability on the component, named by the
rule trivy:db shares (:mod:`export_center.policy.ids`): one finding per CVE of the hit advisories,
else the bytewise smallest id of an advisory; advisories that carry the same name (a PYSEC and a
GHSA record of one CVE) are merged into its finding. A component that cannot be decided
(no purl, no version, a version its ecosystem cannot parse) yields a :class:`Skip` with the reason:
no finding is invented, none is silently dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from export_center.model import Advisory, AffectedPackage, Component
from export_center.policy.ids import other_ids, vulnerability_names
from export_center.policy.purls import PackageKey, Purl, normalize_name, parse_purl, purl_type_for
from export_center.policy.versions import (
    Scheme,
    fixed_versions,
    parse_version,
    range_scheme,
    scheme_for,
    sort_versions,
    version_in_range,
    versions_equal,
)


@dataclass(frozen=True)
class Match:
    """One vulnerability (aliases merged) on one component, before VEX and policy."""

    purl: str
    component_name: str
    version: str
    vulnerability_id: str
    aliases: tuple[str, ...]
    advisory_ids: tuple[str, ...]
    fixed_versions: tuple[str, ...]
    advisories: tuple[Advisory, ...]

    @property
    def ids(self) -> frozenset[str]:
        """Every id this vulnerability is known by."""
        return frozenset((self.vulnerability_id, *self.aliases))


@dataclass(frozen=True)
class Skip:
    """A component (or one advisory on it) that could not be decided, and why."""

    purl: str | None
    component_name: str
    reason: str
    advisory_id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "advisoryId": self.advisory_id,
            "component": self.component_name,
            "purl": self.purl,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _Entry:
    advisory: Advisory
    package: AffectedPackage


def _slim(adv: Advisory) -> Advisory:
    """Drop what matching and rating never read (summaries, details, references)."""
    return dataclasses.replace(adv, summary=None, details=None, references=(), cwe_ids=())


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class AdvisoryIndex:
    """Advisories by ``(purl type, normalized name)``.

    Withdrawn advisories are left out; with ``as_of`` given, an advisory withdrawn after that time
    still counts (it was live at the evidence cursor).
    """

    def __init__(self, *, as_of: datetime | None = None) -> None:
        self._as_of = as_of
        self._by_key: dict[PackageKey, list[_Entry]] = {}
        self.advisories = 0
        self.withdrawn = 0

    @classmethod
    def build(
        cls, advisories: Iterable[Advisory], *, as_of: datetime | None = None
    ) -> AdvisoryIndex:
        index = cls(as_of=as_of)
        for adv in advisories:
            index.add(adv)
        return index

    def _is_withdrawn(self, adv: Advisory) -> bool:
        if not adv.withdrawn:
            return False
        at = _parse_time(adv.withdrawn)
        if self._as_of is None or at is None or at.tzinfo is None:
            return True
        return at <= self._as_of

    def add(self, adv: Advisory) -> bool:
        """Index one advisory; False when it is withdrawn (and so left out)."""
        if self._is_withdrawn(adv):
            self.withdrawn += 1
            return False
        slim = _slim(adv)
        for pkg in slim.affected:
            ptype = purl_type_for(pkg.purl_type, pkg.ecosystem)
            key = (ptype, normalize_name(ptype, pkg.name))
            self._by_key.setdefault(key, []).append(_Entry(slim, pkg))
        self.advisories += 1
        return True

    def candidates(self, key: PackageKey) -> list[_Entry]:
        return self._by_key.get(key, [])

    def package_keys(self) -> Iterator[PackageKey]:
        return iter(self._by_key)


# ---- OS distributions ---------------------------------------------------------------------

_DEB_FAMILIES = {"debian", "ubuntu"}


def _release_segments(text: str) -> list[str]:
    return text.strip().lower().lstrip("v").split(".")


def _distro_applies(pkg: AffectedPackage, purl: Purl) -> bool:
    """An OS advisory (``Debian:10``) applies only to its distribution and release."""
    if purl.type not in ("deb", "apk", "rpm"):
        return True
    family, _, release = pkg.ecosystem.partition(":")
    family = family.strip().lower()
    if (
        purl.type == "deb"
        and purl.namespace
        and family in _DEB_FAMILIES
        and purl.namespace.lower() != family
    ):
        return False
    distro = purl.qualifier("distro")
    if not release or not distro:
        return True
    distro_version = distro.rsplit("-", 1)[-1]
    want, have = _release_segments(release), _release_segments(distro_version)
    return have[: len(want)] == want


# ---- matching -----------------------------------------------------------------------------


def _candidate_keys(purl: Purl) -> list[PackageKey]:
    keys = [purl.key]
    # OS binary packages name their source package in ``upstream`` (purl spec, deb/rpm); OS
    # advisories are written against the source package.
    upstream = purl.qualifier("upstream")
    if upstream and purl.type in ("deb", "rpm", "apk"):
        src = upstream.split("@", 1)[0]
        k = (purl.type, normalize_name(purl.type, src))
        if k not in keys:
            keys.append(k)
    return keys


def _affects(
    pkg: AffectedPackage, version: str, scheme: Scheme | None, purl_type: str
) -> tuple[bool, str | None]:
    """(affected, problem): problem is set when the answer could not be determined."""
    if any(versions_equal(scheme, v, version) for v in pkg.versions):
        return True, None
    problem: str | None = None
    parsed_cache: dict[Scheme, object | None] = {}
    for rng in pkg.ranges:
        if rng.type.upper() == "GIT":
            continue
        rs = range_scheme(rng, scheme)
        if rs is None:
            problem = f"no version ordering is known for purl type {purl_type!r}"
            continue
        if rs not in parsed_cache:
            parsed_cache[rs] = parse_version(rs, version)
        parsed = parsed_cache[rs]
        if parsed is None:
            problem = f"version {version!r} is not a valid {rs} version"
            continue
        result = version_in_range(parsed, rng, rs)
        if result.affected:
            return True, None
        if result.affected is None:
            problem = result.problem
    if not pkg.ranges and not pkg.versions:
        problem = "the advisory lists no affected versions for this package"
    return False, problem


def _by_name(advisories: Iterable[Advisory]) -> list[tuple[str, list[Advisory]]]:
    """The vulnerabilities the hit advisories describe, named by the shared rule
    (:mod:`export_center.policy.ids`): (name, its advisories in id order), in name order."""
    named: dict[str, list[Advisory]] = {}
    for adv in sorted(advisories, key=lambda a: a.id.encode()):
        for name in vulnerability_names(adv.id, adv.aliases):
            named.setdefault(name, []).append(adv)
    return sorted(named.items(), key=lambda kv: kv[0].encode())


def _installed_version(purl: Purl, component: Component) -> str | None:
    version = purl.version or component.version
    epoch = purl.qualifier("epoch")
    # RPM purls carry the epoch as a qualifier; RPM ordering needs it in the version.
    if version and purl.type == "rpm" and epoch and epoch != "0" and ":" not in version:
        return f"{epoch}:{version}"
    return version


def match_component(index: AdvisoryIndex, component: Component) -> tuple[list[Match], list[Skip]]:
    """The vulnerabilities of one component, and what could not be decided about it."""
    name = component.name
    if not component.purl:
        return [], [Skip(None, name, "component has no purl")]
    purl = parse_purl(component.purl)
    if purl is None:
        return [], [Skip(component.purl, name, "component purl is not a valid purl")]
    entries = [e for k in _candidate_keys(purl) for e in index.candidates(k)]
    entries = [e for e in entries if _distro_applies(e.package, purl)]
    if not entries:
        return [], []
    version = _installed_version(purl, component)
    if not version:
        ids = sorted({e.advisory.id for e in entries}, key=str.encode)
        return [], [Skip(component.purl, name, "component has no version", i) for i in ids]
    scheme = scheme_for(purl.type)
    hit: dict[str, Advisory] = {}
    problems: dict[str, str] = {}
    for entry in entries:
        affected, problem = _affects(entry.package, version, scheme, purl.type)
        if affected:
            hit[entry.advisory.id] = entry.advisory
        elif problem is not None:
            problems.setdefault(entry.advisory.id, problem)
    skips = [
        Skip(component.purl, name, reason, adv_id)
        for adv_id, reason in sorted(problems.items(), key=lambda kv: kv[0].encode())
        if adv_id not in hit
    ]
    matches: list[Match] = []
    for vuln, group in _by_name(hit.values()):
        group_ids = {a.id for a in group}
        aliases = {i for a in group for i in other_ids(a.id, a.aliases)} - {vuln}
        fixed = [
            v
            for e in entries
            if e.advisory.id in group_ids
            for v in (*fixed_versions(e.package.ranges), *e.package.fixed)
        ]
        matches.append(
            Match(
                purl=component.purl,
                component_name=name,
                version=version,
                vulnerability_id=vuln,
                aliases=tuple(sorted(aliases, key=str.encode)),
                advisory_ids=tuple(sorted(group_ids, key=str.encode)),
                fixed_versions=sort_versions(scheme, fixed),
                advisories=tuple(group),
            )
        )
    return matches, skips
