"""Every .json/.yaml/.yml file of the advisory, VEX and SBOM corpora through detect + read.

Nothing may raise except a refusal; evidence documents must be accepted; what is refused must be
refused for an expected reason (non-evidence files such as package.json and schemas as "unknown
format"); the sources' own index files (VEX repository index.json and manifest.json, a CSAF ROLIE
feed, Node.js security-wg index.json) are skipped with the reason. Counts per folder are printed
(pytest -s).
"""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest

from export_center.ingest.interface import RecordRefused, Skipped
from export_center.model import ParsedRecord
from support.ingest import read_bytes

SUFFIXES = (".json", ".yaml", ".yml")

# folder → exact (refused, skipped) counts expected (refusals are also checked against REASONS,
# skips against SKIP_REASONS below).
FOLDERS: dict[str, tuple[int, int]] = {
    # advisories
    "pypa-advisory-database": (0, 0),
    "golang-vulndb": (0, 0),
    "rustsec-advisory-db-osv": (0, 0),
    "google-osv-scanner": (2, 0),  # package.json, package-lock.json
    "google-osv-scalibr": (0, 0),
    "aquasecurity-trivy-db": (24, 0),  # DB fixtures, podspecs, GLAD, node core, 5 "sad" malformed
    # 171 core, 6 deps, 8 npm ranges OSV cannot express; the 3 index.json skipped
    "nodejs-security-wg": (185, 3),
    # VEX and CSAF
    "aquasecurity-vexhub": (0, 59),  # index.json, vex-repository.json, 57 manifest.json: skipped
    # lock files, DB fixtures, unknown.json; the VEX-repository layouts' own files skipped
    "aquasecurity-trivy": (55, 7),
    "ctrliq-advisories": (1, 0),  # mapping/cpe-product-keys.json
    "cisagov-csaf": (0, 1),  # the ROLIE feed: skipped
    "oasis-tcs-csaf": (0, 0),
    "openvex-vexctl": (1, 0),  # test.vex.json: statements without products
    "openvex-spec": (1, 0),  # the JSON schema
    "cyclonedx-bom-examples": (1, 0),  # VEX Use-Case 7: no affects[]
    # SBOMs
    "chainguard-bom-shelter": (3, 0),  # two fake "-cdx" files, malformed powershell-2.2.6
    "real-lockfiles": (2, 0),
}

SKIP_REASONS = (
    "VEX repository index (index.json",
    "VEX repository manifest (manifest.json",
    "VEX repository description (vex-repository.json)",
    "CSAF ROLIE feed",
    "Node.js security-wg index",
)

REASONS = (
    "unknown format: ",
    "malformed JSON at line ",
    "Node.js security-wg core/dependency records",
    "invalid Node.js security-wg record: vulnerable_versions: ",
    "invalid OpenVEX document: statements[0].products: missing",
    "invalid CycloneDX document: vulnerabilities: a VEX BOM (no components)",
)

MALFORMED = {
    "chainguard-bom-shelter/in-the-wild/spdx/powershell-2.2.6.spdx.json",
    *(
        f"aquasecurity-trivy-db/pkg/vulnsrc/{p}"
        for p in (
            "ghsa/testdata/sad/ghsa/advisories/github-reviewed/composer/contao/core-bundle/GHSA-wjx8-cgrm-hh8p.json",
            "glad/testdata/sad/vuln-list/glad/conan/gsoap/CVE-2020-13574.json",
            "govulndb/testdata/sad/govulndb/data/osv/GO-2024-2730.json",
            "node/testdata/sad/nodejs-security-wg/vuln/invalidvuln.json",
            "osv/testdata/sad/vuln-list/osv/python/PYSEC-2005-1.json",
        )
    ),
}


def _sweep(
    corpora: Path, folder: str
) -> tuple[Counter[str], list[RecordRefused], list[str], list[Skipped]]:
    accepted: Counter[str] = Counter()
    refused: list[RecordRefused] = []
    skipped: list[Skipped] = []
    crashes: list[str] = []
    for path in sorted((corpora / folder).rglob("*")):
        if not path.is_file() or not path.name.lower().endswith(SUFFIXES):
            continue
        rel = str(path.relative_to(corpora))
        try:
            for outcome in read_bytes(path.read_bytes(), rel):
                if isinstance(outcome, ParsedRecord):
                    accepted[f"{outcome.format}/{outcome.doc_type}"] += 1
                elif isinstance(outcome, Skipped):
                    skipped.append(outcome)
                else:
                    refused.append(outcome)
        except Exception:  # collected and asserted below: any escape is a reader bug
            crashes.append(f"{rel}: {traceback.format_exc(limit=3)}")
    return accepted, refused, crashes, skipped


@pytest.mark.slow
@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_corpus_folder(corpora: Path, folder: str) -> None:
    accepted, refused, crashes, skipped = _sweep(corpora, folder)
    total = sum(accepted.values())
    print(f"\n{folder}: accepted {total} {dict(sorted(accepted.items()))}, refused {len(refused)}")
    for r in refused:
        print(f"  refused {r.where}: {r.reason[:160]}")
    assert not crashes, "\n".join(crashes)
    unexpected = [r for r in refused if not r.reason.startswith(REASONS)]
    assert not unexpected, unexpected
    for r in refused:
        if r.reason.startswith("malformed JSON"):
            assert r.where in MALFORMED, r
    assert [s for s in skipped if not s.reason.startswith(SKIP_REASONS)] == []
    assert (len(refused), len(skipped)) == FOLDERS[folder]


@pytest.mark.slow
@pytest.mark.slow
def test_accepted_counts(corpora: Path) -> None:
    """Every evidence document of the corpora is accepted (numbers from SOURCES.md/NOTES.md)."""
    expected = {
        "pypa-advisory-database": {"osv/advisory": 2661},
        "golang-vulndb": {"osv/advisory": 4291},
        "rustsec-advisory-db-osv": {"osv/advisory": 1206},
        "google-osv-scanner": {"ghsa/advisory": 160, "osv/advisory": 10},
        "google-osv-scalibr": {"ghsa/advisory": 364},
        "aquasecurity-vexhub": {"openvex/vex": 59},
        "ctrliq-advisories": {"csaf/vex": 221},
        "cisagov-csaf": {"csaf/vex": 4, "csaf/advisory": 32},
        "oasis-tcs-csaf": {"csaf/vex": 13, "csaf/advisory": 6},
    }
    for folder, counts in expected.items():
        accepted, _, _, _ = _sweep(corpora, folder)
        assert dict(accepted) == counts, folder
