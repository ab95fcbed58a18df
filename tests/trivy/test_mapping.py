"""Advisory → Trivy DB mapping (pure functions)."""

from __future__ import annotations

import dataclasses

import pytest

from export_center.model import (
    Advisory,
    AffectedPackage,
    RangeEvent,
    Severity,
    VersionRange,
    to_json_dict,
)
from export_center.trivy.mapping import (
    DataSource,
    TrivyEcosystem,
    data_source_for,
    data_source_value,
    map_advisory,
    merge_advisory_values,
    merge_vulnerability_values,
    normalize_package_name,
    os_fixed_version,
    package_keys,
    rfc3339,
    severity_from_label,
    trivy_ecosystem,
    vulnerability_value,
    vulnerable_versions,
)

SOURCE = DataSource("my-feed", "My Feed", "https://feed.example")


def rng(*events: tuple[str, str], kind: str = "ECOSYSTEM") -> VersionRange:
    return VersionRange(kind, tuple(RangeEvent(k, v) for k, v in events))


def pkg(
    name: str = "requests",
    ecosystem: str = "PyPI",
    ranges: tuple[VersionRange, ...] = (),
    versions: tuple[str, ...] = (),
) -> AffectedPackage:
    return AffectedPackage("pypi", name, ecosystem, ranges=ranges, versions=versions)


@pytest.mark.parametrize(
    ("osv", "slug", "bucket"),
    [
        ("PyPI", "pip", "pip::My Feed"),
        ("Go", "go", "go::My Feed"),
        ("crates.io", "cargo", "cargo::My Feed"),
        ("npm", "npm", "npm::My Feed"),
        ("Maven", "maven", "maven::My Feed"),
        ("NuGet", "nuget", "nuget::My Feed"),
        ("RubyGems", "rubygems", "rubygems::My Feed"),
        ("Packagist", "composer", "composer::My Feed"),
        ("Pub", "pub", "pub::My Feed"),
        ("Hex", "erlang", "erlang::My Feed"),
        ("SwiftURL", "swift", "swift::My Feed"),
        ("ConanCenter", "conan", "conan::My Feed"),
        ("Debian:12", "debian", "debian 12"),
        ("Debian:11.7", "debian", "debian 11"),
        ("Alpine:v3.22", "alpine", "alpine 3.22"),
        ("Alpine:v3.18.4", "alpine", "alpine 3.18"),
        ("Ubuntu:22.04:LTS", "ubuntu", "ubuntu 22.04"),
        ("Ubuntu:24.10", "ubuntu", "ubuntu 24.10"),
        ("Wolfi", "wolfi", "wolfi"),
        ("Chainguard", "chainguard", "chainguard"),
        ("AlmaLinux:9", "alma", "alma 9"),
        ("Rocky Linux:8", "rocky", "rocky 8"),
    ],
)
def test_ecosystem_buckets(osv: str, slug: str, bucket: str) -> None:
    eco = trivy_ecosystem(osv)
    assert eco is not None
    assert eco.slug == slug
    assert eco.bucket("My Feed") == bucket


@pytest.mark.parametrize(
    "osv", ["GIT", "OSS-Fuzz", "Ubuntu:Pro:18.04:LTS", "Debian", "Alpine:edge", "PyPI:extra", ""]
)
def test_ecosystems_without_a_trivy_bucket(osv: str) -> None:
    assert trivy_ecosystem(osv) is None


@pytest.mark.parametrize(
    ("slug", "name", "key"),
    [
        ("pip", "Zope_Interface", "zope-interface"),
        ("pip", "zope.interface", "zope.interface"),
        ("npm", "@Babel/Core", "@babel/core"),
        (
            "maven",
            "com.FasterXML.jackson.core:Jackson-Databind",
            "com.fasterxml.jackson.core:jackson-databind",
        ),
        ("nuget", "Newtonsoft.Json", "newtonsoft.json"),
        ("cargo", "Tokio", "tokio"),
        ("rubygems", "Rails", "rails"),
        ("composer", "Symfony/HTTP-Kernel", "symfony/http-kernel"),
        ("go", "github.com/BurntSushi/toml", "github.com/BurntSushi/toml"),
        ("cocoapods", "AFNetworking", "AFNetworking"),
        ("swift", "https://github.com/Vapor/vapor.git", "github.com/Vapor/vapor"),
        ("debian", "OpenSSL", "OpenSSL"),
    ],
)
def test_package_names_are_normalized_as_trivy_looks_them_up(
    slug: str, name: str, key: str
) -> None:
    assert normalize_package_name(slug, name) == key


