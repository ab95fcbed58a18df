"""Import refusals of the disconnected side become a node_exporter textfile: real
`stella airgap import` / `trivy-install` runs (the committed golden bundles, a wrong trust
root), the file promtool accepts, counts that survive between commands and concurrent ones."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from export_center.cli import main
from export_center.importer.telemetry import METRICS_DIR, PROM_FILE, record_import
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from golden import golden_bundles as golden
from support.prometheus import promtool

GOLDEN_KEY = golden.HERE / "golden-test-key.pub.pem"


def _archive(prefix: str) -> Path:
    (found,) = [
        p
        for p in golden.EXPECTED.iterdir()
        if p.name.startswith(prefix) and p.name.endswith((".tar.zst", ".tar.gz"))
    ]
    return found


def _samples(prom: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(prom.read_text(encoding="utf-8"))
        for s in family.samples
    }


def _stella(args: list[str], data: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("STELLA_DATA_DIR", str(data))
    monkeypatch.delenv("STELLA_CONFIG", raising=False)
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    return main.run_app(main.app)


def test_refused_and_accepted_imports_are_counted_for_node_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "airgap-host"
    other = KeyStore(tmp_path / "other-keys")
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(other.export_public(other.generate(KeyType.ED25519).keyid))
    mirror, trivy = str(_archive("golden-mirror-longlived")), str(_archive("golden-trivy"))
    cache = str(tmp_path / "trivy-cache")

    # A bundle signed by a key this site does not trust: refused, exit 2.
    assert (
        _stella(["airgap", "import", mirror, "--trust-roots", str(stranger)], data, monkeypatch)
        == 2
    )
    installs = ["airgap", "trivy-install", trivy, "--cache-dir", cache, "--trust-roots"]
    assert _stella([*installs, str(stranger)], data, monkeypatch) == 2
    prom = data / METRICS_DIR / PROM_FILE
    refused = _samples(prom)

    def value(
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
    ) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    assert value(refused, "export_airgap_imports_total", kind="mirror", outcome="refused") == 1
    assert value(refused, "export_airgap_imports_total", kind="mirror", outcome="imported") == 0
    assert (
        value(
            refused,
            "export_airgap_import_refusals_total",
            kind="mirror",
            reason="verification_failed",
        )
        == 1
    )
    assert (
        value(
            refused,
            "export_airgap_import_refusals_total",
            kind="trivy",
            reason="verification_failed",
        )
        == 1
    )
    assert value(refused, "export_airgap_last_import_refused", kind="mirror") == 1
    assert value(refused, "export_airgap_last_import_refused", kind="trivy") == 1
    refused_at = value(
        refused, "export_airgap_last_import_timestamp_seconds", kind="mirror", outcome="refused"
    )
    assert refused_at is not None and abs(refused_at - datetime.now(UTC).timestamp()) < 3600

    # The trusted key: both succeed; an import of the same bundle again is a replay.
    assert (
        _stella(["airgap", "import", mirror, "--trust-roots", str(GOLDEN_KEY)], data, monkeypatch)
        == 0
    )
    assert (
        _stella(["airgap", "import", mirror, "--trust-roots", str(GOLDEN_KEY)], data, monkeypatch)
        == 0
    )
    assert _stella([*installs, str(GOLDEN_KEY)], data, monkeypatch) == 0
    after = _samples(prom)
    assert value(after, "export_airgap_imports_total", kind="mirror", outcome="imported") == 1
    assert value(after, "export_airgap_imports_total", kind="mirror", outcome="replay") == 1
    assert value(after, "export_airgap_imports_total", kind="mirror", outcome="refused") == 1
    assert value(after, "export_airgap_imports_total", kind="trivy", outcome="imported") == 1
    assert value(after, "export_airgap_last_import_refused", kind="mirror") == 0
    assert value(after, "export_airgap_last_import_refused", kind="trivy") == 0
    # The refusal is still counted: counters only grow.
    assert (
        value(
            after,
            "export_airgap_import_refusals_total",
            kind="mirror",
            reason="verification_failed",
        )
        == 1
    )

    # The format node_exporter will read, as Prometheus's own tool parses it.
    checked = promtool("check", "metrics", stdin=prom.read_text(encoding="utf-8"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [p.name for p in prom.parent.glob("*.prom")] == [PROM_FILE]  # no temp files left


def test_concurrent_imports_all_count(tmp_path: Path) -> None:
    now = datetime.now(UTC)

    def one() -> None:
        record_import(tmp_path, "mirror", "imported", now=now)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = _samples(tmp_path / METRICS_DIR / PROM_FILE)
    key = (
        "export_airgap_imports_total",
        frozenset({"kind": "mirror", "outcome": "imported"}.items()),
    )
    assert samples[key] == 16


def test_a_damaged_counter_file_restarts_the_count(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    record_import(tmp_path, "trivy", "imported", now=now)
    (tmp_path / METRICS_DIR / "stella-airgap.json").write_text("{not json", encoding="utf-8")
    prom = record_import(tmp_path, "trivy", "refused", now=now, reason="conflict")
    samples = _samples(prom)
    assert (
        samples[
            (
                "export_airgap_imports_total",
                frozenset({"kind": "trivy", "outcome": "refused"}.items()),
            )
        ]
        == 1
    )
    assert (
        samples[
            (
                "export_airgap_imports_total",
                frozenset({"kind": "trivy", "outcome": "imported"}.items()),
            )
        ]
        == 0
    )
