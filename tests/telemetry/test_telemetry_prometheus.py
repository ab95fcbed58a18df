"""A real Prometheus (Debian's package, on 127.0.0.1, its storage in a temp directory, a 1 s
scrape and rule interval) scrapes a real `stella serve` while real runs succeed, fail and are
retried, and a disconnected host's node_exporter while its imports are refused.

The processes share one host the way `stella serve` shares it with its worker processes:
`stella serve --no-worker`, a worker killed with SIGKILL in the middle of an export, and the
`stella worker` that takes its run over, all in one PROMETHEUS_MULTIPROC_DIR; Prometheus
scrapes only `stella serve`, whose /metrics adds the workers' samples up. Then the recording
rules and the alerts are read back through Prometheus's HTTP API, and every expression of the
Grafana dashboard is evaluated by it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from golden import golden_bundles as golden
from support.prometheus import (
    NodeExporter,
    Prometheus,
    concrete,
    dashboard_panels,
    scrape_config,
)
from support.service import (
    free_port,
    generate_key,
    make_settings,
    put_advisories,
    tenant_token,
    wait_for,
)
from support.tools import support_module_cmd

pytestmark = pytest.mark.slow  # five processes

STELLA = Path(sys.executable).with_name("stella")
BASE = "/api/export"
TIMINGS = {
    "lease_seconds": "2",
    "heartbeat_seconds": "0.3",
    "sweep_seconds": "0.3",
    "cancel_poll_seconds": "0.1",
    "retry_base_seconds": "0.2",
    "retry_max_seconds": "0.5",
    "quota_concurrent_runs": "0",
    "quota_runs_per_hour": "0",
}
# The alerts the scenario must raise, and no other (those with a `for:` cannot fire yet).
EXPECTED_FIRING = {
    "ExportRunsFailed",
    "ExportRunsFailing",
    "ExportPushFailing",
    "ExportImportRefused",
}


class Processes:
    """Child processes, each logging to its own file; all stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def logs_text(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
            for f in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    yield procs
    procs.stop()


def _archive(prefix: str) -> str:
    (found,) = [
        p
        for p in golden.EXPECTED.iterdir()
        if p.name.startswith(prefix) and p.name.endswith((".tar.zst", ".tar.gz"))
    ]
    return str(found)


def _airgap_host(tmp_path: Path) -> Path:
    """A disconnected instance: a mirror bundle refused (an untrusted key), a Trivy DB
    installed. Returns its import-metrics directory."""
    data = tmp_path / "airgap-host"
    other = KeyStore(tmp_path / "other-keys")
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(other.export_public(other.generate(KeyType.ED25519).keyid))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STELLA_DATA_DIR": str(data)}
    mirror = ["airgap", "import", _archive("golden-mirror-longlived")]
    refused = subprocess.run(
        [str(STELLA), *mirror, "--trust-roots", str(stranger)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    trivy = ["airgap", "trivy-install", _archive("golden-trivy")]
    trivy += ["--cache-dir", str(tmp_path / "trivy-cache")]
    installed = subprocess.run(
        [str(STELLA), *trivy, "--trust-roots", str(golden.HERE / "golden-test-key.pub.pem")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return data / "airgap" / "metrics"


def _is(value: float) -> Any:
    """A check for Prometheus.wait: exactly one sample, equal to ``value``."""
    return lambda r: len(r) == 1 and float(r[0]["value"][1]) == value


def _at_least(value: float) -> Any:
    return lambda r: bool(r) and all(float(s["value"][1]) >= value for s in r)


def _above(value: float) -> Any:
    return lambda r: len(r) == 1 and float(r[0]["value"][1]) > value


def test_prometheus_scrapes_stella_serve_while_runs_succeed_fail_and_retry(
    tmp_path: Path, processes: Processes
) -> None:
    # ---- the export cluster's data: evidence, a key, a good and a broken profile, a token
    settings = make_settings(tmp_path / "data")
    gone = generate_key(settings)  # first: the tenant's default (newest) key is the next one
    generate_key(settings)
    services = Services.open(settings, metrics=Metrics())
    put_advisories(services.store, "acme", 300)
    good = parse_profile_spec({"kind": "json", "variant": "raw"})
    services.registry.create("acme", "nightly", good)
    broken = parse_profile_spec({"kind": "json", "variant": "raw", "signing": {"key": gone}})
    services.registry.create("acme", "broken", broken)
    # The key the profile names loses its private half: every run of it fails for good.
    (settings.key_dir / f"{gone}.key.pem").unlink()
    token = tenant_token(services, ["acme"])
    services.close()
    # /metrics needs the export:metrics scope: Prometheus reads its token from a file.
    token_file = tmp_path / "prometheus.token"
    token_file.write_text(token + "\n", encoding="utf-8")

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STELLA_", "PROMETHEUS_"))}
    env |= {f"STELLA_SERVICE_{k.upper()}": v for k, v in TIMINGS.items()}
    env |= {
        "STELLA_DATA_DIR": str(settings.data_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # Nothing listens there: every push of a published bundle fails.
        "STELLA_SERVICE_OCI_REPOSITORY": f"oci://127.0.0.1:{free_port()}/stella/bundles",
    }
    processes.start("serve", [str(STELLA), "serve", "--port", str(port), "--no-worker"], env)
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )

    def ready() -> bool:
        try:
            return api.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60, step=0.2)
    node = NodeExporter.start(tmp_path / "node", _airgap_host(tmp_path))
    prom = Prometheus.start(
        tmp_path / "prometheus",
        scrape_config(serve=f"127.0.0.1:{port}", node=node.address, bearer_token_file=token_file),
    )

    def create(profile: str) -> str:
        r = api.post(f"{BASE}/runs", json={"profile": profile})
        assert r.status_code in (200, 201, 202), r.text
        run_id: str = r.json()["id"]
        return run_id

    def final(run_id: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run: dict[str, Any] = api.get(f"{BASE}/runs/{run_id}").json()
            return run if run["status"] in ("succeeded", "failed", "cancelled") else None

        try:
            result: dict[str, Any] = wait_for(done, timeout=120, step=0.2)
        except AssertionError:
            raise AssertionError(f"run {run_id} not finished\n{processes.logs_text()}") from None
        return result

    try:
        prom.wait('up{job="stella-serve"} == 1', timeout=60)
        prom.wait('up{job="node"} == 1', timeout=60)

        # ---- 1. a slow worker claims a run and is killed in the middle of the export
        slow_cmd, slow_env = support_module_cmd(
            "slow_worker", env | {"STELLA_TEST_EXPORT_DELAY": "10"}
        )
        slow = processes.start("slow-worker", slow_cmd, slow_env)
        taken_over = create("nightly")
        prom.wait("export:run_leases_active:max", _is(1))
        prom.wait("export:worker_active_runs:sum", _is(1))
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=30)
        # No worker is alive: the lease lapses and stays lapsed, and Prometheus sees it.
        prom.wait("export:runs_lease_expired:max", _is(1))

        # ---- 2. a real `stella worker` takes the run over (a retry for a lost worker)
        processes.start("worker", [str(STELLA), "worker"], env)
        run = final(taken_over)
        assert (run["status"], run["attempts"]) == ("succeeded", 2), run

        # ---- 3. runs succeed and fail, twice, each round seen by Prometheus before the next
        codes = set()
        for n in (1, 2):
            ok, bad = final(create("nightly")), final(create("broken"))
            assert ok["status"] == "succeeded", ok
            assert bad["status"] == "failed", bad
            codes.add(bad["error"]["code"])
            prom.wait(
                'export_runs_total{profile="nightly", tenant="acme", status="succeeded"}',
                _is(n + 1),
            )
            prom.wait('export_runs_total{profile="broken", tenant="acme", status="failed"}', _is(n))
        assert codes == {"ERR_EXPORT_NOT_FOUND"}

        # ---- the recording rules, through Prometheus's HTTP API
        prom.wait('export:run_retries:increase30m{reason="worker_lost"}', _at_least(1))
        prom.wait("export:runs:increase1h", lambda r: len(r) >= 2)  # both profiles
        # (Recording rules trail the scrapes by an evaluation: wait for them too.)
        prom.wait('export:runs:increase1h{profile="broken", status="failed"}', _at_least(2))
        prom.wait('export:runs:increase1h{profile="nightly", status="succeeded"}', _at_least(3))
        # Failure counts are per error code: the missing key, and the pushes that failed.
        failures = prom.wait("export:failures:increase30m", lambda r: len(r) >= 2)
        assert {s["metric"]["error_code"] for s in failures} == {
            "ERR_EXPORT_NOT_FOUND",
            "ERR_EXPORT_OCI_PUSH",
        }
        prom.wait('export:pushes:increase30m{outcome="failed"}', _at_least(3))
        prom.wait('export:pushes:increase30m{outcome="pushed"}', _is(0))
        # Every run was fast: the latency SLO burns nothing, by profile the latency is known.
        prom.wait("export:run_latency_slo:error_ratio_rate5m", _is(0))
        prom.wait('export:run_duration_seconds:p95_1h{profile="nightly"}', _above(0))
        prom.wait('export:bytes:rate5m{profile="nightly", tenant="acme"}', _above(0))
        prom.wait('export:runs:rate5m{profile="nightly", status="succeeded"}', _above(0))
        # The queue drained, the lapsed lease was taken over; the killed worker's slot and
        # its unfinished attempt no longer count, the live worker's slot does.
        prom.wait("export:runs_lease_expired:max", _is(0))
        prom.wait("export:runs_due:max", _is(0))
        prom.wait("export:oldest_pending_run_age_seconds:max", _is(0))
        prom.wait("export:run_leases_active:max", _is(0))
        prom.wait("export:worker_active_runs:sum", _is(0))
        prom.wait("export:worker_slots:sum", _is(1))
        prom.wait("export:running_run_idle_seconds:max", _is(0))
        prom.wait("sum(export_run_takeovers_total)", _is(1))
        # The disconnected host: the mirror refusal, by reason; the Trivy install went through.
        refusals = prom.wait("export:airgap_import_refusals:increase1d", _at_least(1))
        assert [(s["metric"]["kind"], s["metric"]["reason"]) for s in refusals] == [
            ("mirror", "verification_failed")
        ]

        # ---- the alerts Prometheus evaluated from these series
        def firing_as_expected() -> bool:
            return {name for name, _ in prom.firing()} == EXPECTED_FIRING

        try:
            wait_for(firing_as_expected, timeout=60, step=0.5)
        except AssertionError:
            raise AssertionError(f"firing: {prom.firing()}") from None
        firing = {(name, frozenset(dict(labels).items())) for name, labels in prom.firing()}
        labels = {name: dict(lbls) for name, lbls in firing if name != "ExportRunsFailing"}
        assert (labels["ExportRunsFailed"]["profile"], labels["ExportRunsFailed"]["tenant"]) == (
            "broken",
            "acme",
        )
        assert labels["ExportImportRefused"]["kind"] == "mirror"
        assert {
            dict(lbls)["error_code"] for name, lbls in firing if name == "ExportRunsFailing"
        } == {
            "ERR_EXPORT_NOT_FOUND",
            "ERR_EXPORT_OCI_PUSH",
        }
        bad_rules = [r for r in prom.rule_health() if r[1] != "ok"]
        assert bad_rules == []

        # ---- the dashboard: every query answers, every panel has data
        empty = []
        for panel in dashboard_panels():
            if panel["type"] == "row":
                continue
            answers = [prom.query(concrete(t["expr"])) for t in panel["targets"]]
            if not any(answers):
                empty.append(panel["title"])
        assert empty == []
    finally:
        prom.stop()
        node.stop()
        api.close()
