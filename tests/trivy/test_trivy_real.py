"""The real Trivy reads the databases we write.

A trivy.db built from the real PyPA, Go, RustSec and osv.dev (npm, Maven) advisories of the
shared corpora (read with the project's own OSV ingester) is installed in a Trivy cache and
scanned, fully offline, against Trivy's own integration fixtures; every finding of the matching
``*.json.golden`` report that the corpora have an advisory for must be reported. Trivy runs in
an empty network namespace when the machine allows it, so an attempt to reach the network
fails the scan instead of passing silently.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from export_center.model import Advisory, AffectedPackage, Component, RangeEvent, VersionRange
from export_center.trivy.bbolt import BoltReader
from export_center.trivy.dbwriter import TrivyDbReport, metadata_json, write_trivy_db
from export_center.trivy.javadb import java_metadata_json, write_java_db
from export_center.trivy.mapping import DataSource
from support.bolt import GoCheck, digest
from support.osv import corpus_advisories
from support.trivy_run import trivy_scan

pytestmark = pytest.mark.slow  # whole-corpus, many subprocesses or real tools

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
TRIVY_TESTDATA = "aquasecurity-trivy/integration/testdata"
GOLDEN_FIXTURES = (
    "pip",
    "pipenv",
    "poetry",
    "uv",
    "pylock",
    "npm",
    "yarn",
    "pnpm",
    "pom",
    "gradle",
    "gomod",
)
# Golden findings the corpora cannot have, and why.
NOT_IN_CORPORA = {
    "GMS-": "GitLab Advisory Database ids: the corpora hold no GitLab (GLAD) records",
}
SOURCES = {
    "PyPA Advisory Database": DataSource(
        "pypa", "PyPA Advisory Database", "https://github.com/pypa/advisory-database"
    ),
}


@dataclass(frozen=True)
class Cache:
    path: Path
    report: TrivyDbReport
    vulnerability_ids: frozenset[str]


def install(cache: Path, db: Path | None = None, java_db: Path | None = None) -> None:
    """Lay out a Trivy cache directory (CACHE/db, CACHE/java-db) with fresh metadata."""
    if db is not None:
        (cache / "db").mkdir(parents=True, exist_ok=True)
        if db != cache / "db" / "trivy.db":
            shutil.copyfile(db, cache / "db" / "trivy.db")
        (cache / "db" / "metadata.json").write_bytes(metadata_json(AS_OF, timedelta(days=1)))
    if java_db is not None:
        (cache / "java-db").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(java_db, cache / "java-db" / "trivy-java.db")
        (cache / "java-db" / "metadata.json").write_bytes(
            java_metadata_json(AS_OF, timedelta(days=1))
        )


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Cache:
    cache = tmp_path_factory.mktemp("trivy-cache")
    (cache / "db").mkdir()
    db = cache / "db" / "trivy.db"
    report = write_trivy_db(corpus_advisories(corpora), db, sources=SOURCES)
    install(cache, db)
    with BoltReader(db) as reader:
        vulns = reader.bucket(b"vulnerability")
        assert vulns is not None
        ids = frozenset(k.decode() for k, _value in vulns.items())
    return Cache(cache, report, ids)


def run_trivy(trivy: Path, cache: Path, target: Path, mode: str = "fs") -> dict[str, Any]:
    """The spec's fully offline command (support.trivy_run); returns the JSON report."""
    report, _log = trivy_scan(trivy, cache, target, mode=mode)
    return report


def findings(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (v["VulnerabilityID"], v["PkgName"], v["InstalledVersion"])
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
    }


def test_corpus_db_passes_bbolt_check(corpus_cache: Cache, gocheck: GoCheck) -> None:
    report = corpus_cache.report
    print(f"\ncorpus trivy.db: {report}")
    assert report.advisories > 8000
    assert ("withdrawn advisory", 40) in report.skipped
    db = corpus_cache.path / "db" / "trivy.db"
    checked = gocheck(db)
    assert checked["digest"] == digest(db)
    assert checked["roots"]["vulnerability"]["keys"] == report.vulnerabilities
    assert {"pip::PyPA Advisory Database", "go::Go Vulnerability Database"} <= set(report.buckets)


@pytest.mark.parametrize("fixture", GOLDEN_FIXTURES)
def test_golden_findings_are_reported(
    fixture: str, corpora: Path, corpus_cache: Cache, trivy_bin: Path
) -> None:
    testdata = corpora / TRIVY_TESTDATA
    golden = json.loads((testdata / f"{fixture}.json.golden").read_text())
    expected = findings(golden)
    assert expected, f"{fixture}.json.golden lists no vulnerability"
    got = findings(run_trivy(trivy_bin, corpus_cache.path, testdata / "fixtures/repo" / fixture))
    checked: set[tuple[str, str, str]] = set()
    left_out: dict[tuple[str, str, str], str] = {}
    for finding in expected:
        reason = next((r for p, r in NOT_IN_CORPORA.items() if finding[0].startswith(p)), None)
        if reason is None and finding[0] not in corpus_cache.vulnerability_ids:
            reason = "no advisory for this id in the corpora"
        if reason is not None:
            left_out[finding] = reason
        else:
            checked.add(finding)
    print(f"\n{fixture}: {len(checked)} golden findings checked, left out: {left_out}")
    assert checked, f"{fixture}: no golden finding could be checked"
    assert checked <= got, f"{fixture}: missing {sorted(checked - got)}"
    # Only GitLab ids are expected to be missing from the corpora.
    assert all(r == NOT_IN_CORPORA["GMS-"] for r in left_out.values()), left_out


