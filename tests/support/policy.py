"""Helpers for the policy tests: read corpus files with the real ingest readers, build SBOMs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from export_center.ingest.interface import RecordRefused, Skipped
from export_center.ingest.pipeline import InputDocument, discover, parse_records
from export_center.model import Advisory, Component, Normalized, Sbom, VexDocument, VexStatement
from export_center.policy.evaluate import AsOf

AS_OF = AsOf(time=datetime(2026, 1, 1, tzinfo=UTC), tenant="t", seq=1)

#: The advisory feeds of the corpora (NOTES.md §1); trivy-db's fixtures are left out on purpose:
#: they are made-up records for trivy-db's own unit tests.
ADVISORY_ROOTS = (
    "pypa-advisory-database/vulns",
    "golang-vulndb/data/osv",
    "rustsec-advisory-db-osv/crates",
    "google-osv-scanner/internal/remediation/testdata/santatracker/vulns.json",
    "google-osv-scalibr/guidedremediation/internal/strategy/override/testdata/zeppelin-server/vulnerabilities.json",
    "google-osv-scalibr/guidedremediation/internal/strategy/override/testdata/maven-classifier/vulnerabilities.json",
    "nodejs-security-wg/vuln/npm",
)


def read(path: Path) -> list[Normalized]:
    """The normalized records of one file; a refusal fails the test (these files are valid)."""
    out: list[Normalized] = []
    for rec in parse_records(InputDocument(str(path), path.read_bytes())):
        if isinstance(rec, RecordRefused):
            raise AssertionError(f"ingest refused {rec.where}: {rec.reason}")
        if not isinstance(rec, Skipped):  # a VEX repository's manifest.json, an index
            out.append(rec.normalized)
    return out


def read_advisories(corpora: Path) -> tuple[list[Advisory], int]:
    """Every advisory the corpora hold, and how many records the readers refused (the ingest
    tests own those; a handful of Node WG ranges cannot be expressed in OSV)."""
    advisories: list[Advisory] = []
    refused = 0
    for path in discover(corpora / root for root in ADVISORY_ROOTS):
        for rec in parse_records(InputDocument(str(path), path.read_bytes())):
            if isinstance(rec, RecordRefused):
                refused += 1
            elif isinstance(rec, Skipped):  # the Node.js security-wg index.json
                continue
            elif isinstance(rec.normalized, Advisory):
                advisories.append(rec.normalized)
    return advisories, refused


def statements(path: Path) -> list[VexStatement]:
    out: list[VexStatement] = []
    for n in read(path):
        if isinstance(n, VexDocument):
            out.extend(n.statements)
        elif isinstance(n, Sbom):
            out.extend(n.vex)
    return out


def one_sbom(path: Path) -> Sbom:
    (sbom,) = [n for n in read(path) if isinstance(n, Sbom)]
    return sbom


def sbom(subject: str, purls: list[str]) -> Sbom:
    """An SBOM written for a test: one component per purl."""
    return Sbom(
        subject=subject,
        format="cyclonedx",
        spec_version="1.5",
        name=subject,
        components=tuple(Component(name=p.split("/")[-1].split("@")[0], purl=p) for p in purls),
    )
