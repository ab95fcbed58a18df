"""Matching: per-ecosystem version semantics on real corpus ranges, identity, aliases, skips."""

from __future__ import annotations

import time

import pytest

from export_center.model import (
    Advisory,
    AffectedPackage,
    Component,
    RangeEvent,
    VersionRange,
)
from export_center.policy.ids import other_ids, vulnerability_names
from export_center.policy.matching import AdvisoryIndex, match_component
from export_center.policy.versions import parse_version, sort_versions


@pytest.fixture(scope="module")
def by_id(corpus_advisories: list[Advisory]) -> dict[str, Advisory]:
    return {a.id: a for a in corpus_advisories}


def ids_for(index: AdvisoryIndex, purl: str) -> dict[str, tuple[str, ...]]:
    """vulnerability id -> fixed versions, for one component."""
    matches, skips = match_component(index, Component(name="c", purl=purl))
    assert skips == [], skips
    return {m.vulnerability_id: m.fixed_versions for m in matches}


def affected(adv: Advisory, purl: str) -> bool:
    matches, skips = match_component(AdvisoryIndex.build([adv]), Component(name="c", purl=purl))
    assert skips == [], skips
    return bool(matches)


# ---- real ranges, one ecosystem each -----------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.11", True),
        ("0.11.0", True),  # PEP 440: 0.11.0 == 0.11 (the versions list spells it "0.11")
        ("0.15.2", True),
        ("0.15.3rc1", True),  # a pre-release of the fix is still before it
        ("0.15.3", False),
        ("0.15.3.post1", False),
        ("1.0", False),
    ],
)
def test_pypi_werkzeug_pep440(by_id: dict[str, Advisory], version: str, expected: bool) -> None:
    adv = by_id["PYSEC-2019-140"]  # ECOSYSTEM introduced 0, fixed 0.15.3 (+ a GIT range)
    assert affected(adv, f"pkg:pypi/werkzeug@{version}") is expected


def test_pypi_names_are_pep503_normalized(by_id: dict[str, Advisory]) -> None:
    adv = by_id["PYSEC-2019-140"]
    for spelling in ("Werkzeug", "WERKZEUG", "werkzeug"):
        assert affected(adv, f"pkg:pypi/{spelling}@0.11")
    # PEP 503 folds runs of "-", "_" and "." into one "-".
    index = AdvisoryIndex.build(
        [
            Advisory(
                id="X-1",
                affected=(
                    AffectedPackage(
                        "pypi",
                        "zope.interface",
                        "PyPI",
                        ranges=(VersionRange("ECOSYSTEM", (RangeEvent("introduced", "0"),)),),
                    ),
                ),
            )
        ]
    )
    assert ids_for(index, "pkg:pypi/Zope_Interface@5.0") == {"X-1": ()}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v0.3.6", True),
        ("v0.3.7", False),
        ("v0.0.0-20210101000000-abcdefabcdef", True),  # a pseudo-version before the fix
        # Pseudo-versions are pre-releases of the next patch: a commit after v0.3.6 is
        # v0.3.7-0.…, still before v0.3.7; one after v0.3.7 is v0.3.8-0.….
        ("v0.3.7-0.20210503060351-7fd8e65b6420", True),
        ("v0.3.8-0.20211004164453-cedda3a722aa", False),
        ("v0.3.8", False),
    ],
)
def test_golang_semver_and_pseudo_versions(
    by_id: dict[str, Advisory], version: str, expected: bool
) -> None:
    adv = by_id["GO-2021-0113"]  # golang.org/x/text, SEMVER introduced 0, fixed 0.3.7
    assert affected(adv, f"pkg:golang/golang.org/x/text@{version}") is expected