def test_keys_are_the_shared_vulnerability_names() -> None:
    def keys(adv: Advisory) -> tuple[tuple[str, ...], list[str]]:
        mapped = map_advisory(dataclasses.replace(adv, affected=(pkg(ranges=FIXED),)), SOURCE)
        assert {e.vuln_id for e in mapped.entries} == set(mapped.vuln_ids)
        return mapped.vuln_ids, mapped.entries[0].value.get("VendorIDs", [])

    one = Advisory("PYSEC-2019-140", aliases=("CVE-2019-14806", "GHSA-gq9m-qvpx-68hc"))
    assert keys(one) == (("CVE-2019-14806",), ["GHSA-gq9m-qvpx-68hc", "PYSEC-2019-140"])
    # one entry per CVE, as upstream; the other CVE is not a vendor id of either
    two = Advisory("GHSA-aaaa-bbbb-cccc", aliases=("CVE-2021-2", "CVE-2021-1"))
    assert keys(two) == (("CVE-2021-1", "CVE-2021-2"), ["GHSA-aaaa-bbbb-cccc"])
    # no CVE: the bytewise smallest id (the GHSA id before the GO id)
    go = Advisory("GO-2022-0379", aliases=("GHSA-qq97-vm5h-rrhg",))
    assert keys(go) == (("GHSA-qq97-vm5h-rrhg",), ["GO-2022-0379"])
    assert keys(Advisory("RUSTSEC-2020-0001")) == (("RUSTSEC-2020-0001",), [])
    assert keys(Advisory("CVE-2022-1", aliases=("GHSA-x",))) == (("CVE-2022-1",), ["GHSA-x"])


PIP = trivy_ecosystem("PyPI")
FIXED = (VersionRange("ECOSYSTEM", (RangeEvent("introduced", "0"), RangeEvent("fixed", "9.0"))),)


def vulnerable(
    affected: AffectedPackage, eco: TrivyEcosystem | None = PIP, *, companions: bool = False
) -> list[str]:
    """The entries written for ``affected``; pip's pre-release companion clauses (with ``!=``,
    see test_pip_pre_releases_of_a_fix_are_matched) left out unless asked for."""
    assert eco is not None
    clauses, dropped = vulnerable_versions(to_json_dict(affected), eco)
    assert dropped == []
    return clauses if companions else [c for c in clauses if "!=" not in c]


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ((rng(("introduced", "0"), ("fixed", "1.2.3")),), ["<1.2.3"]),
        ((rng(("introduced", "1.0"), ("fixed", "1.2")),), [">=1.0, <1.2"]),
        ((rng(("introduced", "1.0"), ("last_affected", "1.4")),), [">=1.0, <=1.4"]),
        ((rng(("introduced", "1.4"), ("last_affected", "1.4")),), ["=1.4"]),
        # "always vulnerable" is Trivy's empty constraint: ">=0" misses Go pseudo-versions
        ((rng(("introduced", "0")),), [""]),
        ((rng(("introduced", "2.0")),), [">=2.0"]),
        ((rng(("introduced", "1.0"), ("limit", "2.0")),), [">=1.0, <2.0"]),
        ((rng(("introduced", "0"), ("limit", "2.0")),), ["<2.0"]),
        (
            (rng(("introduced", "0"), ("fixed", "1.1"), ("introduced", "2.0"), ("fixed", "2.3")),),
            ["<1.1", ">=2.0, <2.3"],
        ),
        # events out of version order (PyPA has some): evaluated sorted, as the OSV schema says
        (
            (rng(("introduced", "2.0"), ("fixed", "2.3"), ("introduced", "0"), ("fixed", "1.1")),),
            ["<1.1", ">=2.0, <2.3"],
        ),
        # an introduced inside an open interval changes nothing; a fix with nothing open neither
        ((rng(("introduced", "1.0"), ("introduced", "1.5"), ("fixed", "2.0")),), [">=1.0, <2.0"]),
        ((rng(("fixed", "0.9")),), []),
        # last_affected and fixed at one version: the fix wins at that version
        (
            (rng(("introduced", "1.0"), ("last_affected", "1.5"), ("fixed", "1.5")),),
            [">=1.0, <1.5"],
        ),
        # versions are written in PEP 440 normal form (Trivy's tokenizer misreads "1.0beta2")
        ((rng(("introduced", "1.0beta2"), ("fixed", "1.0-1")),), [">=1.0b2, <1.0.post1"]),
        # GIT ranges are commits: ignored
        ((rng(("introduced", "abc"), ("fixed", "def"), kind="GIT"),), []),
        (
            (
                rng(("introduced", "abc"), ("fixed", "def"), kind="GIT"),
                rng(("introduced", "0"), ("fixed", "3.0"), kind="SEMVER"),
            ),
            ["<3.0"],
        ),
    ],
)
def test_ranges_become_version_constraints(
    ranges: tuple[VersionRange, ...], expected: list[str]
) -> None:
    assert vulnerable(pkg(ranges=ranges)) == expected


