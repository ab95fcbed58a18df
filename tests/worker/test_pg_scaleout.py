"""Scale-out on a real PostgreSQL: worker processes share procrastinate's queue.

- 3 ``stella worker`` processes and 20 queued runs: every run succeeds exactly once;
- ``kill -9`` of a worker in the middle of an export: another worker takes the run over and
  publishes a bundle byte-identical to a clean run's;
- a cancelled run leaves no artifact.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from export_center.exporter import run_export
from export_center.planner.profiles import parse_profile_spec
from export_center.runs.repository import RunView
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.settings import Settings
from support.service import fast_service, generate_key, make_settings, put_advisories, wait_for
from support.tools import support_module_cmd

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STELLA = Path(sys.executable).with_name("stella")
TIMINGS = {
    "lease_seconds": "3",
    "heartbeat_seconds": "0.5",
    "sweep_seconds": "0.5",
    "cancel_poll_seconds": "0.1",
    "retry_base_seconds": "0.5",
    "quota_concurrent_runs": "0",
    "quota_runs_per_hour": "0",
}


class Workers:
    """Worker subprocesses, each logging to its own file; all stopped at the end."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
        env |= {
            "STELLA_DATA_DIR": str(self.settings.data_dir),
            "STELLA_DATABASE_URL": self.settings.database_url,
        }
        env |= {f"STELLA_SERVICE_{k.upper()}": v for k, v in TIMINGS.items()}
        return env | extra

    def start(self, *, slow: float | None = None) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        if slow is None:
            cmd = [str(STELLA), "worker"]
            env = self.env()
        else:
            cmd, env = support_module_cmd(
                "slow_worker", self.env(STELLA_TEST_EXPORT_DELAY=str(slow))
            )
        log = (self.logs / f"worker-{n}.log").open("wb")
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


@pytest.fixture
def pg_services(pg_url: str, tmp_path: Path) -> Iterator[Services]:
    settings = make_settings(tmp_path / "data", pg_url)
    generate_key(settings)
    services = Services.open(fast_service(settings, **TIMINGS), metrics=Metrics())
    services.registry.create(
        "acme", "acme-json", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    yield services
    services.close()


@pytest.fixture
def workers(pg_services: Services, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(pg_services.settings, tmp_path)
    yield w
    w.stop()


def _wait_final(services: Services, run_ids: list[str], timeout: float) -> list[RunView]:
    def done() -> list[RunView] | None:
        runs = [services.repo.get("acme", r) for r in run_ids]
        return runs if all(r.terminal for r in runs) else None

    try:
        result: list[RunView] = wait_for(done, timeout=timeout, step=0.2)
    except AssertionError:
        states = [(r, services.repo.get("acme", r).status) for r in run_ids]
        raise AssertionError(f"runs not finished in {timeout} s: {states}") from None
    return result


def _registered_workers(services: Services) -> int:
    with services.store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_three_workers_twenty_runs_each_exactly_once(
    pg_services: Services, workers: Workers
) -> None:
    put_advisories(pg_services.store, "acme", 60)
    for _ in range(3):
        workers.start()
    # All three registered with procrastinate (listening) before the runs arrive.
    wait_for(lambda: _registered_workers(pg_services) == 3, timeout=60, step=0.2)
    run_ids = [pg_services.runs.create("acme", "acme-json")[0].id for _ in range(20)]
    runs = _wait_final(pg_services, run_ids, timeout=240)
    assert [r.status for r in runs] == ["succeeded"] * 20
    assert [r.attempts for r in runs] == [1] * 20
    owners: set[str] = set()
    for r in runs:
        events = pg_services.repo.events_after(r.id, 0)
        types = [e.type for e in events]
        assert types.count("started") == 1, (r.id, types)
        assert types.count("succeeded") == 1, (r.id, types)
        assert types[-2:] == ["artifact_ready", "succeeded"]
        owners.add(str(next(e.data["worker"] for e in events if e.type == "started")))
    assert len(owners) >= 2, owners  # the queue spread the runs over the processes
    # Same plan (profile revision, as-of sequence) in 20 runs on 3 processes: same bytes.
    digests = {r.archive_sha256 for r in runs}
    assert len(digests) == 1
    for r in runs:
        assert r.archive_path is not None
        assert _sha256(pg_services.artifacts.resolve(r.archive_path)) == r.archive_sha256


def test_kill_9_mid_export_is_taken_over_byte_identically(
    pg_services: Services, workers: Workers, tmp_path: Path
) -> None:
    put_advisories(pg_services.store, "acme", 1600)
    victim = workers.start(slow=0.4)
    run = pg_services.runs.create("acme", "acme-json")[0]
    wait_for(
        lambda: (
            (r := pg_services.repo.get("acme", run.id)).status == "running" and r.items_done > 0
        ),
        timeout=60,
        step=0.1,
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = time.monotonic()
    assert pg_services.repo.get("acme", run.id).status == "running"  # as the dead left it

    workers.start()  # a plain `stella worker`
    (done,) = _wait_final(pg_services, [run.id], timeout=120)
    assert done.status == "succeeded", done
    assert time.monotonic() - killed_at < 60
    assert done.attempts == 2
    started = [e.data for e in pg_services.repo.events_after(run.id, 0) if e.type == "started"]
    assert [s["takeover"] for s in started] == [False, True]
    assert started[0]["worker"] != started[1]["worker"]

    # A clean run of the same plan, in-process: the very same bytes.
    profile = pg_services.registry.get("acme", "acme-json")
    clean = run_export(
        pg_services.settings,
        pg_services.store,
        profile,
        tmp_path / "clean",
        as_of_seq=done.as_of_seq,
    )
    assert done.archive_path is not None
    published = pg_services.artifacts.resolve(done.archive_path)
    assert published.read_bytes() == clean.bundle.archive_path.read_bytes()
    assert done.archive_sha256 == clean.bundle.archive_sha256
    # The dead attempt's staging directory is gone; only the bundle and its sidecars remain.
    leftovers = sorted(p.name for p in published.parent.iterdir())
    assert leftovers == sorted(
        [published.name, f"{published.name}.sha256", f"{published.name}.sig"]
    )


def test_cancelled_run_leaves_no_artifact(pg_services: Services, workers: Workers) -> None:
    put_advisories(pg_services.store, "acme", 1600)
    workers.start(slow=0.4)
    run = pg_services.runs.create("acme", "acme-json")[0]
    wait_for(lambda: pg_services.repo.get("acme", run.id).items_done > 0, timeout=60, step=0.1)
    asked = time.monotonic()
    pg_services.runs.cancel("acme", run.id)
    (done,) = _wait_final(pg_services, [run.id], timeout=30)
    assert done.status == "cancelled"
    assert time.monotonic() - asked < 5  # "within seconds"
    assert done.archive_path is None
    run_dir = pg_services.settings.artifact_dir / "acme" / run.id
    assert not run_dir.exists() or not any(run_dir.iterdir())
    assert [e.type for e in pg_services.repo.events_after(run.id, 0)][-1] == "cancelled"
