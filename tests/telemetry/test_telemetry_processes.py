"""Where the metrics of each process go: `stella serve` collects its process group's samples in
a private prometheus-client multiprocess directory (removed when it stops), `stella worker
--metrics-port` serves its own, and the directory is settled before prometheus_client loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.runtime.metrics_dir import ENV, metrics_process_group
from support.service import (
    free_port,
    generate_key,
    make_settings,
    put_advisories,
    tenant_token,
    wait_for,
)

pytestmark = pytest.mark.slow  # server processes

STELLA = Path(sys.executable).with_name("stella")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_an_already_loaded_in_memory_library_is_left_alone() -> None:
    environ: dict[str, str] = {}
    # This test process imported prometheus_client without a directory: nothing to group.
    assert metrics_process_group(environ, private=True) is None
    assert environ == {}


def _group_in_fresh_interpreter(tmp: Path) -> Path:
    """What `stella serve` does first, in a new interpreter with TMPDIR=tmp: the directory."""
    code = (
        "import os, sys\n"
        "from export_center.runtime.metrics_dir import metrics_process_group\n"
        "path = metrics_process_group(os.environ, private=True)\n"
        "from prometheus_client import values\n"
        "assert values.ValueClass is not values.MutexValue, 'not in multiprocess mode'\n"
        f"assert os.environ[{ENV!r}] == str(path) and path.is_dir()\n"
        "print(path)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV} | {"TMPDIR": str(tmp)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def test_a_private_directory_is_exported_before_the_library_loads(tmp_path: Path) -> None:
    path = _group_in_fresh_interpreter(tmp_path)
    assert path.parent == tmp_path
    assert not path.exists()  # removed at exit


def test_directories_of_dead_groups_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / f"stella-metrics-{dead.stdout.strip()}-abc"
    live = tmp_path / f"stella-metrics-{os.getpid()}-def"
    for d in (orphan, live):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"")
    _group_in_fresh_interpreter(tmp_path)
    assert not orphan.exists()
    assert live.is_dir()


@pytest.fixture
def data(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    settings = make_settings(tmp_path / "data")
    generate_key(settings)
    services = Services.open(settings, metrics=Metrics())
    put_advisories(services.store, "acme", 10)
    services.registry.create(
        "acme", "nightly", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    token = tenant_token(services, ["acme"])
    services.close()
    yield settings.data_dir, token


def _env(data_dir: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STELLA_", "PROMETHEUS_"))}
    return env | {"STELLA_DATA_DIR": str(data_dir), "TMPDIR": str(tmp)}


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def test_stella_serve_reports_its_process_group_from_a_private_directory(
    data: tuple[Path, str], tmp_path: Path
) -> None:
    data_dir, token = data
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [str(STELLA), "serve", "--port", str(port)],
        env=_env(data_dir, tmp),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, step=0.2)
        (group,) = tmp.glob("stella-metrics-*")
        auth = {"Authorization": f"Bearer {token}"}
        run = httpx.post(f"{url}/api/export/runs", json={"profile": "nightly"}, headers=auth)
        assert run.status_code == 202, run.text

        def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            samples = _samples(httpx.get(f"{url}/metrics", headers=auth, timeout=5).text)
            labels = {"profile": "nightly", "tenant": "acme", "status": "succeeded"}
            key = ("export_runs_total", frozenset(labels.items()))
            return samples if samples.get(key) == 1 else None

        samples = wait_for(counted, timeout=60, step=0.2)
        assert samples[("export_worker_slots", frozenset())] == 1
        assert samples[("export_runs_in_state", frozenset({"state": "pending"}.items()))] == 0
        # The samples came through the directory: its files are this process group's.
        assert list(group.glob("counter_*.db")) and list(group.glob("gauge_livesum_*.db"))
    finally:
        # uvicorn ends a graceful shutdown by raising SIGTERM again: exit handlers never run.
        code = _stop(serve)
        assert code in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text(errors="replace")
    # The next process group to start removes the directory of the one that is gone.
    _group_in_fresh_interpreter(tmp)
    assert list(tmp.glob("stella-metrics-*")) == []


def test_stella_worker_serves_its_own_metrics(data: tuple[Path, str], tmp_path: Path) -> None:
    data_dir, _ = data
    port = free_port()
    worker = subprocess.Popen(
        [str(STELLA), "worker", "--metrics-port", str(port), "--concurrency", "2"],
        env=_env(data_dir, tmp_path),
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:

        def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                return None
            samples = _samples(text)
            return samples if samples.get(("export_worker_slots", frozenset())) == 2 else None

        samples = wait_for(scraped, timeout=60, step=0.2)
        reasons = {"ERR_EXPORT_IO", "ERR_EXPORT_DATABASE", "released", "worker_lost"}
        assert {
            dict(labels)["reason"] for name, labels in samples if name == "export_run_retries_total"
        } == reasons
    finally:
        assert _stop(worker) == 0, (tmp_path / "worker.log").read_text(errors="replace")