def test_pip_pre_releases_of_a_fix_are_matched() -> None:
    # PEP 440's "<2.0" leaves out 2.0rc1, which sorts below 2.0 and which the range covers: a
    # companion clause gives back exactly the pre-releases of the bound, from the lower bound up.
    ranges = (
        rng(("introduced", "1.0"), ("fixed", "2.0")),
        rng(("introduced", "3.0b1"), ("fixed", "3.0")),
    )
    assert vulnerable(pkg(ranges=ranges), companions=True) == [
        ">=1.0, <2.0",
        ">=2.0.dev0, <=2.0, !=2.0",
        ">=3.0b1, <3.0",
        ">=3.0b1, <=3.0, !=3.0",
    ]
    # a pre-release bound keeps the pre-releases below it: no companion
    assert vulnerable(
        pkg(ranges=(rng(("introduced", "0"), ("fixed", "2.0rc2")),)), companions=True
    ) == ["<2.0rc2"]


def test_a_version_fixed_in_one_range_and_covered_by_another_stays_vulnerable() -> None:
    # PatchedVersions would subtract 1.5 from every range of the entry: it is not written.
    ranges = (
        rng(("introduced", "1.0"), ("fixed", "1.5")),
        rng(("introduced", "1.4"), ("fixed", "1.6")),
    )
    assert vulnerable(pkg(ranges=ranges)) == [">=1.0, <1.5", ">=1.4, <1.6"]
    value = map_advisory(Advisory("PYSEC-1", affected=(pkg(ranges=ranges),)), SOURCE).entries[0]
    assert "PatchedVersions" not in value.value


def test_listed_versions_are_clauses_unless_a_range_already_matches_them() -> None:
    ranges = (rng(("introduced", "1.0"), ("fixed", "1.5")), rng(("introduced", "3.0")))
    listed = ("1.0", "1.2", "1.4.post1", "1.4+local", "1.5rc1", "2.0rc1", "3.0rc1", "3.1.dev1")
    # 1.5rc1 is matched through the companion of "<1.5" (a pre-release of the bound); 2.0rc1
    # is outside the ranges and 3.0rc1 below ">=3.0": those two need a clause of their own.
    assert vulnerable(pkg(ranges=ranges, versions=listed)) == [
        ">=1.0, <1.5",
        ">=3.0",
        "=2.0rc1",
        "=3.0rc1",
    ]
    # npm and Maven: only plain N.N.N versions inside plain N.N.N bounds count as covered (the
    # comparers' pre-release and qualifier rules are not mirrored); Go and Cargo list them all.
    npm = trivy_ecosystem("npm")
    semver = AffectedPackage(
        "npm",
        "x",
        "npm",
        ranges=(rng(("introduced", "1.0.0"), ("fixed", "1.5.0")),),
        versions=("1.2.0", "1.3.0-rc.1", "1.6.0"),
    )
    assert vulnerable(semver, npm) == [">=1.0.0, <1.5.0", "=1.3.0-rc.1", "=1.6.0"]
    go = trivy_ecosystem("Go")
    mod = AffectedPackage("golang", "m", "Go", ranges=semver.ranges, versions=("1.2.0",))
    assert vulnerable(mod, go) == [">=1.0.0, <1.5.0", "=1.2.0"]
    # GIT-only: the versions list is all there is.
    git_only = pkg(ranges=(rng(("introduced", "abc"), kind="GIT"),), versions=("0.1", "0.2"))
    assert vulnerable(git_only) == ["=0.1", "=0.2"]


