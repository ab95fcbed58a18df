"""``stella serve`` runs the exports in worker processes it starts, restarts and stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.service.auth import TokenStore
from export_center.settings import Settings
from export_center.worker.processes import WorkerProcesses, worker_command
from support.service import ALL_SCOPES, free_port, put_advisories, wait_for

pytestmark = pytest.mark.slow  # whole-corpus, many subprocesses or real tools

STELLA = str(Path(sys.executable).with_name("stella"))


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(c) for c in children]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return stat[0] != "Z"


def _serve(settings: Settings, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    env["STELLA_DATA_DIR"] = str(settings.data_dir)
    proc = subprocess.Popen(
        [STELLA, "serve", "--port", str(port), "--log-level", "warning", *args], env=env
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60)
    return proc, url


def _world(services: Services) -> str:
    put_advisories(services.store, "acme", 50)
    services.registry.create(
        "acme", "nightly", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    return TokenStore(services.store).create("t", ["acme"], ALL_SCOPES)[1]


def _export_through(url: str, token: str, services: Services) -> int:
    """Run one export through the API; the pid of the process that ran it."""
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{url}/api/export/runs", json={"profile": "nightly"}, headers=auth)
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]

    def done() -> bool:
        view = services.repo.find(run_id)
        return view is not None and view.terminal

    wait_for(done, timeout=60)
    view = services.repo.find(run_id)
    assert view is not None and view.status == "succeeded"
    (started,) = [e for e in services.repo.events_after(run_id, 0) if e.type == "started"]
    return int(str(started.data["worker"]).split(":")[1])  # host:pid:random


def test_exports_run_in_a_worker_process_that_stops_with_the_server(
    settings: Settings, services: Services
) -> None:
    token = _world(services)
    proc, url = _serve(settings)
    try:
        (child,) = wait_for(lambda: _children(proc.pid), timeout=30)
        ran_in = _export_through(url, token, services)
        assert ran_in == child != proc.pid
        # The worker's counters are on the server's /metrics (multiprocess mode).
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
        assert (
            'export_runs_total{profile="nightly",status="succeeded",tenant="acme"} 1.0' in metrics
        )
        assert "export_http_requests_total" in metrics
        # The worker runs at a lower CPU priority than the API.
        assert os.getpriority(os.PRIO_PROCESS, child) == 10
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    # SIGTERM stopped the worker too (uvicorn re-raises the signal; serve still cleans up).
    assert not _alive(child)


def test_workers_0_runs_exports_in_the_server_process(
    settings: Settings, services: Services
) -> None:
    token = _world(services)
    proc, url = _serve(settings, "--workers", "0")
    try:
        assert _children(proc.pid) == []
        assert _export_through(url, token, services) == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0


def test_a_worker_whose_server_died_drains_and_exits(settings: Settings) -> None:
    proc, _url = _serve(settings)
    (child,) = wait_for(lambda: _children(proc.pid), timeout=30)
    proc.kill()  # no chance to stop its workers
    proc.wait()
    wait_for(lambda: not _alive(child), timeout=60)


def test_a_worker_process_that_exits_is_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    script = f"open({str(marker)!r}, 'a').write('x'); import sys; sys.exit(3)"
    workers = WorkerProcesses(1, [sys.executable, "-c", script], kill_after=5)
    workers.start()
    try:
        wait_for(lambda: marker.exists() and len(marker.read_text()) >= 2, timeout=30)
    finally:
        workers.stop()
    assert all(not _alive(pid) for pid in workers.pids)


def test_worker_command_runs_this_package() -> None:
    cmd = worker_command(concurrency=2, log_level="debug", nice=10, parent_pid=42)
    assert cmd[:4] == [sys.executable, "-m", "export_center", "worker"]
    assert cmd[4:] == [
        "--log-level",
        "debug",
        "--nice",
        "10",
        "--concurrency",
        "2",
        "--parent-pid",
        "42",
    ]
    start = time.monotonic()
    out = subprocess.run([*cmd[:3], "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() and time.monotonic() - start < 30