def test_the_findings_named_in_the_corpora_notes(corpus_cache: Cache) -> None:
    # NOTES.md: these golden findings match advisories of the corpora.
    assert {
        "CVE-2019-14806",
        "CVE-2020-28724",
        "CVE-2019-11358",
        "CVE-2020-9548",
        "CVE-2021-20190",
    } <= corpus_cache.vulnerability_ids


def test_severity_and_vendor_ids_reach_the_report(
    corpora: Path, corpus_cache: Cache, trivy_bin: Path
) -> None:
    report = run_trivy(trivy_bin, corpus_cache.path, corpora / TRIVY_TESTDATA / "fixtures/repo/pip")
    by_id = {v["VulnerabilityID"]: v for r in report["Results"] for v in r["Vulnerabilities"]}
    werkzeug = by_id["CVE-2019-14806"]
    assert werkzeug["VendorIDs"] == ["GHSA-gq9m-qvpx-68hc", "PYSEC-2019-140"]
    assert werkzeug["FixedVersion"] == "0.15.3"
    assert werkzeug["DataSource"] == {
        "ID": "pypa",
        "Name": "PyPA Advisory Database",
        "URL": "https://github.com/pypa/advisory-database",
    }
    # PYSEC-2023-221 carries a CVSS v3 vector: its score decides the severity.
    assert by_id["CVE-2023-46136"]["Severity"] == "HIGH"
    assert by_id["CVE-2023-46136"]["SeveritySource"] == "pypa"


def _range(*events: tuple[str, str]) -> tuple[VersionRange, ...]:
    return (VersionRange("ECOSYSTEM", tuple(RangeEvent(k, v) for k, v in events)),)


def test_versions_outside_every_range_give_no_finding(tmp_path: Path, trivy_bin: Path) -> None:
    def adv(aid: str, name: str, ranges: tuple[VersionRange, ...], **kw: Any) -> Advisory:
        return Advisory(aid, affected=(AffectedPackage("pypi", name, "PyPI", ranges=ranges, **kw),))

    advisories = [
        adv("SYN-1", "Range_Pkg", _range(("introduced", "1.0"), ("fixed", "1.5"))),
        adv("SYN-2", "last-pkg", _range(("introduced", "1.6"), ("last_affected", "1.7"))),
        adv(
            "SYN-3",
            "listed-pkg",
            (VersionRange("GIT", (RangeEvent("introduced", "abc123"),)),),
            versions=("3.3",),
        ),
        Advisory(
            "SYN-4",
            withdrawn="2024-01-01T00:00:00Z",
            affected=(
                AffectedPackage("pypi", "gone-pkg", "PyPI", ranges=_range(("introduced", "0"))),
            ),
        ),
    ]
    write_trivy_db([("Synthetic", a) for a in advisories], tmp_path / "trivy.db")
    install(tmp_path / "cache", tmp_path / "trivy.db")
    pins = {
        "range-pkg": {"0.9": False, "1.0": True, "1.2": True, "1.5": False, "2.0": False},
        "last-pkg": {"1.5": False, "1.7": True, "1.7.1": False},
        "listed-pkg": {"3.3": True, "3.4": False},
        "gone-pkg": {"1.0": False},
    }
    expected: set[tuple[str, str, str]] = set()
    for name, versions in pins.items():
        for version, vulnerable in versions.items():
            # One directory per pin: a requirements file holds one version of a package.
            target = tmp_path / "repo" / f"{name}-{version}"
            target.mkdir(parents=True)
            spelled = "Range_Pkg" if name == "range-pkg" else name  # Trivy normalizes too
            (target / "requirements.txt").write_text(f"{spelled}=={version}\n")
            if vulnerable:
                aid = {"range-pkg": "SYN-1", "last-pkg": "SYN-2", "listed-pkg": "SYN-3"}[name]
                expected.add((aid, spelled, version))
    got = findings(run_trivy(trivy_bin, tmp_path / "cache", tmp_path / "repo"))
    assert got == expected


def test_java_db_resolves_a_jar_by_sha1(
    tmp_path: Path, corpus_cache: Cache, trivy_bin: Path
) -> None:
    # A JAR without pom.properties: only the Java DB's SHA-1 index can name it, and the
    # resulting GAV must then match the maven:: advisories of trivy.db.
    root = tmp_path / "rootfs"
    (root / "app").mkdir(parents=True)
    jar = root / "app" / "mystery.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr(zipfile.ZipInfo("com/example/Main.class", (2020, 1, 1, 0, 0, 0)), b"\xca\xfe")
    sha1 = hashlib.sha1(jar.read_bytes(), usedforsecurity=False).hexdigest()
    gav = "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.1"
    report = write_java_db(
        [Component(name="jackson-databind", purl=gav, hashes=(("sha1", sha1),))],
        tmp_path / "trivy-java.db",
    )
    assert report.indices == 1
    cache = tmp_path / "cache"
    install(cache, corpus_cache.path / "db" / "trivy.db", tmp_path / "trivy-java.db")
    got = findings(run_trivy(trivy_bin, cache, root, mode="rootfs"))
    databind = "com.fasterxml.jackson.core:jackson-databind"
    assert ("CVE-2020-9548", databind, "2.9.1") in got
    assert {name for _id, name, _v in got} == {databind}