def test_what_trivy_cannot_parse_is_dropped_and_counted() -> None:
    assert PIP is not None
    # joblib and paramiko list versions that are not PEP 440: one of them as "=v" made Trivy
    # refuse the whole constraint and miss CVE-2022-21797 and CVE-2022-24302.
    affected = pkg(
        ranges=(rng(("introduced", "0"), ("fixed", "1.2.0")),),
        versions=("0.3.2d", "0.1-bulbasaur", "2.0.0-final", "0.7.10p1", "1.2.0rc1"),
    )
    clauses, dropped = vulnerable_versions(to_json_dict(affected), PIP)
    assert clauses == ["<1.2.0", ">=1.2.0.dev0, <=1.2.0, !=1.2.0"]
    assert dropped == ["pip: listed version not readable by Trivy's pep440 comparer"] * 4
    # a bound Trivy cannot read takes its interval with it (Maven versions may not hold "_")
    maven = trivy_ecosystem("Maven")
    assert maven is not None
    jar = AffectedPackage(
        "maven",
        "g:a",
        "Maven",
        ranges=(rng(("introduced", "0"), ("fixed", "1.0"), ("introduced", "2.0_beta")),),
    )
    clauses, dropped = vulnerable_versions(to_json_dict(jar), maven)
    assert clauses == ["<1.0"]
    assert dropped == ["maven: range bound not readable by Trivy's maven comparer"]
    mapped = map_advisory(Advisory("PYSEC-9", affected=(affected,)), SOURCE)
    assert len(mapped.dropped) == 4 and mapped.entries


def test_go_unfixed_advisories_match_pseudo_versions() -> None:
    go = trivy_ecosystem("Go")
    affected = AffectedPackage(
        "golang", "golang.org/x/crypto", "Go", ranges=(rng(("introduced", "0"), kind="SEMVER"),)
    )
    assert vulnerable(affected, go) == [""]


def test_npm_versions_without_three_parts_are_never_written() -> None:
    # "=1.2" means 1.2.x in an npm constraint
    npm = trivy_ecosystem("npm")
    assert npm is not None
    two_parts = AffectedPackage("npm", "x", "npm", versions=("1.2",))
    assert vulnerable_versions(to_json_dict(two_parts), npm) == (
        [],
        ["npm: listed version not readable by Trivy's npm comparer"],
    )


def test_pip_packages_are_written_under_every_spelling() -> None:
    assert package_keys("pip", "oslo-utils") == (("oslo-utils", "oslo.utils"), False)
    assert package_keys("pip", "Zope_Interface") == (("zope-interface", "zope.interface"), False)
    keys, cut = package_keys("pip", "a-b.c")
    assert keys == ("a-b-c", "a-b.c", "a.b-c", "a.b.c") and not cut
    keys, cut = package_keys("pip", "a-b-c-d-e-f-g-h")
    assert keys == ("a-b-c-d-e-f-g-h", "a.b.c.d.e.f.g.h") and cut
    assert package_keys("npm", "@Scope/Pkg") == (("@scope/pkg",), False)
    mapped = map_advisory(Advisory("PYSEC-1", affected=(pkg("oslo.utils", ranges=FIXED),)), SOURCE)
    assert [e.package for e in mapped.entries] == ["oslo-utils", "oslo.utils"]


