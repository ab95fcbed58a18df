"""Advisory → Trivy DB mapping (pure functions)."""

from __future__ import annotations

import dataclasses

import pytest

from export_center.model import Advisory, AffectedPackage, RangeEvent, Severity, VersionRange
from export_center.trivy.mapping import (
    DataSource,
    data_source_for,
    data_source_value,
    map_advisory,
    merge_advisory_values,
    merge_vulnerability_values,
    normalize_package_name,
    os_fixed_version,
    rfc3339,
    severity_from_label,
    trivy_ecosystem,
    vendor_ids,
    version_constraints,
    vulnerability_key,
    vulnerability_value,
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


def test_key_is_the_single_cve_else_the_advisory_id() -> None:
    one = Advisory("PYSEC-2019-140", aliases=("CVE-2019-14806", "GHSA-gq9m-qvpx-68hc"))
    assert vulnerability_key(one) == "CVE-2019-14806"
    assert vendor_ids(one, "CVE-2019-14806") == ["GHSA-gq9m-qvpx-68hc", "PYSEC-2019-140"]
    two = Advisory("GHSA-aaaa-bbbb-cccc", aliases=("CVE-2021-2", "CVE-2021-1"))
    assert vulnerability_key(two) == "GHSA-aaaa-bbbb-cccc"
    assert vendor_ids(two, "GHSA-aaaa-bbbb-cccc") == ["CVE-2021-1", "CVE-2021-2"]
    none = Advisory("RUSTSEC-2020-0001")
    assert vulnerability_key(none) == "RUSTSEC-2020-0001"
    assert vendor_ids(none, "RUSTSEC-2020-0001") == []
    assert vulnerability_key(Advisory("CVE-2022-1", aliases=("GHSA-x",))) == "CVE-2022-1"


PIP = trivy_ecosystem("PyPI")


@pytest.mark.parametrize(
    ("ranges", "vulnerable", "patched"),
    [
        ((rng(("introduced", "0"), ("fixed", "1.2.3")),), ["<1.2.3"], ["1.2.3"]),
        ((rng(("introduced", "1.0"), ("fixed", "1.2")),), [">=1.0, <1.2"], ["1.2"]),
        ((rng(("introduced", "1.0"), ("last_affected", "1.4")),), [">=1.0, <=1.4"], []),
        ((rng(("introduced", "1.4"), ("last_affected", "1.4")),), ["=1.4"], []),
        ((rng(("introduced", "0")),), [">=0"], []),
        ((rng(("introduced", "2.0")),), [">=2.0"], []),
        ((rng(("introduced", "1.0"), ("limit", "2.0")),), [">=1.0, <2.0"], []),
        (
            (rng(("introduced", "0"), ("fixed", "1.1"), ("introduced", "2.0"), ("fixed", "2.3")),),
            ["<1.1", ">=2.0, <2.3"],
            ["1.1", "2.3"],
        ),
        # a closing event without an introduced opens at 0
        ((rng(("fixed", "0.9")),), ["<0.9"], ["0.9"]),
        # GIT ranges are commits: ignored
        ((rng(("introduced", "abc"), ("fixed", "def"), kind="GIT"),), [], []),
        (
            (
                rng(("introduced", "abc"), ("fixed", "def"), kind="GIT"),
                rng(("introduced", "0"), ("fixed", "3.0"), kind="SEMVER"),
            ),
            ["<3.0"],
            ["3.0"],
        ),
    ],
)
def test_ranges_become_version_constraints(
    ranges: tuple[VersionRange, ...], vulnerable: list[str], patched: list[str]
) -> None:
    assert PIP is not None
    assert version_constraints(pkg(ranges=ranges), PIP) == (vulnerable, patched)


def test_explicit_versions_not_covered_by_a_range_are_added() -> None:
    assert PIP is not None
    ranges = (rng(("introduced", "1.0"), ("fixed", "1.5")),)
    affected = pkg(ranges=ranges, versions=("1.0", "1.2", "1.4.post1", "2.0rc1", "not a version"))
    vulnerable, _ = version_constraints(affected, PIP)
    # 1.0, 1.2 and 1.4.post1 fall in the range; the others are listed one by one.
    assert vulnerable == [">=1.0, <1.5", "=2.0rc1", "=not a version"]
    # GIT-only: the versions list is all there is.
    git_only = pkg(ranges=(rng(("introduced", "abc"), kind="GIT"),), versions=("0.1", "0.2"))
    assert version_constraints(git_only, PIP) == (["=0.1", "=0.2"], [])


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
    assert mapped.vuln_id == "CVE-2020-9548"
    assert mapped.skipped == ("ecosystem 'CRAN' has no Trivy bucket",)
    (entry,) = mapped.entries
    assert (entry.bucket, entry.package, entry.vuln_id) == (
        "maven::My Feed",
        "com.fasterxml.jackson.core:jackson-databind",
        "CVE-2020-9548",
    )
    assert entry.value == {
        "PatchedVersions": ["2.9.10.4", "2.10.4"],
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
    assert mapped.skipped == ("pip: no version range or version (GIT ranges only)",)


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