def test_golang_incompatible_build_metadata(by_id: dict[str, Advisory]) -> None:
    adv = by_id["GO-2022-0379"]  # docker/distribution, fixed 2.8.0+incompatible
    base = "pkg:golang/github.com/docker/distribution@"
    assert affected(adv, base + "v2.7.1%2Bincompatible")
    assert not affected(adv, base + "v2.8.0%2Bincompatible")
    assert not affected(adv, base + "v2.8.1")
    # The module path is the identity: another module with the same last segment is not it.
    assert not affected(adv, "pkg:golang/github.com/distribution/distribution@v2.7.1")


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.1.3", False), ("1.1.4", True), ("3.3.9", True), ("3.4.0-rc.1", True), ("3.4.0", False)],
)
def test_npm_jquery_semver(by_id: dict[str, Advisory], version: str, expected: bool) -> None:
    adv = by_id["GHSA-6c3j-c64m-qhgq"]  # npm jquery SEMVER introduced 1.1.4, fixed 3.4.0
    assert affected(adv, f"pkg:npm/jquery@{version}") is expected


def test_npm_scoped_names() -> None:
    adv = Advisory(
        id="GHSA-scoped",
        affected=(
            AffectedPackage(
                "npm",
                "@angular/core",
                "npm",
                ranges=(VersionRange("SEMVER", (RangeEvent("introduced", "0"),)),),
            ),
        ),
    )
    assert affected(adv, "pkg:npm/%40angular/core@15.0.0")
    assert not affected(adv, "pkg:npm/core@15.0.0")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.9.1", True),
        ("2.9.10", True),  # Maven: 2.9.10 < 2.9.10.4
        ("2.9.10.3", True),
        ("2.9.10.4", False),
        ("2.10.0", False),  # Maven: 2.10 > 2.9 (not lexicographic)
        ("2.8.11.5", True),
        ("2.8.11.6", False),
        ("2.7.9.6", True),
    ],
)
def test_maven_jackson_databind(by_id: dict[str, Advisory], version: str, expected: bool) -> None:
    adv = by_id["GHSA-p43x-xfjf-5jhr"]  # three ECOSYSTEM ranges, fixed 2.7.9.7/2.8.11.6/2.9.10.4
    purl = f"pkg:maven/com.fasterxml.jackson.core/jackson-databind@{version}?type=jar"
    assert affected(adv, purl) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.9.0", True), ("2.1.2", True), ("2.1.3", False), ("3.0.0", True), ("3.1.0", False)],
)
def test_cargo_ammonia_two_intervals(
    by_id: dict[str, Advisory], version: str, expected: bool
) -> None:
    adv = by_id["RUSTSEC-2021-0074"]  # SEMVER [0.0.0-0, 2.1.3) and [3.0.0, 3.1.0)
    assert affected(adv, f"pkg:cargo/ammonia@{version}") is expected


# ---- ecosystems the corpora hold no advisories for: real package versions, written ranges -------