def test_os_fixed_version() -> None:
    deb = AffectedPackage(
        "deb",
        "openssl",
        "Debian:12",
        ranges=(rng(("introduced", "0"), ("fixed", "3.0.11-1~deb12u2")),),
    )
    assert os_fixed_version(deb) == "3.0.11-1~deb12u2"
    assert os_fixed_version(dataclasses.replace(deb, ranges=(rng(("introduced", "0")),))) == ""


def test_severity_labels() -> None:
    assert [severity_from_label(x) for x in ("LOW", "MODERATE", "medium", "HIGH", "CRITICAL")] == [
        1,
        2,
        2,
        3,
        4,
    ]
    assert severity_from_label("unmaintained") == 0
    assert severity_from_label(None) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-09-01T12:30:00Z", "2021-09-01T12:30:00Z"),
        ("2021-09-01T12:30:00.123456Z", "2021-09-01T12:30:00Z"),
        ("2021-09-01T14:30:00+02:00", "2021-09-01T12:30:00Z"),
        ("2021-09-01", "2021-09-01T00:00:00Z"),
        ("0001-01-01T00:00:00Z", None),  # Go's placeholder
        ("yesterday", None),
        (None, None),
    ],
)
def test_dates_are_rfc3339_utc(value: str | None, expected: str | None) -> None:
    assert rfc3339(value) == expected


