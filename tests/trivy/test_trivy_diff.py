"""Issue 14: every vulnerability our matcher finds, the real Trivy finds with our trivy.db.

The differential harness (support/trivy_diff.py; the whole sweep is ``scripts/trivy-diff``) runs
here on a fixed sample: 12 packages per ecosystem, chosen by a hash of the name, plus the
packages of the issue's examples. The four examples are also checked on their own, in the lock
files the issue names them in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from export_center.trivy import mapping
from export_center.trivy.dbwriter import write_trivy_db
from support import trivy_diff
from support.osv import corpus_advisories
from support.trivy_run import install_db, trivy_scan

pytestmark = pytest.mark.slow  # the real Trivy over a few thousand components

EXAMPLES = [
    ("go", "golang.org/x/crypto"),
    ("pip", "paramiko"),
    ("pip", "joblib"),
    ("pip", "oslo-utils"),
]


def test_sample_agrees_with_real_trivy(corpora: Path, trivy_bin: Path, tmp_path: Path) -> None:
    result = trivy_diff.run(corpora, trivy_bin, tmp_path, sample=12, always=EXAMPLES)
    print(f"\n{result.to_json()}")
    assert result.unexplained == []
    # Trivy could read every clause we wrote, and every pinned version but the ones a
    # documented exception explains.
    assert result.trivy_warnings == []
    assert set(result.packages) == {"pip", "go", "cargo", "npm", "maven"}
    for eco in result.packages:
        assert result.agreed[eco] > 0, eco
        assert result.ours[eco] >= result.agreed[eco] and result.trivy[eco] >= result.agreed[eco]
    differences = (
        sum(result.ours.values()) + sum(result.trivy.values()) - 2 * sum(result.agreed.values())
    )
    assert differences == sum(result.explained.values())
    assert set(k.split(" ")[0] for k in result.explained) <= set(trivy_diff.EXCEPTIONS)


def test_the_differential_check_sees_a_broken_mapping(
    corpora: Path, trivy_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flaw of item 1, put back: an unfixed range written as ">=0", which Go's comparer ranks
    # above pseudo-versions. The check must report the findings Trivy then misses.
    real = mapping.vulnerable_versions

    def old_mapping(affected: Any, eco: mapping.TrivyEcosystem) -> tuple[list[str], list[str]]:
        clauses, dropped = real(affected, eco)
        return ([">=0"] if clauses == [""] else clauses), dropped

    monkeypatch.setattr(mapping, "vulnerable_versions", old_mapping)
    # The mapping remembers results by content: forget those of the real function (and, after
    # the check, those of the broken one).
    mapping._VULNERABLE_BY_CONTENT.clear()
    try:
        result = trivy_diff.run(corpora, trivy_bin, tmp_path, sample=0, always=[EXAMPLES[0]])
    finally:
        mapping._VULNERABLE_BY_CONTENT.clear()
    missed = {
        (u["version"], u["vulnerability"])
        for u in result.unexplained
        if u["side"] == "missing in trivy"
    }
    assert ("v0.0.0-20200101000000-abcdefabcdef", "GO-2026-5932") in missed


def test_the_issue_examples_are_found_by_real_trivy(
    corpora: Path, trivy_bin: Path, tmp_path: Path
) -> None:
    advisories = [
        (feed, adv)
        for feed, adv in corpus_advisories(corpora)
        if any(
            p.name in ("golang.org/x/crypto", "paramiko", "joblib", "oslo-utils")
            for p in adv.affected
        )
    ]
    cache = tmp_path / "cache"
    (cache / "db").mkdir(parents=True)
    write_trivy_db(advisories, cache / "db" / "trivy.db")
    install_db(cache, cache / "db" / "trivy.db")
    repo = tmp_path / "repo"
    (repo / "py").mkdir(parents=True)
    (repo / "go").mkdir()
    # Real spellings: OpenStack's upper-constraints.txt pins oslo.utils with its dot.
    (repo / "py" / "requirements.txt").write_text(
        "paramiko==2.4.0\njoblib==0.13.2\noslo.utils==3.35.1\n"
    )
    (repo / "go" / "go.mod").write_text(
        "module example.com/app\n\ngo 1.22\n\n"
        "require golang.org/x/crypto v0.0.0-20200510223506-06a226fb4e37\n"
    )
    report, log = trivy_scan(trivy_bin, cache, repo)
    found = {
        (v["PkgName"], v["InstalledVersion"], v["VulnerabilityID"])
        for r in report.get("Results") or []
        for v in r.get("Vulnerabilities") or []
    }
    assert {
        ("golang.org/x/crypto", "v0.0.0-20200510223506-06a226fb4e37", "GO-2026-5932"),
        ("paramiko", "2.4.0", "CVE-2022-24302"),
        ("joblib", "0.13.2", "CVE-2022-21797"),
        ("oslo.utils", "3.35.1", "CVE-2022-0718"),
    } <= found
    assert "Version matching error" not in log