def _adv(purl_type: str, name: str, ecosystem: str, *events: tuple[str, str]) -> Advisory:
    return Advisory(
        id=f"TEST-{purl_type}",
        affected=(
            AffectedPackage(
                purl_type,
                name,
                ecosystem,
                ranges=(VersionRange("ECOSYSTEM", tuple(RangeEvent(k, v) for k, v in events)),),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("adv", "purl", "expected"),
    [
        # NuGet (GHSA-5crp-9r3c-p9vr): Newtonsoft.Json < 13.0.1, names case-insensitive.
        (_adv("nuget", "Newtonsoft.Json", "NuGet", ("introduced", "0"), ("fixed", "13.0.1")),
         "pkg:nuget/newtonsoft.json@12.0.3", True),
        (_adv("nuget", "Newtonsoft.Json", "NuGet", ("introduced", "0"), ("fixed", "13.0.1")),
         "pkg:nuget/Newtonsoft.Json@13.0.1-beta1", True),
        (_adv("nuget", "Newtonsoft.Json", "NuGet", ("introduced", "0"), ("fixed", "13.0.1")),
         "pkg:nuget/Newtonsoft.Json@13.0.1", False),
        # RubyGems (CVE-2020-8165): activesupport [6.0.0, 6.0.3.1); 6.0.3.rc1 is a pre-release.
        (_adv("gem", "activesupport", "RubyGems", ("introduced", "6.0.0"), ("fixed", "6.0.3.1")),
         "pkg:gem/activesupport@6.0.2.1", True),
        (_adv("gem", "activesupport", "RubyGems", ("introduced", "6.0.0"), ("fixed", "6.0.3.1")),
         "pkg:gem/activesupport@6.0.3.rc1", True),
        (_adv("gem", "activesupport", "RubyGems", ("introduced", "6.0.0"), ("fixed", "6.0.3.1")),
         "pkg:gem/activesupport@6.0.3.1", False),
        # Debian (CVE-2019-18224): libidn2 fixed 2.0.5-1+deb10u1; "~" sorts before anything.
        (_adv("deb", "libidn2", "Debian:10", ("introduced", "0"), ("fixed", "2.0.5-1+deb10u1")),
         "pkg:deb/debian/libidn2@2.0.5-1?distro=debian-10.2", True),
        (_adv("deb", "libidn2", "Debian:10", ("introduced", "0"), ("fixed", "2.0.5-1+deb10u1")),
         "pkg:deb/debian/libidn2@2.0.5-1%2Bdeb10u1~bpo1?distro=debian-10.2", True),
        (_adv("deb", "libidn2", "Debian:10", ("introduced", "0"), ("fixed", "2.0.5-1+deb10u1")),
         "pkg:deb/debian/libidn2@2.0.5-1%2Bdeb10u1?distro=debian-10.2", False),
        # ... only for Debian 10: not for Debian 11 nor for Ubuntu.
        (_adv("deb", "libidn2", "Debian:10", ("introduced", "0"), ("fixed", "2.0.5-1+deb10u1")),
         "pkg:deb/debian/libidn2@2.0.5-1?distro=debian-11.1", False),
        (_adv("deb", "libidn2", "Debian:10", ("introduced", "0"), ("fixed", "2.0.5-1+deb10u1")),
         "pkg:deb/ubuntu/libidn2@2.0.5-1", False),
        # Binary package whose source package the advisory names (purl "upstream" qualifier).
        (_adv("deb", "libidn2", "Debian:10", ("introduced", "0"), ("fixed", "2.0.5-1+deb10u1")),
         "pkg:deb/debian/libidn2-0@2.0.5-1?upstream=libidn2&distro=debian-10.2", True),
        # Alpine: -rN revisions.
        (_adv("apk", "openssl", "Alpine:v3.18", ("introduced", "0"), ("fixed", "3.1.4-r1")),
         "pkg:apk/alpine/openssl@3.1.4-r0?distro=3.18.4", True),
        (_adv("apk", "openssl", "Alpine:v3.18", ("introduced", "0"), ("fixed", "3.1.4-r1")),
         "pkg:apk/alpine/openssl@3.1.4-r1?distro=3.18.4", False),
        # RPM (centos-7 golden): the epoch rides in a purl qualifier.
        (_adv("rpm", "openssl-libs", "CentOS:7", ("introduced", "0"), ("fixed", "1:1.0.2k-19.el7")),
         "pkg:rpm/centos/openssl-libs@1.0.2k-16.el7?arch=x86_64&epoch=1&distro=centos-7.6.1810",
         True),
        (_adv("rpm", "openssl-libs", "CentOS:7", ("introduced", "0"), ("fixed", "1:1.0.2k-19.el7")),
         "pkg:rpm/centos/openssl-libs@1.0.2k-19.el7?arch=x86_64&epoch=1&distro=centos-7.6.1810",
         False),
    ],
)  # fmt: skip
def test_os_and_other_ecosystems(adv: Advisory, purl: str, expected: bool) -> None:
    assert affected(adv, purl) is expected


# ---- OSV event semantics ----------------------------------------------------------------------


def test_last_affected_is_inclusive_and_limit_caps() -> None:
    adv = _adv("npm", "left-pad", "npm", ("introduced", "1.0.0"), ("last_affected", "1.3.0"))
    assert affected(adv, "pkg:npm/left-pad@1.3.0")
    assert not affected(adv, "pkg:npm/left-pad@1.3.1")
    capped = _adv("npm", "left-pad", "npm", ("introduced", "0"), ("limit", "2.0.0"))
    assert affected(capped, "pkg:npm/left-pad@1.9.9")
    assert not affected(capped, "pkg:npm/left-pad@2.0.0")


def test_events_are_sorted_by_version_not_source_order() -> None:
    adv = _adv("npm", "x", "npm", ("fixed", "2.0.0"), ("introduced", "1.0.0"))
    assert affected(adv, "pkg:npm/x@1.5.0")
    assert not affected(adv, "pkg:npm/x@0.9.0")


def test_git_ranges_are_ignored() -> None:
    adv = Advisory(
        id="GIT-ONLY",
        affected=(
            AffectedPackage(
                "pypi",
                "x",
                "PyPI",
                ranges=(VersionRange("GIT", (RangeEvent("introduced", "0"),)),),
                versions=("1.0",),
            ),
        ),
    )
    assert affected(adv, "pkg:pypi/x@1.0")  # the explicit versions list still counts
    assert not affected(adv, "pkg:pypi/x@2.0")


# ---- skips are values, findings are never invented ---------------------------------------------


def test_unparseable_component_version_is_a_skip_with_reason(by_id: dict[str, Advisory]) -> None:
    index = AdvisoryIndex.build([by_id["PYSEC-2019-140"]])
    matches, skips = match_component(index, Component(name="w", purl="pkg:pypi/werkzeug@latest!"))
    assert matches == []
    assert [(s.advisory_id, s.reason) for s in skips] == [
        ("PYSEC-2019-140", "version 'latest!' is not a valid pypi version")
    ]


def test_missing_purl_or_version_is_a_skip() -> None:
    index = AdvisoryIndex.build([_adv("npm", "x", "npm", ("introduced", "0"))])
    _m, skips = match_component(index, Component(name="no-purl"))
    assert skips[0].reason == "component has no purl"
    _m, skips = match_component(index, Component(name="x", purl="pkg:npm/x"))
    assert (skips[0].reason, skips[0].advisory_id) == ("component has no version", "TEST-npm")
    _m, skips = match_component(index, Component(name="bad", purl="pkg:"))
    assert skips[0].reason == "component purl is not a valid purl"


def test_unparseable_event_version_is_a_skip() -> None:
    adv = _adv("pypi", "x", "PyPI", ("introduced", "0"), ("fixed", "not a version!"))
    matches, skips = match_component(
        AdvisoryIndex.build([adv]), Component("x", purl="pkg:pypi/x@1.0")
    )
    assert matches == []
    assert "fixed version 'not a version!' is not a valid pypi version" in skips[0].reason


def test_withdrawn_advisories_are_ignored(corpus_advisories: list[Advisory]) -> None:
    withdrawn = [a for a in corpus_advisories if a.withdrawn]
    assert len(withdrawn) >= 30  # NOTES.md: 10 pypa + 17 Go + 13 RustSec
    index = AdvisoryIndex.build(corpus_advisories)
    assert index.withdrawn == len(withdrawn)
    gone = {a.id for a in withdrawn}
    for key in index.package_keys():
        assert not gone & {e.advisory.id for e in index.candidates(key)}


def test_withdrawn_after_the_as_of_time_still_counts() -> None:
    from datetime import UTC, datetime

    adv = Advisory(
        id="W-1",
        withdrawn="2030-01-01T00:00:00Z",
        affected=_adv("npm", "x", "npm", ("introduced", "0")).affected,
    )
    before = AdvisoryIndex.build([adv], as_of=datetime(2026, 1, 1, tzinfo=UTC))
    after = AdvisoryIndex.build([adv], as_of=datetime(2031, 1, 1, tzinfo=UTC))
    assert ids_for(before, "pkg:npm/x@1.0.0") == {"W-1": ()}
    assert ids_for(after, "pkg:npm/x@1.0.0") == {}


# ---- aliases, primary ids, fixed versions ---------------------------------------------------


def test_one_finding_per_vulnerability_name(corpus_index: AdvisoryIndex) -> None:
    # jquery: GHSA-6c3j-c64m-qhgq (CVE-2019-11358) and the Node WG's NSWG-ECO-496 (CVE-2019-11358,
    # CVE-2019-5428). One finding per CVE, as trivy:db writes one entry per CVE; the two records
    # of CVE-2019-11358 merge into its finding.
    matches, _ = match_component(corpus_index, Component("jquery", purl="pkg:npm/jquery@3.3.9"))
    by_name = {m.vulnerability_id: m for m in matches}
    m = by_name["CVE-2019-11358"]
    assert m.advisory_ids == ("GHSA-6c3j-c64m-qhgq", "NSWG-ECO-496")
    # the record's other CVE is a finding of its own, not an alias
    assert m.aliases == ("GHSA-6c3j-c64m-qhgq", "NSWG-ECO-496")
    assert m.fixed_versions == ("3.4.0",)
    other = by_name["CVE-2019-5428"]
    assert (other.advisory_ids, other.aliases) == (("NSWG-ECO-496",), ("NSWG-ECO-496",))


def test_vulnerability_name_rules() -> None:
    assert vulnerability_names("PYSEC-2019-140", ["GHSA-gq9m-qvpx-68hc", "CVE-2019-14806"]) == (
        "CVE-2019-14806",
    )
    assert vulnerability_names("GO-2022-0379", ["GHSA-qq97-vm5h-rrhg"]) == ("GHSA-qq97-vm5h-rrhg",)
    assert vulnerability_names("NSWG-ECO-496", ["CVE-2019-5428", "CVE-2019-11358"]) == (
        "CVE-2019-11358",
        "CVE-2019-5428",
    )
    assert vulnerability_names("RUSTSEC-2020-0001") == ("RUSTSEC-2020-0001",)
    assert other_ids("NSWG-ECO-496", ["CVE-2019-5428", "CVE-2019-11358"]) == ("NSWG-ECO-496",)
    assert other_ids("GO-2022-0379", ["GHSA-qq97-vm5h-rrhg"]) == ("GO-2022-0379",)


def test_fixed_versions_in_ecosystem_order(corpus_index: AdvisoryIndex) -> None:
    fixed = ids_for(corpus_index, "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.1")[
        "CVE-2020-9548"
    ]
    assert fixed == ("2.7.9.7", "2.8.11.6", "2.9.10.4")
    assert sort_versions("maven", ["2.10.0", "2.9.10.4", "2.9.2"]) == (
        "2.9.2",
        "2.9.10.4",
        "2.10.0",
    )
    assert sort_versions("pypi", ["0.15.3", "0.11.6", "1.0rc1"]) == ("0.11.6", "0.15.3", "1.0rc1")


def test_parse_version_refuses_what_the_scheme_refuses() -> None:
    assert parse_version("pypi", "0.11") is not None
    assert parse_version("pypi", "") is None
    assert parse_version("nuget", "1..2") is None
    assert parse_version("golang", "go1.21.3") is not None  # the toolchain's spelling


def test_index_lookup_is_not_n_times_m(corpus_index: AdvisoryIndex) -> None:
    # 5,000 components against ~9,000 advisories: one dict look-up each.
    components = [
        Component(f"c{i}", purl=f"pkg:npm/not-a-real-package-{i}@1.0.0") for i in range(5000)
    ]
    components += [Component("jquery", purl="pkg:npm/jquery@3.3.9")]
    start = time.perf_counter()
    found = sum(len(match_component(corpus_index, c)[0]) for c in components)
    assert found >= 1
    assert time.perf_counter() - start < 5.0
