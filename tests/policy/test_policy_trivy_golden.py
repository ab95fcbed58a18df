"""Cross-check with a real scanner: Trivy's golden results for its own fixtures.

Trivy made its goldens with a tiny fixture DB (integration/testdata/fixtures/db/*.yaml), so the
comparison is restricted to what the corpora hold: every (package, version, vulnerability) of a
golden for which the corpora have an advisory on that package must be among our findings (before
VEX). Each golden finding the corpora cannot produce is listed below with the reason, and
docs/policy.md explains the differences. For Trivy's SBOM fixtures (CycloneDX and SPDX) we also
check the other direction: we report nothing Trivy did not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from export_center.model import Component, Sbom
from export_center.policy.document import default_policy
from export_center.policy.evaluate import evaluate
from export_center.policy.matching import AdvisoryIndex, match_component
from export_center.policy.purls import parse_purl
from support.policy import AS_OF, one_sbom, sbom

TESTDATA = "aquasecurity-trivy/integration/testdata"

#: SBOM fixture -> the golden Trivy's SBOM integration test compares it with.
SBOM_FIXTURES = {
    "fixtures/sbom/centos-7-cyclonedx.json": "centos-7.json.golden",
    "fixtures/sbom/centos-7-spdx.json": "centos-7.json.golden",
    "fixtures/sbom/fluentd-multiple-lockfiles-cyclonedx.json": (
        "fluentd-multiple-lockfiles.json.golden"
    ),
    "fixtures/sbom/minikube-kbom.json": "minikube-kbom.json.golden",
    "fixtures/sbom/license-cyclonedx.json": "license-cyclonedx.json.golden",
}

_NO_FEED = "the corpora hold no advisory feed for this ecosystem"
#: Golden findings the corpora cannot produce: (package purl without version, vulnerability).
NOT_IN_CORPORA: dict[tuple[str, str], str] = {
    ("pkg:rpm/centos/bash", "CVE-2019-18276"): _NO_FEED + " (Red Hat/CentOS OVAL)",
    ("pkg:rpm/centos/openssl-libs", "CVE-2019-1559"): _NO_FEED + " (Red Hat/CentOS OVAL)",
    ("pkg:rpm/centos/openssl-libs", "CVE-2018-0734"): _NO_FEED + " (Red Hat/CentOS OVAL)",
    ("pkg:deb/debian/bash", "CVE-2019-18276"): _NO_FEED + " (Debian security tracker)",
    ("pkg:deb/debian/libidn2-0", "CVE-2019-18224"): _NO_FEED + " (Debian security tracker)",
    ("pkg:cocoapods/_NIODataStructures", "CVE-2022-3215"): _NO_FEED + " (CocoaPods)",
    ("pkg:swift/github.com/apple/swift-nio", "CVE-2022-3215"): _NO_FEED + " (SwiftURL)",
    ("pkg:composer/guzzlehttp/psr7", "CVE-2022-24775"): _NO_FEED + " (Packagist)",
    ("pkg:conan/pcre", "CVE-2020-14155"): _NO_FEED + " (Conan)",
    ("pkg:hex/phoenix", "CVE-2022-42975"): _NO_FEED + " (Hex)",
    ("pkg:pub/http", "CVE-2020-35669"): _NO_FEED + " (Pub)",
    ("pkg:k8s/k8s.io%2Fkubelet", "CVE-2023-2431"): _NO_FEED + " (Kubernetes)",
    ("pkg:nuget/Newtonsoft.Json", "GHSA-5crp-9r3c-p9vr"): (
        "NuGet is covered only as a secondary ecosystem of the npm/Maven GHSA sets"
    ),
    ("pkg:gem/activesupport", "CVE-2020-8165"): (
        "RubyGems is covered only as a secondary ecosystem of the npm/Maven GHSA sets"
    ),
    ("pkg:maven/org.springframework/spring-beans", "CVE-2022-22965"): (
        "the Maven GHSA set is tied to the zeppelin/maven-classifier lock files"
    ),
    ("pkg:golang/github.com/docker/distribution", "GMS-2022-20"): (
        "a GitLab advisory id; the corpora hold the same vulnerability as GO-2022-0379 "
        "(alias GHSA-qq97-vm5h-rrhg, fixed in v2.8.0), which we report instead"
    ),
}

#: Held findings whose fixed versions differ from the golden's, and why.
FIXED_VERSION_DIFFERENCES = {
    ("pkg:golang/github.com/open-policy-agent/opa", "CVE-2022-23628"): (
        "golang-vulndb's GO-2022-0316 says 0.37.2, the fixture DB's GHSA said 0.37.0"
    ),
    ("pkg:cargo/ammonia", "CVE-2019-15542"): "Trivy prints RustSec's '>= 2.1.0' syntax",
    ("pkg:cargo/ammonia", "CVE-2021-38193"): "Trivy prints RustSec's '>= 3.1.0, …' syntax",
}


def _package(purl: str) -> str:
    p = parse_purl(purl)
    assert p is not None, purl
    return purl.split("@", 1)[0]


def _golden_rows(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_bytes())
    return [v for r in doc.get("Results") or [] for v in r.get("Vulnerabilities") or []]


def _held(index: AdvisoryIndex, purl: str, vuln: str) -> bool:
    p = parse_purl(purl)
    assert p is not None
    return any(vuln in (e.advisory.id, *e.advisory.aliases) for e in index.candidates(p.key))


def _findings(index: AdvisoryIndex, bom: Sbom) -> dict[tuple[str, str], tuple[str, ...]]:
    """(package purl, every id of the vulnerability) -> fixed versions."""
    ev = evaluate([bom], index, [], default_policy(), AS_OF)
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for f in ev.findings:
        for vid in (f.vulnerability_id, *f.aliases):
            out[(_package(f.purl), vid)] = f.fixed_versions
    return out


def _goldens(corpora: Path) -> list[Path]:
    return sorted((corpora / TESTDATA).glob("*.json.golden"))


def test_every_held_golden_finding_is_ours(corpora: Path, corpus_index: AdvisoryIndex) -> None:
    held_checked = 0
    unexplained: list[str] = []
    seen_not_held: set[tuple[str, str]] = set()
    for golden in _goldens(corpora):
        rows = [r for r in _golden_rows(golden) if r.get("PkgIdentifier", {}).get("PURL")]
        if not rows:
            continue
        # The components Trivy found vulnerable, as an SBOM (purl + installed version).
        bom = sbom(golden.name, sorted({r["PkgIdentifier"]["PURL"] for r in rows}))
        ours = _findings(corpus_index, bom)
        for r in rows:
            purl, vuln = r["PkgIdentifier"]["PURL"], r["VulnerabilityID"]
            key = (_package(purl), vuln)
            if not _held(corpus_index, purl, vuln):
                seen_not_held.add(key)
                if key not in NOT_IN_CORPORA:
                    unexplained.append(f"{golden.name}: {purl} {vuln} (not in corpora)")
                continue
            held_checked += 1
            if key not in ours:
                unexplained.append(f"{golden.name}: {purl} {vuln} held but not found")
                continue
            golden_fixed = [v.strip() for v in (r.get("FixedVersion") or "").split(",") if v]
            if key not in FIXED_VERSION_DIFFERENCES:
                assert set(golden_fixed) <= {v.lstrip("v") for v in ours[key]} | set(ours[key]), (
                    golden.name,
                    key,
                    golden_fixed,
                    ours[key],
                )
    assert unexplained == []
    assert seen_not_held == set(NOT_IN_CORPORA)  # the table lists nothing stale
    # 28 golden rows are held: PyPI werkzeug (11), npm jquery/lodash (6), Maven jackson-databind
    # (6), Go x/text and opa (5... counted per golden), Cargo ammonia (2).
    assert held_checked == 28


def test_docker_distribution_is_reported_under_its_go_and_ghsa_ids(
    corpus_index: AdvisoryIndex,
) -> None:
    purl = "pkg:golang/github.com/docker/distribution@v2.7.1%2Bincompatible"
    matches, _ = match_component(corpus_index, Component("distribution", purl=purl))
    (m,) = [m for m in matches if "GO-2022-0379" in m.advisory_ids]
    assert m.vulnerability_id == "GHSA-qq97-vm5h-rrhg"
    assert m.fixed_versions == ("2.8.0+incompatible",)


@pytest.mark.parametrize("fixture", sorted(SBOM_FIXTURES))
def test_trivy_sbom_fixtures_match_exactly_where_the_corpora_hold_advisories(
    corpora: Path, corpus_index: AdvisoryIndex, fixture: str
) -> None:
    """Real CycloneDX/SPDX SBOMs read with our ingest readers: our findings (before VEX) equal
    the golden's findings restricted to what the corpora hold, in both directions."""
    bom = one_sbom(corpora / TESTDATA / fixture)
    golden = _golden_rows(corpora / TESTDATA / SBOM_FIXTURES[fixture])
    expected = {
        (_package(r["PkgIdentifier"]["PURL"]), r["VulnerabilityID"])
        for r in golden
        if _held(corpus_index, r["PkgIdentifier"]["PURL"], r["VulnerabilityID"])
    }
    ev = evaluate([bom], corpus_index, [], default_policy(), AS_OF)
    ours = {(_package(f.purl), f.vulnerability_id) for f in ev.findings}
    assert ours == expected
    # Every golden package is in our SBOM view of the fixture (the readers lose nothing).
    keys = {_key(c.purl) for c in bom.components if c.purl}
    assert {_key(r["PkgIdentifier"]["PURL"]) for r in golden} <= keys


def _key(purl: str) -> tuple[str, str]:
    p = parse_purl(purl)
    assert p is not None, purl
    return p.key
