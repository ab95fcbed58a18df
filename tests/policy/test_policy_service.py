"""The store edge and ``stella findings``: real files ingested into a real (SQLite) store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from export_center.cli import main
from export_center.errors import BadInputError, ExitCode, NotFoundError
from export_center.ingest.pipeline import ingest_paths
from export_center.policy.document import default_policy
from export_center.policy.evaluate import CONSENSUS_PATH, EVALUATIONS_PATH, SNAPSHOT_PATH
from export_center.policy.service import evaluate_store, overlay_from_store, parse_sbom_file
from export_center.store.repository import EvidenceStore

ZEPPELIN = (
    "google-osv-scalibr/guidedremediation/internal/strategy/override/testdata/zeppelin-server/"
    "vulnerabilities.json"
)
EXAMPLE_APP = "pkg:maven/com.example/example-app@1.0.0?type=jar"
JACKSON = "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.10.0?type=jar"


def _ingest(store: EvidenceStore, paths: list[Path], source: str) -> None:
    report = ingest_paths(store, paths, source=source, tenant="acme", max_bytes=64 << 20)
    assert report.refused == [] and report.stored > 0


@pytest.fixture
def store(tmp_path: Path, corpora: Path) -> EvidenceStore:
    """Advisories and the example BOM first (seq 1..n), then the CycloneDX VEX (the last seq)."""
    s = EvidenceStore.open(f"sqlite:///{tmp_path / 'stella.db'}")
    _ingest(s, [corpora / ZEPPELIN, corpora / "pypa-advisory-database/vulns/werkzeug"], "osv")
    _ingest(s, [corpora / "cyclonedx-bom-examples/VEX/bom.json"], "sboms")
    _ingest(s, [corpora / "cyclonedx-bom-examples/VEX/vex.json"], "vendor-vex")
    return s


def _status(lines: bytes, purl: str, vuln: str) -> str:
    for rec in map(json.loads, lines.splitlines()):
        if rec["purl"] == purl and rec["vulnerabilityId"] == vuln:
            return str(rec["effectiveStatus"])
    raise AssertionError(f"no finding {purl} {vuln}")


def test_overlay_from_store_pins_the_as_of_cursor(store: EvidenceStore) -> None:
    newest = store.current_sequence("acme")
    out = overlay_from_store(store, "acme", newest, default_policy())
    files = dict(out.files())
    assert set(files) == {SNAPSHOT_PATH, EVALUATIONS_PATH, CONSENSUS_PATH}
    assert _status(files[EVALUATIONS_PATH], JACKSON, "CVE-2020-25649") == "not_affected"
    snap = json.loads(files[SNAPSHOT_PATH])
    assert snap["asOf"]["seq"] == newest and snap["asOf"]["tenant"] == "acme"
    assert snap["inputs"]["subjects"] == [EXAMPLE_APP]
    assert snap["inputs"]["vexStatements"] == 1
    # One sequence earlier the VEX document did not exist yet: the finding is affected.
    before = overlay_from_store(store, "acme", newest - 1, default_policy())
    assert _status(before.evaluations, JACKSON, "CVE-2020-25649") == "affected"
    assert before.vex_consensus == b""
    # Same cursor, same bytes.
    assert overlay_from_store(store, "acme", newest, default_policy()).files() == out.files()


def test_sbom_file_parsed_with_the_ingest_readers(store: EvidenceStore, corpora: Path) -> None:
    sboms = parse_sbom_file(
        (corpora / "cyclonedx-bom-examples/VEX/bom.json").read_bytes(), "bom.json"
    )
    ev = evaluate_store(store, "acme", default_policy(), sboms=sboms)
    assert {f.subject for f in ev.findings} == {EXAMPLE_APP}
    with pytest.raises(BadInputError, match=r"GO-2021-0113\.json: not an SBOM"):
        parse_sbom_file(
            (corpora / "golang-vulndb/data/osv/GO-2021-0113.json").read_bytes(),
            "GO-2021-0113.json",
        )
    with pytest.raises(BadInputError, match=r"x\.json: malformed JSON at line 1"):
        parse_sbom_file(b"not json", "x.json")


def test_unknown_subject_and_empty_tenant_fail_loudly(store: EvidenceStore) -> None:
    with pytest.raises(NotFoundError, match="no SBOM for subject pkg:npm/nope"):
        evaluate_store(store, "acme", default_policy(), subjects=["pkg:npm/nope"])
    with pytest.raises(NotFoundError, match="tenant 'other' has no evidence"):
        evaluate_store(store, "other", default_policy())
    with pytest.raises(NotFoundError, match="sequence 99999 does not exist"):
        evaluate_store(store, "acme", default_policy(), as_of_seq=99999)


# ---- stella findings -------------------------------------------------------------------------


@pytest.fixture
def app() -> typer.Typer:
    return main.app


def test_cli_findings_json_and_table(
    app: typer.Typer, store: EvidenceStore, tmp_path: Path, corpora: Path
) -> None:
    env = {
        "STELLA_DATA_DIR": str(tmp_path / "data"),
        "STELLA_CONFIG": "",
        "STELLA_DATABASE_URL": str(store.engine.url),
        "STELLA_DEFAULT_TENANT": "acme",
    }
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: stella.policy/v1\nname: ci\nversion: 2\n"
        "severityThresholds: {fail: CRITICAL, warn: HIGH}\n"
    )
    runner = CliRunner()
    result = runner.invoke(
        app, ["findings", EXAMPLE_APP, "--policy", str(policy), "--format", "json"], env=env
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["policy"]["name"] == "ci" and doc["policy"]["digest"].startswith("sha256:")
    statuses = {(f["purl"], f["vulnerabilityId"]): f["effectiveStatus"] for f in doc["findings"]}
    assert statuses[(JACKSON, "CVE-2020-25649")] == "not_affected"
    assert doc["summary"]["findings"] == len(doc["findings"]) > 1

    bom = corpora / "cyclonedx-bom-examples/VEX/bom.json"
    result = runner.invoke(app, ["findings", str(bom)], env=env)
    assert result.exit_code == 0, result.output
    assert "CVE-2020-25649" in result.stdout and "not_affected" in result.stdout
    assert "findings:" in result.stdout


def test_cli_bad_policy_is_bad_input(
    app: typer.Typer, store: EvidenceStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STELLA_CONFIG", "")
    monkeypatch.setenv("STELLA_DATABASE_URL", str(store.engine.url))
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: stella.policy/v1\nname: x\nversion: 1\nfailOn: HIGH\n")
    monkeypatch.setattr(
        sys, "argv", ["stella", "findings", EXAMPLE_APP, "--policy", str(bad), "--tenant", "acme"]
    )
    assert main.run_app(app) == ExitCode.BAD_INPUT
