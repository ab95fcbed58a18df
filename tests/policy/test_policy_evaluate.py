"""Evaluation: policy decisions, the overlay files, and byte-identical determinism."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from export_center.model import (
    Advisory,
    AffectedPackage,
    Component,
    RangeEvent,
    Sbom,
    Severity,
    VersionRange,
    VexStatement,
)
from export_center.policy.document import Policy, PolicyDocument, default_policy
from export_center.policy.evaluate import (
    CONSENSUS_PATH,
    EVALUATIONS_PATH,
    SNAPSHOT_PATH,
    AsOf,
    evaluate,
    render,
)
from export_center.policy.matching import AdvisoryIndex
from support.policy import AS_OF, sbom, statements

CRIT = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MED = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"  # 6.1


def adv(aid: str, name: str, vector: str | None, *aliases: str) -> Advisory:
    return Advisory(
        id=aid,
        aliases=aliases,
        affected=(
            AffectedPackage(
                "npm",
                name,
                "npm",
                ranges=(
                    VersionRange(
                        "SEMVER", (RangeEvent("introduced", "0"), RangeEvent("fixed", "9.0.0"))
                    ),
                ),
            ),
        ),
        severities=(Severity("CVSS_V3", vector),) if vector else (),
    )


ADVISORIES = [
    adv("GHSA-crit", "a", CRIT, "CVE-2024-1000"),
    adv("GHSA-med", "b", MED, "CVE-2024-2000"),
    adv("GHSA-unknown", "c", None),
]
BOM = sbom("pkg:npm/app@1.0.0", ["pkg:npm/a@1.0.0", "pkg:npm/b@1.0.0", "pkg:npm/c@1.0.0"])


def policy(**fields: object) -> Policy:
    doc = {"apiVersion": "stella.policy/v1", "name": "t", "version": "1", **fields}
    return Policy.from_document(PolicyDocument.model_validate(doc))


def verdicts(
    pol: Policy, vex: list[VexStatement] | None = None, as_of: AsOf = AS_OF
) -> dict[str, tuple[str, str]]:
    ev = evaluate([BOM], ADVISORIES, vex or [], pol, as_of)
    return {f.vulnerability_id: (f.effective_status, f.verdict) for f in ev.findings}


def test_severity_thresholds() -> None:
    assert verdicts(default_policy()) == {
        "CVE-2024-1000": ("affected", "fail"),
        "CVE-2024-2000": ("affected", "warn"),
        "GHSA-unknown": ("affected", "warn"),
    }
    assert verdicts(
        policy(severityThresholds={"fail": None, "warn": "CRITICAL", "unknown": "fail"})
    ) == {
        "CVE-2024-1000": ("affected", "warn"),
        "CVE-2024-2000": ("affected", "pass"),
        "GHSA-unknown": ("affected", "fail"),
    }


def test_ignore_rules_expire_against_the_as_of_time_not_the_clock() -> None:
    rules = {
        "ignore": [
            {
                "vulnerability": "GHSA-crit",
                "reason": "accepted risk, TICKET-1",
                "expires": "2026-01-01",
            },
            {"purl": "pkg:npm/b@*", "reason": "b is test-only", "expires": "2025-12-31"},
        ]
    }
    pol = policy(**rules)
    # 2026-01-01: the first rule still applies (its expiry day included), the second expired.
    ev = evaluate([BOM], ADVISORIES, [], pol, AS_OF)
    by_id = {f.vulnerability_id: f for f in ev.findings}
    crit, med = by_id["CVE-2024-1000"], by_id["CVE-2024-2000"]
    assert (crit.effective_status, crit.verdict) == ("ignored", "pass")
    assert crit.reasons[0].message == "accepted risk, TICKET-1 (ignore rule until 2026-01-01)"
    assert (med.effective_status, med.verdict) == ("affected", "warn")
    assert [r.code for r in med.reasons] == ["ignore-expired", "severity"]
    later = AsOf(time=datetime(2026, 1, 2, tzinfo=UTC), tenant="t", seq=2)
    assert verdicts(pol, as_of=later)["CVE-2024-1000"] == ("affected", "fail")
    earlier = AsOf(time=datetime(2025, 6, 1, tzinfo=UTC), tenant="t", seq=1)
    assert verdicts(pol, as_of=earlier)["CVE-2024-2000"] == ("ignored", "pass")


def test_vex_affects_decides_which_statuses_suppress() -> None:
    vex = [
        VexStatement(
            "CVE-2024-1000",
            "pkg:npm/a@1.0.0",
            "not_affected",
            "vendor",
            justification="component_not_present",
        ),
        VexStatement("GHSA-med", "pkg:npm/app", "fixed", "vendor"),
        VexStatement("GHSA-unknown", "pkg:npm/c", "under_investigation", "vendor"),
    ]
    assert verdicts(default_policy(), vex) == {
        "CVE-2024-1000": ("not_affected", "pass"),
        "CVE-2024-2000": ("fixed", "pass"),
        "GHSA-unknown": ("under_investigation", "warn"),
    }
    ev = evaluate([BOM], ADVISORIES, vex, policy(vexAffects=["fixed"]), AS_OF)
    crit = next(f for f in ev.findings if f.vulnerability_id == "CVE-2024-1000")
    assert (crit.effective_status, crit.verdict) == ("affected", "fail")
    assert crit.reasons[0].code == "vex-not-accepted"


def test_finding_record_shape() -> None:
    vex = [
        VexStatement(
            "GHSA-crit",
            "pkg:npm/app",
            "not_affected",
            "vendor",
            justification="vulnerable_code_not_present",
        )
    ]
    out = render(evaluate([BOM], ADVISORIES, vex, default_policy(), AS_OF))
    first = json.loads(out.evaluations.splitlines()[0])
    assert first == {
        "advisoryIds": ["GHSA-crit"],
        "aliases": ["GHSA-crit"],
        "componentName": "a",
        "componentVersion": "1.0.0",
        "effectiveStatus": "not_affected",
        "fixedVersions": ["9.0.0"],
        "purl": "pkg:npm/a@1.0.0",
        "reasons": [
            {
                "code": "vex",
                "message": "VEX consensus not_affected (vulnerable_code_not_present) from vendor",
            }
        ],
        "severity": {
            "level": "CRITICAL",
            "score": 9.8,
            "source": "GHSA-crit",
            "type": "CVSS_V3",
            "vector": CRIT,
        },
        "subject": "pkg:npm/app@1.0.0",
        "verdict": "pass",
        "vex": {
            "conflict": False,
            "justification": "vulnerable_code_not_present",
            "provider": "vendor",
            "statements": 1,
            "status": "not_affected",
        },
        "vulnerabilityId": "CVE-2024-1000",
    }
    (consensus,) = out.vex_consensus.splitlines()
    c = json.loads(consensus)
    assert (c["subject"], c["purl"], c["vulnerabilityId"], c["status"]) == (
        "pkg:npm/app@1.0.0",
        "pkg:npm/a@1.0.0",
        "CVE-2024-1000",
        "not_affected",
    )
    assert [s["role"] for s in c["statements"]] == ["winner"]


def test_snapshot_names_policy_cursor_and_outputs() -> None:
    out = render(evaluate([BOM], ADVISORIES, [], default_policy(), AS_OF))
    snap = json.loads(out.snapshot)
    assert snap["policy"]["digest"] == default_policy().digest
    assert snap["policy"]["document"] == default_policy().document.canonical()
    assert snap["asOf"] == {"seq": 1, "tenant": "t", "time": "2026-01-01T00:00:00Z"}
    assert snap["outputs"][EVALUATIONS_PATH] == {
        "records": 3,
        "sha256": hashlib.sha256(out.evaluations).hexdigest(),
    }
    assert snap["outputs"][CONSENSUS_PATH]["records"] == 0
    assert snap["summary"]["verdicts"] == {"fail": 1, "pass": 0, "warn": 2}
    assert snap["summary"]["worstVerdict"] == "fail"
    assert [p for p, _ in out.files()] == [CONSENSUS_PATH, EVALUATIONS_PATH, SNAPSHOT_PATH]
    # RFC 8785: sorted keys, no whitespace.
    assert (
        out.snapshot
        == json.dumps(snap, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_duplicate_components_give_one_finding_and_skips_are_reported() -> None:
    twice = dataclasses.replace(
        BOM, components=(*BOM.components, BOM.components[0], Component("nameless"))
    )
    ev = evaluate([twice], ADVISORIES, [], default_policy(), AS_OF)
    assert len(ev.findings) == 3
    assert [(s.skip.component_name, s.skip.reason) for s in ev.skipped] == [
        ("nameless", "component has no purl")
    ]
    assert json.loads(render(ev).snapshot)["skipped"][0]["reason"] == "component has no purl"


# ---- determinism on real evidence ------------------------------------------------------------


@pytest.fixture(scope="module")
def real_inputs(corpora: Path) -> tuple[list[Sbom], list[VexStatement]]:
    vexhub = corpora / "aquasecurity-vexhub/pkg/golang/github.com"
    sts = statements(vexhub / "rancher/rancher/scan.openvex.json") + statements(
        vexhub / "longhorn/longhorn-manager/scan.openvex.json"
    )
    boms = []
    for subject in (
        "pkg:golang/github.com/rancher/rancher@v2.8.6-rc3",
        "pkg:golang/github.com/longhorn/longhorn-manager@v1.7.3",
    ):
        base = subject.split("@")[0]
        subs = sorted({c for s in sts if s.product.split("@")[0] == base for c in s.subcomponents})
        boms.append(sbom(subject, subs))
    boms.append(
        sbom(
            "pkg:pypi/flask-app@1.0",
            ["pkg:pypi/werkzeug@0.11", "pkg:npm/jquery@3.3.9", "pkg:pypi/Werkzeug@0.14"],
        )
    )
    return boms, sts


def _outputs(
    boms: list[Sbom], advisories: list[Advisory], sts: list[VexStatement]
) -> list[tuple[str, bytes]]:
    pol = policy(vexProviders={"trustOrder": ["Rancher Security team"]})
    index = AdvisoryIndex.build(advisories, as_of=AS_OF.time)
    return render(evaluate(boms, index, sts, pol, AS_OF)).files()


def test_byte_identical_twice_and_under_shuffled_input(
    real_inputs: tuple[list[Sbom], list[VexStatement]], corpus_advisories: list[Advisory]
) -> None:
    boms, sts = real_inputs
    first = _outputs(boms, corpus_advisories, sts)
    assert _outputs(boms, corpus_advisories, sts) == first
    evaluations = dict(first)[EVALUATIONS_PATH]
    assert evaluations.count(b"\n") > 500  # real work, not an empty file compared with itself
    assert dict(first)[CONSENSUS_PATH].count(b"\n") > 50

    rng = random.Random(1234)
    shuffled_advisories = corpus_advisories[:]
    rng.shuffle(shuffled_advisories)
    shuffled_sts = sts[:]
    rng.shuffle(shuffled_sts)
    shuffled_boms = [
        dataclasses.replace(b, components=tuple(rng.sample(b.components, len(b.components))))
        for b in reversed(boms)
    ]
    assert _outputs(shuffled_boms, shuffled_advisories, shuffled_sts) == first


def test_evaluation_lines_are_sorted(
    real_inputs: tuple[list[Sbom], list[VexStatement]], corpus_index: AdvisoryIndex
) -> None:
    boms, sts = real_inputs
    out = render(evaluate(boms, corpus_index, sts, default_policy(), AS_OF))
    keys = [
        (r["subject"].encode(), r["purl"].encode(), r["vulnerabilityId"].encode())
        for r in map(json.loads, out.evaluations.splitlines())
    ]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