def ghsa() -> Advisory:
    return Advisory(
        id="GHSA-p43x-xfjf-5jhr",
        aliases=("CVE-2020-9548",),
        summary="Deserialization of untrusted data",
        details="A long description.",
        affected=(
            AffectedPackage(
                "maven",
                "com.fasterxml.jackson.core:jackson-databind",
                "Maven",
                ranges=(rng(("introduced", "2.0.0"), ("fixed", "2.9.10.4")),),
            ),
            # a second entry for the same package, as GHSA writes one per branch
            AffectedPackage(
                "maven",
                "com.fasterxml.jackson.core:jackson-databind",
                "Maven",
                ranges=(rng(("introduced", "2.10.0"), ("fixed", "2.10.4")),),
            ),
            AffectedPackage("cran", "somepkg", "CRAN", ranges=(rng(("introduced", "0")),)),
        ),
        severities=(Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H/"),),
        severity_label="HIGH",
        cwe_ids=("CWE-502",),
        references=("https://b.example", "https://a.example", "https://b.example"),
        published="2020-03-04T20:52:11Z",
        modified="0001-01-01T00:00:00Z",
    )


def test_map_advisory() -> None:
    mapped = map_advisory(ghsa(), SOURCE)
    assert mapped.vuln_ids == ("CVE-2020-9548",)
    assert mapped.skipped == ("ecosystem 'CRAN' has no Trivy bucket",)
    (entry,) = mapped.entries
    assert (entry.bucket, entry.package, entry.vuln_id) == (
        "maven::My Feed",
        "com.fasterxml.jackson.core:jackson-databind",
        "CVE-2020-9548",
    )
    assert entry.value == {
        "VendorIDs": ["GHSA-p43x-xfjf-5jhr"],
        "VulnerableVersions": [">=2.0.0, <2.9.10.4", ">=2.10.0, <2.10.4"],
    }
    assert mapped.vulnerability == {
        "Title": "Deserialization of untrusted data",
        "Description": "A long description.",
        "Severity": "HIGH",
        "VendorSeverity": {"my-feed": 3},
        "CVSS": {
            "my-feed": {
                "V3Vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H",
                "V3Score": 8.1,
            }
        },
        "CweIDs": ["CWE-502"],
        "References": ["https://a.example", "https://b.example"],
        "PublishedDate": "2020-03-04T20:52:11Z",
    }


def test_severity_falls_back_to_the_cvss_score() -> None:
    adv = dataclasses.replace(
        ghsa(),
        severity_label=None,
        severities=(
            Severity("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P"),
            Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        ),
    )
    value = vulnerability_value(adv, SOURCE)
    assert value["VendorSeverity"] == {"my-feed": 4}
    assert value["Severity"] == "CRITICAL"
    assert value["CVSS"]["my-feed"] == {
        "V2Vector": "AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "V2Score": 7.5,
        "V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "V3Score": 9.8,
    }
    bare = vulnerability_value(Advisory("PYSEC-1", summary="s"), SOURCE)
    assert bare == {"Title": "s"}


def test_withdrawn_and_unusable_advisories_give_no_entry() -> None:
    withdrawn = dataclasses.replace(ghsa(), withdrawn="2021-01-01T00:00:00Z")
    mapped = map_advisory(withdrawn, SOURCE)
    assert mapped.entries == () and mapped.vulnerability is None
    assert mapped.skipped == ("withdrawn advisory",)
    git_only = Advisory(
        "PYSEC-2", affected=(pkg(ranges=(rng(("introduced", "abc"), kind="GIT"),)),)
    )
    mapped = map_advisory(git_only, SOURCE)
    assert mapped.entries == () and mapped.vulnerability is None
    assert mapped.skipped == ("pip: no version range or version Trivy can read",)


def test_os_advisories_carry_fixed_version_or_status() -> None:
    adv = Advisory(
        "DSA-1-1",
        aliases=("CVE-2024-1",),
        severity_label="HIGH",
        affected=(
            AffectedPackage(
                "deb",
                "openssl",
                "Debian:12",
                ranges=(rng(("introduced", "0"), ("fixed", "3.0.1-1")),),
            ),
            AffectedPackage("deb", "curl", "Debian:12", ranges=(rng(("introduced", "0")),)),
        ),
    )
    entries = {e.package: e.value for e in map_advisory(adv, SOURCE).entries}
    assert entries == {
        "curl": {"Status": 2, "Severity": 3, "VendorIDs": ["DSA-1-1"]},
        "openssl": {"FixedVersion": "3.0.1-1", "Severity": 3, "VendorIDs": ["DSA-1-1"]},
    }
    assert {e.bucket for e in map_advisory(adv, SOURCE).entries} == {"debian 12"}


def test_merge_advisory_values_unions_lists_and_prefers_unfixed() -> None:
    a = {"VulnerableVersions": ["<1.2"], "PatchedVersions": ["1.2"], "VendorIDs": ["PYSEC-1"]}
    b = {
        "VulnerableVersions": [">=2.0, <2.1", "<1.2"],
        "PatchedVersions": ["2.1"],
        "VendorIDs": ["GHSA-1"],
    }
    assert merge_advisory_values([a, b]) == {
        "PatchedVersions": ["1.2", "2.1"],
        "VendorIDs": ["GHSA-1", "PYSEC-1"],
        "VulnerableVersions": ["<1.2", ">=2.0, <2.1"],
    }
    # "always vulnerable" ORed with anything is itself
    always = merge_advisory_values([a, {"VulnerableVersions": [""]}])
    assert always["VulnerableVersions"] == [""]
    fixed = {"FixedVersion": "1.0", "Severity": 2}
    unfixed = {"Status": 2, "Severity": 3}
    assert merge_advisory_values([fixed, unfixed]) == {"Severity": 3, "Status": 2}
    assert merge_advisory_values([fixed, {"FixedVersion": "1.1"}]) == fixed


def test_merge_vulnerability_values_per_source() -> None:
    a = {
        "Title": "first",
        "VendorSeverity": {"a": 3},
        "References": ["https://x"],
        "CweIDs": ["CWE-1"],
    }
    b = {
        "Title": "second",
        "Description": "d",
        "VendorSeverity": {"a": 1, "b": 2},
        "References": ["https://w"],
    }
    assert merge_vulnerability_values([a, b]) == {
        "CweIDs": ["CWE-1"],
        "Description": "d",
        "References": ["https://w", "https://x"],
        "Title": "first",
        "VendorSeverity": {"a": 3, "b": 2},
    }


def test_data_sources() -> None:
    assert data_source_for("PyPA Advisory Database") == DataSource(
        "pypa-advisory-database", "PyPA Advisory Database"
    )
    assert data_source_value(SOURCE) == {
        "ID": "my-feed",
        "Name": "My Feed",
        "URL": "https://feed.example",
    }
    assert data_source_value(DataSource("x", "X")) == {"ID": "x", "Name": "X"}
