"""Load benchmark of the export service (a script, not a test: pytest does not collect it).

Starts ``stella serve`` (API + in-process worker) on a loopback port, optionally extra
``stella worker`` processes, and drives it with many concurrent API clients for a bounded time:
reads (run status, run lists, profiles, plans) and run creations whose exports the workers
execute. Prints throughput, latency percentiles per request kind, and export throughput.

    .venv/bin/python bench/service_load.py --clients 32 --seconds 20
    .venv/bin/python bench/service_load.py --database-url postgresql+psycopg://... --workers 1
    .venv/bin/python bench/service_load.py --healthz-only    # the baseline: framework floor

``make bench`` runs it through ``bench.suites`` (suite "service").

Only loopback traffic; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))

from service_support import (
    ALL_SCOPES,
    free_port,
    generate_key,
    make_settings,
    put_advisories,
)

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.service.auth import TokenStore

STELLA = Path(sys.executable).with_name("stella")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def client_loop(
    http: httpx.AsyncClient,
    token: str,
    deadline: float,
    budget: list[int],
    run_ids: list[str],
    latencies: dict[str, list[float]],
    statuses: dict[int, int],
    create_share: float,
    rng: random.Random,
    healthz_only: bool = False,
) -> None:
    mine: list[str] = []  # this client's tenant's runs (another tenant's would answer 404)
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        roll = rng.random()
        if healthz_only:
            kind, method, url, body = "healthz", "GET", "/healthz", None
        elif roll < create_share:
            kind, method, url, body = "create run", "POST", "/api/export/runs", {"profile": "bench"}
        elif roll < 0.55 and mine:
            kind, method, url, body = "get run", "GET", f"/api/export/runs/{rng.choice(mine)}", None
        elif roll < 0.75:
            kind, method, url, body = "list runs", "GET", "/api/export/runs?limit=20", None
        elif roll < 0.9:
            kind, method, url, body = "list profiles", "GET", "/api/export/profiles", None
        else:
            kind, method, url, body = "plan", "POST", "/api/export/plan", {"profile": "bench"}
        started = time.perf_counter()
        try:
            resp = await http.request(method, url, json=body, headers=headers)
        except httpx.HTTPError:
            statuses[-1] += 1
            continue
        latencies[kind].append(time.perf_counter() - started)
        statuses[resp.status_code] += 1
        if kind == "create run" and resp.status_code == 202:
            run_ids.append(resp.json()["id"])
            mine.append(run_ids[-1])


async def drive(
    url: str,
    tokens: list[str],
    clients: int,
    seconds: float,
    max_requests: int,
    create_share: float,
    healthz_only: bool = False,
) -> tuple[dict[str, list[float]], dict[int, int], list[str], float]:
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[int, int] = defaultdict(int)
    run_ids: list[str] = []
    budget = [max_requests]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *(
                client_loop(
                    http,
                    tokens[n % len(tokens)],
                    deadline,
                    budget,
                    run_ids,
                    latencies,
                    statuses,
                    create_share,
                    random.Random(n),
                    healthz_only,
                )
                for n in range(clients)
            )
        )
        elapsed = time.monotonic() - started
    return latencies, statuses, run_ids, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=20000)
    ap.add_argument("--tenants", type=int, default=4)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--create-share", type=float, default=0.05)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--workers", type=int, default=0, help="extra `stella worker` processes")
    ap.add_argument("--drain", type=float, default=60.0, help="max seconds to wait for runs")
    ap.add_argument(
        "--healthz-only", action="store_true", help="baseline: every client only GETs /healthz"
    )
    ap.add_argument(
        "--reset-database",
        action="store_true",
        help="DROP and recreate the public schema of --database-url first (a scratch database)",
    )
    args = ap.parse_args()

    if args.reset_database and args.database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(args.database_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    tmp = Path(tempfile.mkdtemp(prefix="stella-bench-"))
    settings = make_settings(tmp / "data", args.database_url)
    generate_key(settings)
    services = Services.open(settings)
    tokens = []
    for n in range(args.tenants):
        tenant = f"tenant-{n}"
        put_advisories(services.store, tenant, args.records)
        services.registry.create(
            tenant, "bench", parse_profile_spec({"kind": "json", "variant": "raw"})
        )
        tokens.append(TokenStore(services.store).create("bench", [tenant], ALL_SCOPES)[1])

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    env |= {
        "STELLA_DATA_DIR": str(settings.data_dir),
        "STELLA_DATABASE_URL": settings.database_url,
        "STELLA_SERVICE_QUOTA_CONCURRENT_RUNS": "0",
        "STELLA_SERVICE_QUOTA_RUNS_PER_HOUR": "0",
    }
    procs = [
        subprocess.Popen(
            [str(STELLA), "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "serve.log").open("wb"),
        )
    ]
    procs += [
        subprocess.Popen(
            [str(STELLA), "worker", "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / f"worker-{n}.log").open("wb"),
        )
        for n in range(args.workers)
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        latencies, statuses, run_ids, elapsed = asyncio.run(
            drive(
                url,
                tokens,
                args.clients,
                args.seconds,
                args.max_requests,
                args.create_share,
                args.healthz_only,
            )
        )
        total = sum(len(v) for v in latencies.values())
        everything = [x for v in latencies.values() for x in v]
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print(
            f"backend {backend}, {args.clients} clients, {args.tenants} tenants, "
            f"{args.records} records/tenant, {args.workers} extra workers, {elapsed:.1f} s"
        )
        print(f"requests: {total} ({total / elapsed:.0f}/s); statuses {dict(statuses)}")
        print(
            f"latency all: p50 {statistics.median(everything) * 1000:.1f} ms, "
            f"p99 {percentile(everything, 0.99) * 1000:.1f} ms"
        )
        for kind in sorted(latencies):
            v = latencies[kind]
            print(
                f"  {kind:<14} n={len(v):<6} p50 {statistics.median(v) * 1000:7.1f} ms  "
                f"p99 {percentile(v, 0.99) * 1000:7.1f} ms"
            )
        # Export throughput: wait (bounded) for the created runs to finish.
        drain_start = time.monotonic()
        done: dict[str, str] = {}
        while len(done) < len(run_ids) and time.monotonic() - drain_start < args.drain:
            for rid in run_ids:
                if rid not in done:
                    run = services.repo.find(rid)
                    if run is not None and run.terminal:
                        done[rid] = run.status
            time.sleep(0.5)
        finished = [services.repo.find(r) for r in done]
        if finished:
            first = min(r.created_at for r in finished if r)
            last = max(r.finished_at for r in finished if r and r.finished_at)
            span = (last - first).total_seconds()
            by_status: dict[str, int] = defaultdict(int)
            for s in done.values():
                by_status[s] += 1
            print(
                f"runs: {len(run_ids)} created, {dict(by_status)} within the drain window; "
                f"{len(done) / span:.2f} runs/s from first creation to last finish ({span:.1f} s)"
            )
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
        services.close()


if __name__ == "__main__":
    main()
