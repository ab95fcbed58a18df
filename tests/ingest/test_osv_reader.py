"""OSV records from the real corpora: pypa (YAML), golang-vulndb, RustSec, osv.dev bundles,
GHSA files in the advisory-database layout. Expected values were read from the files."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import rfc8785

from export_center.ingest.interface import RecordRefused
from export_center.ingest.osv import purl_type_for_ecosystem
from export_center.model import Advisory, ParsedRecord, RangeEvent, Severity, VersionRange
from support.ingest import ReadFn, only_record, only_refusal, read_bytes

TRIVY_DB_OSV = "aquasecurity-trivy-db/pkg/vulnsrc/osv/testdata/happy/vuln-list/osv/python"


def advisory(rec: ParsedRecord) -> Advisory:
    assert isinstance(rec.normalized, Advisory)
    return rec.normalized


def test_pysec_yaml(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("pypa-advisory-database/vulns/jinja2/PYSEC-2019-217.yaml"))
    adv = advisory(rec)
    assert (rec.upstream_id, rec.format, rec.doc_type) == ("PYSEC-2019-217", "osv", "advisory")
    assert rec.media_type == "application/osv+yaml"
    assert adv.aliases == ("CVE-2019-10906", "GHSA-462w-v97r-4m45")
    assert adv.modified == "2021-11-22T04:57:52.862665Z"  # unquoted in YAML: still text
    (pkg,) = adv.affected
    assert (pkg.purl_type, pkg.name, pkg.ecosystem, pkg.purl) == (
        "pypi",
        "jinja2",
        "PyPI",
        "pkg:pypi/jinja2",
    )
    assert pkg.ranges == (
        VersionRange("ECOSYSTEM", (RangeEvent("introduced", "0"), RangeEvent("fixed", "2.10.1"))),
    )
    assert pkg.fixed == ("2.10.1",)
    assert len(pkg.versions) == 31
    assert pkg.versions[:3] == ("2.0", "2.0rc1", "2.1")
    assert not rec.withdrawn


def test_go_record_with_placeholder_time(read_corpus: ReadFn, corpora: Path) -> None:
    rel = "golang-vulndb/data/osv/GO-2022-0969.json"
    rec = only_record(read_corpus(rel))
    adv = advisory(rec)
    assert adv.aliases == ("CVE-2022-27664", "GHSA-69cg-p879-7622")
    assert adv.published == "2022-09-12T20:23:06Z"
    assert adv.modified is None  # "0001-01-01T00:00:00Z" is Go's "unknown"
    stdlib, xnet = adv.affected
    assert (stdlib.purl_type, stdlib.name, stdlib.fixed) == (
        "golang",
        "stdlib",
        ("1.18.6", "1.19.1"),
    )
    assert [e.kind for e in stdlib.ranges[0].events] == ["introduced", "fixed"] * 2
    assert xnet.name == "golang.org/x/net"
    assert xnet.purl == "pkg:golang/golang.org/x/net"  # built: the record has no purl
    assert xnet.fixed == ("0.0.0-20220906165146-f3363e06e74c",)
    # The single-record content is the file's exact bytes.
    assert rec.content == (corpora / rel).read_bytes()


def test_rustsec_record(read_corpus: ReadFn) -> None:
    adv = advisory(
        only_record(read_corpus("rustsec-advisory-db-osv/crates/RUSTSEC-2021-0003.json"))
    )
    assert adv.aliases == ("CVE-2021-25900", "GHSA-43w2-9j62-hq99")
    assert adv.severities == (Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),)
    (pkg,) = adv.affected
    assert (pkg.purl_type, pkg.name, pkg.purl) == ("cargo", "smallvec", "pkg:cargo/smallvec")
    assert pkg.fixed == ("0.6.14", "1.6.1")
    assert pkg.ranges[0].events == (
        RangeEvent("introduced", "0.6.3"),
        RangeEvent("fixed", "0.6.14"),
        RangeEvent("introduced", "1.0.0"),
        RangeEvent("fixed", "1.6.1"),
    )
    assert adv.severity_label is None


def test_rustsec_informational_label(read_corpus: ReadFn) -> None:
    adv = advisory(
        only_record(read_corpus("rustsec-advisory-db-osv/crates/RUSTSEC-2016-0004.json"))
    )
    assert adv.severity_label == "unmaintained"


def test_santatracker_bundle_yields_170_records(read_corpus: ReadFn, corpora: Path) -> None:
    rel = "google-osv-scanner/internal/remediation/testdata/santatracker/vulns.json"
    outcomes = read_corpus(rel)
    assert len(outcomes) == 170
    assert all(isinstance(o, ParsedRecord) for o in outcomes)
    records = [o for o in outcomes if isinstance(o, ParsedRecord)]
    assert sum(r.format == "ghsa" for r in records) == 160
    assert sum(r.upstream_id.startswith("MAL-") and r.format == "osv" for r in records) == 10
    first = records[0]
    raw = orjson.loads((corpora / rel).read_bytes())["vulns"][0]
    assert first.upstream_id == "GHSA-968p-4wvh-cqc8"
    assert first.content == rfc8785.dumps(raw)  # entries are stored canonicalized
    assert first.media_type == "application/osv+json"
    adv = advisory(first)
    assert adv.aliases == ("CVE-2025-27789",)
    assert adv.severity_label == "MODERATE"
    assert adv.cwe_ids == ("CWE-1333",)


def test_bundle_bad_entry_is_refused_alone() -> None:
    good = {"id": "OSV-1", "modified": "2024-01-01T00:00:00Z"}
    bundle = {"vulns": [good, {"id": "OSV-2", "affected": [{"package": {"name": "x"}}]}, 7]}
    outcomes = read_bytes(orjson.dumps(bundle), "b.json")
    assert isinstance(outcomes[0], ParsedRecord)
    bad, odd = outcomes[1], outcomes[2]
    assert isinstance(bad, RecordRefused)
    assert bad.where == "b.json#vulns[1] (OSV-2)"
    assert bad.reason == "invalid OSV record: modified: missing (required)"
    assert isinstance(odd, RecordRefused)
    assert odd.where == "b.json#vulns[2] (?)"
    assert odd.reason == "invalid OSV record: expected an object, got number"


def test_empty_bundle_is_reported() -> None:
    refusal = only_refusal(read_bytes(b'{"vulns": []}', "empty.json"))
    assert "holds no records" in refusal.reason


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (
            {"id": "X-1", "modified": "t", "affected": [{"package": {"ecosystem": "PyPI"}}]},
            "affected[0].package.name: missing (required)",
        ),
        (
            {
                "id": "X-1",
                "modified": "t",
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": "a"},
                        "ranges": [{"type": "SEMVER", "events": [{"fixed": 1}]}],
                    }
                ],
            },
            "affected[0].ranges[0].events[0].fixed: expected a string, got number",
        ),
        (
            {"id": "X-1", "modified": "t", "aliases": "CVE-1"},
            "aliases: expected an array, got string",
        ),
        ({"id": "", "modified": "t"}, "id: is empty"),
    ],
)
def test_schema_violations_name_the_field(doc: dict[str, object], reason: str) -> None:
    refusal = only_refusal(read_bytes(orjson.dumps(doc), "r.json"))
    assert refusal.where == "r.json"
    assert refusal.reason == f"invalid OSV record: {reason}"


def test_withdrawn_pysec(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("pypa-advisory-database/vulns/redis/PYSEC-2023-73.yaml"))
    assert rec.withdrawn
    assert advisory(rec).withdrawn == "2023-06-06T10:37:00Z"


def test_ghsa_in_advisory_database_layout(read_corpus: ReadFn) -> None:
    rel = (
        "aquasecurity-trivy-db/pkg/vulnsrc/ghsa/testdata/happy/ghsa/advisories/github-reviewed/"
        "2018/10/GHSA-xx65-cc7g-9pfp/GHSA-xx65-cc7g-9pfp.json"
    )
    rec = only_record(read_corpus(rel))
    assert (rec.upstream_id, rec.format) == ("GHSA-xx65-cc7g-9pfp", "ghsa")
    adv = advisory(rec)
    assert adv.aliases == ("CVE-2018-1196",)
    (pkg,) = adv.affected
    assert (pkg.purl_type, pkg.name) == ("maven", "org.springframework.boot:spring-boot")
    assert pkg.purl == "pkg:maven/org.springframework.boot/spring-boot"


def test_invalid_purl_is_dropped_not_fatal(read_corpus: ReadFn) -> None:
    rel = f"{TRIVY_DB_OSV}/PYSEC-2018-27.json"
    adv = advisory(only_record(read_corpus(rel)))
    (pkg,) = adv.affected  # the file's purl is "pkg:pypi:qutebrowser"
    assert (pkg.purl_type, pkg.name, pkg.purl) == ("pypi", "qutebrowser", None)


def test_future_withdrawn_date_still_marks_withdrawn(read_corpus: ReadFn) -> None:
    # Readers never read the clock: the date is kept for consumers with an as-of time.
    rel = f"{TRIVY_DB_OSV}/withdrawn_after_now.json"
    rec = only_record(read_corpus(rel))
    assert rec.withdrawn and advisory(rec).withdrawn == "3001-06-06T10:37:00Z"


@pytest.mark.parametrize(
    ("ecosystem", "purl", "expected"),
    [
        ("Debian:12", None, "deb"),
        ("Alpine:v3.18", None, "apk"),
        ("Rocky Linux:9", None, "rpm"),
        ("crates.io", None, "cargo"),
        ("Packagist", None, "composer"),
        ("SwiftURL", None, "swift"),
        ("Some New Eco", "pkg:generic/a", "generic"),
        ("Some New Eco", None, "some-new-eco"),
    ],
)
def test_ecosystem_purl_types(ecosystem: str, purl: str | None, expected: str) -> None:
    assert purl_type_for_ecosystem(ecosystem, purl) == expected


def test_reading_is_deterministic(read_corpus: ReadFn) -> None:
    rel = (
        "google-osv-scalibr/guidedremediation/internal/strategy/override/testdata/"
        "zeppelin-server/vulnerabilities.json"
    )
    assert read_corpus(rel) == read_corpus(rel)


@pytest.mark.slow
def test_all_osv_advisories_parse_fast(corpora: Path) -> None:
    files = [
        *sorted((corpora / "pypa-advisory-database/vulns").rglob("*.yaml")),
        *sorted((corpora / "golang-vulndb/data/osv").glob("*.json")),
        *sorted((corpora / "rustsec-advisory-db-osv/crates").glob("*.json")),
        corpora / "google-osv-scanner/internal/remediation/testdata/santatracker/vulns.json",
        *sorted((corpora / "google-osv-scalibr").rglob("vulnerabilities.json")),
    ]
    start = time.perf_counter()
    records = refused = 0
    for path in files:
        for outcome in read_bytes(path.read_bytes(), str(path)):
            if isinstance(outcome, ParsedRecord):
                records += 1
            else:
                refused += 1
    elapsed = time.perf_counter() - start
    print(f"\n{records} OSV records from {len(files)} files in {elapsed:.2f}s")
    assert (records, refused) == (2661 + 4291 + 1206 + 170 + 364, 0)
    assert elapsed < 60, "OSV parsing should take seconds, not minutes"
