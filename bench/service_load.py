"""Service benchmarks: API latency at a fixed rate while exports run, and export throughput of
worker processes. Used by ``bench.suites`` (suites ``service`` and ``workers``); runnable alone:

    .venv/bin/python -m bench.service_load latency [--database-url URL] [--workers N]
    .venv/bin/python -m bench.service_load throughput --database-url URL --workers 1 2

Everything runs on this machine and talks to 127.0.0.1 only: a data directory with the Go
vulnerability database ingested (4,291 real advisories, one tenant), a signing key, a json:raw
profile and a token; then ``stella serve`` as a user runs it (its worker processes included).

- latency: exports are kept running the whole time (a feeder keeps two runs waiting), and the
  open-loop generator (``bench.loadgen``, a process of its own) sends mixed reads at a fixed
  rate; the baseline is the same generator sending ``GET /healthz`` at the same rate to the
  same server, exports still running.
- throughput: ``runs`` exports are queued, then ``stella serve --workers N`` starts; runs per
  second from the first start to the last finish, read from the run records.

PostgreSQL: the database at ``--database-url`` (``make bench`` passes ``STELLA_TEST_PG_URL``) is
**wiped** (its ``public`` schema dropped) before use: point it at a scratch database, like the
test suite's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
STELLA = Path(sys.executable).with_name("stella")
CORPUS = ("go-vulndb", "golang-vulndb/data/osv")
TENANT = "default"
PROFILE = "bench-raw"

#: The read mix of the latency benchmark (weights in percent).
READS = (
    ("get run", 40),
    ("list runs", 25),
    ("list profiles", 20),
    ("get profile", 10),
    ("plan", 5),
)


@dataclass
class Setup:
    data_dir: Path
    database_url: str
    token: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def prepare(work: Path, corpora: Path, database_url: str | None) -> Setup:
    """A data directory (and database) with the corpus ingested, a key, a profile, a token."""
    from export_center.planner.profiles import parse_profile_spec
    from export_center.runtime.container import Services
    from export_center.service.auth import SCOPES, TokenStore
    from export_center.settings import load_settings
    from export_center.signing.interface import KeyType
    from export_center.signing.keystore import KeyStore

    data = work / "data"
    url = database_url or f"sqlite:///{data / 'stella.db'}"
    if database_url:
        reset_postgres(database_url)
    settings = load_settings(env={"STELLA_DATA_DIR": str(data), "STELLA_DATABASE_URL": url})
    services = Services.open(settings)
    try:
        from export_center.ingest.pipeline import ingest_paths

        ingest_paths(
            services.store,
            [corpora / CORPUS[1]],
            source=CORPUS[0],
            tenant=TENANT,
            max_bytes=64 << 20,
        )
        KeyStore(settings.key_dir).generate(KeyType.ED25519, tenants=[TENANT])
        services.registry.create(
            TENANT, PROFILE, parse_profile_spec({"kind": "json", "variant": "raw"})
        )
        token = TokenStore(services.store).create("bench", [TENANT], list(SCOPES))[1]
    finally:
        services.close()
    return Setup(data, url, token)


def server_env(setup: Setup) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    return env | {
        "STELLA_DATA_DIR": str(setup.data_dir),
        "STELLA_DATABASE_URL": setup.database_url,
        "STELLA_SERVICE_QUOTA_CONCURRENT_RUNS": "0",
        "STELLA_SERVICE_QUOTA_RUNS_PER_HOUR": "0",
    }


@contextlib.contextmanager
def serving(setup: Setup, workers: int, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``stella serve --workers N`` on a free loopback port, until the block ends."""
    port = free_port()
    with log.open("ab") as err:
        cmd = [str(STELLA), "serve", "--port", str(port), "--workers", str(workers)]
        proc = subprocess.Popen(
            [*cmd, "--log-level", "warning"],
            env=server_env(setup),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stella serve did not start; see {log}")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _auth(setup: Setup) -> dict[str, str]:
    return {"Authorization": f"Bearer {setup.token}"}


def create_run(url: str, setup: Setup) -> str:
    r = httpx.post(
        f"{url}/api/export/runs", json={"profile": PROFILE}, headers=_auth(setup), timeout=30
    )
    r.raise_for_status()
    return str(r.json()["id"])


def count_runs(url: str, setup: Setup, status: str) -> int:
    r = httpx.get(
        f"{url}/api/export/runs?status={status}&limit=1", headers=_auth(setup), timeout=30
    )
    r.raise_for_status()
    return int(r.json()["total"])


class Feeder:
    """Keeps ``waiting`` runs queued, so that the workers export the whole time."""

    def __init__(self, url: str, setup: Setup, waiting: int = 2) -> None:
        self.url, self.setup, self.waiting = url, setup, waiting
        self.stop = threading.Event()
        self.created = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.25):
            try:
                pending = count_runs(self.url, self.setup, "pending")
                for _ in range(max(0, self.waiting - pending)):
                    create_run(self.url, self.setup)
                    self.created += 1
            except httpx.HTTPError:
                continue

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def loadgen(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    path = work / f"loadgen-{time.monotonic_ns()}.json"
    path.write_bytes(orjson.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=float(spec["seconds"]) + 120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = orjson.loads(proc.stdout.strip().splitlines()[-1])
    return result


def read_spec(
    url: str, setup: Setup, run_ids: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    base = "/api/export"
    paths = {
        "get run": [f"{base}/runs/{r}" for r in run_ids],
        "list runs": [f"{base}/runs?limit=20"],
        "list profiles": [f"{base}/profiles"],
        "get profile": [f"{base}/profiles/{PROFILE}"],
        "plan": [f"{base}/plan"],
    }
    return {
        "url": url,
        "rate": rate,
        "seconds": seconds,
        "requests": [
            {
                "kind": kind,
                "weight": weight,
                "method": "POST" if kind == "plan" else "GET",
                "paths": paths[kind],
                "headers": _auth(setup),
                "body": {"profile": PROFILE} if kind == "plan" else None,
            }
            for kind, weight in READS
        ],
    }


def healthz_spec(url: str, rate: float, seconds: float) -> dict[str, Any]:
    return {
        "url": url,
        "rate": rate,
        "seconds": seconds,
        "requests": [{"kind": "healthz", "weight": 1, "method": "GET", "paths": ["/healthz"]}],
    }


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process, MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def rss_of(proc: subprocess.Popen[bytes]) -> dict[str, float]:
    """Peak RSS of the server and of its worker processes (read before they stop)."""
    kids = [peak_rss_mb(c) for c in children(proc.pid)]
    return {"api": peak_rss_mb(proc.pid), "workers": max(kids, default=0.0)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(
    work: Path,
    setup: Setup,
    *,
    workers: int,
    rate: float = 200.0,
    seconds: float = 20.0,
    repeat: int = 1,
) -> dict[str, Any]:
    """Mixed reads and GET /healthz at ``rate``, alternately, while exports run."""
    out: dict[str, Any] = {"reads": [], "healthz": [], "exports_during": [], "api_cpu": []}
    with serving(setup, workers, work / "serve.log") as (url, proc):
        run_ids = [create_run(url, setup) for _ in range(10)]
        with Feeder(url, setup):
            time.sleep(3)  # the workers are busy before the first request
            for _ in range(repeat):
                for name, spec in (
                    ("reads", read_spec(url, setup, run_ids, rate, seconds)),
                    ("healthz", healthz_spec(url, rate, seconds)),
                ):
                    done_before = _finished(url, setup)
                    cpu = cpu_seconds(proc.pid)
                    result = loadgen(spec, work)
                    result["api_cpu_share"] = (cpu_seconds(proc.pid) - cpu) / result["wall_s"]
                    result["exports_finished"] = _finished(url, setup) - done_before
                    out[name].append(result)
        rss = rss_of(proc)
    out["peak_rss_mb"] = rss["api"]
    out["rss_note"] = f"API process {rss['api']:.0f} MB, worker process {rss['workers']:.0f} MB"
    return out


def _finished(url: str, setup: Setup) -> int:
    return count_runs(url, setup, "succeeded")


def throughput(work: Path, setup: Setup, *, workers: int, runs: int) -> dict[str, Any]:
    """Queue ``runs`` exports, start ``stella serve --workers N``, wait for them all."""
    from export_center.runtime.container import Services
    from export_center.settings import load_settings

    settings = load_settings(env=server_env(setup))
    services = Services.open(settings)
    try:
        ids = [services.runs.create(TENANT, PROFILE)[0].id for _ in range(runs)]
        with serving(setup, workers, work / "serve.log") as (_url, proc):
            deadline = time.monotonic() + 600
            while True:
                views = [services.repo.find(i) for i in ids]
                if all(v is not None and v.terminal for v in views):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("runs did not finish within 600 s")
                time.sleep(0.5)
            rss = rss_of(proc)
        assert all(v is not None for v in views)
        statuses = sorted({v.status for v in views if v is not None})
        if statuses != ["succeeded"]:
            raise RuntimeError(f"runs ended {statuses}")
        first = min(v.started_at for v in views if v is not None and v.started_at)
        last = max(v.finished_at for v in views if v is not None and v.finished_at)
        span = (last - first).total_seconds()
        timeline = [
            (
                round((v.started_at - first).total_seconds(), 2),
                round((v.finished_at - first).total_seconds(), 2),
            )
            for v in views
            if v is not None and v.started_at and v.finished_at
        ]
        return {
            "runs": runs,
            "seconds": span,
            "runs_per_s": runs / span,
            "timeline": timeline,
            "peak_rss_mb": rss["workers"],
        }
    finally:
        services.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.service_load")
    ap.add_argument("what", choices=["latency", "throughput"])
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--workers", type=int, nargs="*", default=[1])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stella-bench-") as tmp:
        work = Path(tmp)
        setup = prepare(work, args.corpora, args.database_url)
        for n in args.workers:
            if args.what == "latency":
                result = latency(work, setup, workers=n, rate=args.rate, seconds=args.seconds)
            else:
                result = throughput(work, setup, workers=n, runs=args.runs)
            print(orjson.dumps({"workers": n, **result}, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
