"""The benchmark suites. Each returns rows: ours vs a baseline, measured in the same run."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.synth import write_corpus

REAL_SOURCES = [
    ("pypa", "pypa-advisory-database/vulns"),
    ("go-vulndb", "golang-vulndb/data/osv"),
    ("rustsec", "rustsec-advisory-db-osv/crates"),
]


class SuiteUnavailable(Exception):
    """A suite cannot run here (a missing part); reported, never silently skipped."""


@dataclass
class BenchContext:
    corpora: Path
    work: Path
    scale: int
    repeat: int
    trivy_1m: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)


def run_task(task: str, args: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.worker", task, orjson.dumps(args).decode()],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench task {task} failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = orjson.loads(proc.stdout.strip().splitlines()[-1])
    return result


def timed(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, capture_output=True)
    return time.perf_counter() - t


def _stores(ctx: BenchContext) -> dict[str, Path]:
    """Data dirs with the real corpora and with the scaled-up synthetic corpus ingested."""
    if "stores" in ctx.cache:
        return dict(ctx.cache["stores"])
    out: dict[str, Path] = {}
    real = ctx.work / "real"
    run_task(
        "ingest",
        {
            "db": f"sqlite:///{real / 'stella.db'}",
            "sources": [(n, str(ctx.corpora / f)) for n, f in REAL_SOURCES],
        },
    )
    out["real"] = real
    n = 8700 * ctx.scale
    synth_dir = ctx.work / "synthetic-input"
    write_corpus(ctx.corpora, synth_dir, n)
    scaled = ctx.work / f"x{ctx.scale}"
    run_task(
        "ingest",
        {
            "db": f"sqlite:///{scaled / 'stella.db'}",
            "sources": [("synthetic", str(synth_dir))],
        },
    )
    out[f"x{ctx.scale}"] = scaled
    for d in out.values():
        run_task_keys(d)
    ctx.cache["stores"] = out
    ctx.cache["synth_dir"] = synth_dir
    return out


def run_task_keys(data_dir: Path) -> None:
    from export_center.settings import load_settings
    from export_center.signing.interface import KeyType
    from export_center.signing.keystore import KeyStore

    ks = KeyStore.from_settings(load_settings(env={"STELLA_DATA_DIR": str(data_dir)}))
    info = ks.generate(KeyType.ED25519, tenants=["default"])  # the bench exports as default
    (data_dir / "trusted.pem").write_bytes(ks.export_public(info.keyid))


@dataclass
class Suite:
    name: str
    run: Callable[[BenchContext], list[dict[str, Any]]]


def suite_ingest(ctx: BenchContext) -> list[dict[str, Any]]:
    """Ingest of the real OSV feeds into SQLite next to parsing the same files only, each in a
    fresh process, alternated within one run (the machine's load hits both alike)."""
    sources = [(n, str(ctx.corpora / f)) for n, f in REAL_SOURCES]
    ours, base, rss, base_rss, records, processes = [], [], 0.0, 0.0, 0, 1
    for i in range(ctx.repeat):
        db = ctx.work / f"ingest-{i}.db"
        r = run_task("ingest", {"db": f"sqlite:///{db}", "sources": sources})
        for leftover in ctx.work.glob(f"ingest-{i}.db*"):
            leftover.unlink()
        ours.append(r["seconds"])
        rss = max(rss, r["tree_peak_rss_mb"])
        records, processes = r["records"], r["processes"]
        b = run_task("parse_only", {"paths": [path for _n, path in sources]})
        base.append(b["seconds"])
        base_rss = max(base_rss, b["peak_rss_mb"])
    return [
        {
            "name": f"ingest real OSV corpora ({records} advisories) into SQLite (goal <= x2)",
            "unit": "s",
            "ours_runs": ours,
            "baseline_runs": base,
            "baseline_name": "parse the same files (orjson / libyaml) only",
            "peak_rss_mb": rss,
            "note": f"ingest: {records / sorted(ours)[len(ours) // 2]:.0f} advisories/s (median), "
            f"{processes} reading processes (`stella ingest`'s default here); peak RSS is the "
            "peak of the summed resident memory of the ingesting process and the reading "
            "processes (forked: shared pages counted in each); "
            f"parse-only peak RSS {base_rss:.0f} MB",
        }
    ]


def _export_rows(ctx: BenchContext, label: str, data_dir: Path) -> list[dict[str, Any]]:
    ours, base, verify, vbase, rss, vrss = [], [], [], [], 0.0, 0.0
    size = 0
    for i in range(ctx.repeat):
        out = ctx.work / f"out-{label}-{i}"
        r = run_task(
            "export",
            {
                "data_dir": str(data_dir),
                "profile": "bench-raw",
                "out": str(out),
                "spec": {"kind": "json", "variant": "raw", "compression": {"level": 10}},
            },
        )
        ours.append(r["seconds"])
        rss = max(rss, r["peak_rss_mb"])
        size = r["bytes"]
        archive = Path(r["archive"])
        # Baseline: the same JSONL files, `tar --sort=name | zstd -T0 -10`.
        files = ctx.work / f"files-{label}"
        if not files.exists():
            _extract(archive, files)
        base.append(
            timed(
                f"tar --sort=name -C {files} -c . | zstd -T0 -10 -q -c "
                f"> {ctx.work}/baseline.tar.zst"
            )
        )
        v = run_task("verify", {"archive": str(archive), "roots": str(data_dir / "trusted.pem")})
        verify.append(v["seconds"])
        vrss = max(vrss, v["peak_rss_mb"])
        vbase.append(timed(f"sha256sum {archive} >/dev/null && zstd -d -q -c {archive} >/dev/null"))
        shutil.rmtree(out)
    return [
        {
            "name": f"json:raw export, {label} ({size / 1e6:.1f} MB archive)",
            "unit": "s",
            "ours_runs": ours,
            "baseline_runs": base,
            "baseline_name": "tar --sort=name | zstd -T0 -10 over the same JSONL",
            "peak_rss_mb": rss,
        },
        {
            "name": f"export verify, {label}",
            "unit": "s",
            "ours_runs": verify,
            "baseline_runs": vbase,
            "baseline_name": "sha256sum + zstd -d of the same archive",
            "peak_rss_mb": vrss,
        },
    ]


def _extract(archive: Path, dest: Path) -> None:
    import zstandard

    dest.mkdir(parents=True)
    with archive.open("rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
        with tarfile.open(fileobj=reader, mode="r|") as tf:
            tf.extractall(dest, filter="data")
    # Only the JSONL shards: the baseline compresses the same payload the writer had.
    for p in dest.iterdir():
        if p.name != "data":
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()


def suite_export(ctx: BenchContext) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, data_dir in _stores(ctx).items():
        rows += _export_rows(ctx, label, data_dir)
    return rows


def suite_trivy(ctx: BenchContext) -> list[dict[str, Any]]:
    # Goal (issue 16): 1M advisories in <= 30 s and <= 300 MB peak RSS on 2 cores.
    sizes = [100_000] + ([1_000_000] if ctx.trivy_1m else [])
    rows = []
    for n in sizes:
        src = ctx.work / f"advisories-{n}.jsonl"
        prep = run_task("trivy_prep", {"corpora": str(ctx.corpora), "n": n, "out": str(src)})
        if prep["advisories"] != n:
            raise RuntimeError(
                f"the synthetic trivy input has {prep['advisories']:,} advisories, not {n:,} "
                f"({prep['refused']} refused by the OSV reader, e.g. {prep['first_refused']})"
            )
        # The input is written: its write-back (1.5 GB for 1M) must not land on the build
        # measured next (the store the adapter reads from is on disk already).
        os.sync()
        ours, base, rss, main_rss, worker_rss = [], [], 0.0, 0.0, 0.0
        # Repeated like every other row (1M was one run, to save time, and one run on a VM
        # is a draw); the row's note lists every run.
        workers = _trivy_workers()
        for _ in range(ctx.repeat):
            out = ctx.work / f"trivy-{n}" / "trivy.db"
            out.parent.mkdir(exist_ok=True)
            r = run_task("trivy", {"input": str(src), "out": str(out), "workers": workers})
            ours.append(r["seconds"])
            main_rss = max(main_rss, r["peak_rss_mb"])
            worker_rss = max(worker_rss, r["worker_peak_rss_mb"])
            # The processes run at the same time: the peak of their summed resident memory,
            # sampled every 0.1 s (bench/worker.py _TreeRss).
            rss = max(rss, r["tree_peak_rss_mb"])
            base.append(run_task("trivy", {"input": str(src), "baseline": True})["seconds"])
            shutil.rmtree(out.parent)
        src.unlink()
        rows.append(
            {
                "name": f"trivy.db build, {n:,} synthetic advisories",
                "unit": "s",
                "ours_runs": ours,
                "baseline_runs": base,
                "baseline_name": "read + serialize the same advisories as JSON",
                "peak_rss_mb": rss,
                "note": (
                    f"trivy.db {n:,}: {workers} mapping processes, then {workers} merging "
                    f"processes (one root bucket each at a time); peak RSS is the peak of the "
                    f"summed resident memory of the main process (own peak {main_rss:.0f} MB) "
                    f"and its workers (largest worker's peak {worker_rss:.0f} MB); runs in "
                    f"order: {', '.join(f'{x:.1f}' for x in ours)} s"
                ),
            }
        )
    return rows


def _trivy_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def suite_mirror_delta(ctx: BenchContext) -> list[dict[str, Any]]:
    rows = []
    for fraction in (0.01, 0.10):
        ours, base, rss = [], [], 0.0
        info: dict[str, Any] = {}
        for i in range(min(ctx.repeat, 2)):
            data = ctx.work / f"mirror-{fraction}-{i}"
            run_task(
                "ingest",
                {
                    "db": f"sqlite:///{data / 'stella.db'}",
                    "sources": [("go-vulndb", str(ctx.corpora / "golang-vulndb/data/osv"))],
                },
            )
            run_task_keys(data)
            info = run_task(
                "mirror_delta",
                {
                    "data_dir": str(data),
                    "out": str(data / "out"),
                    "fraction": fraction,
                },
            )
            ours.append(info["delta_bytes"] / 1e6)
            base.append(info["full_bytes"] * fraction / 1e6)
            rss = max(rss, info["peak_rss_mb"])
            shutil.rmtree(data)
        rows.append(
            {
                "name": f"mirror:delta size, {fraction:.0%} of {info['records']} records revised",
                "unit": "MB",
                "ours_runs": ours,
                "baseline_runs": base,
                "baseline_name": f"{fraction:.0%} of the mirror:full archive",
                "peak_rss_mb": rss,
                "note": f"mirror:full {info['full_bytes'] / 1e6:.2f} MB; delta at {fraction:.0%}: "
                f"{info['delta_bytes'] / 1e6:.3f} MB",
            }
        )
    return rows


def _pg_url(ctx: BenchContext) -> str:
    """STELLA_TEST_PG_URL (a scratch database: it is wiped), else a throw-away cluster started
    with scripts/start-postgres.sh in the bench's temporary directory (stopped at the end)."""
    import os

    url = os.environ.get("STELLA_TEST_PG_URL")
    if url:
        return url
    if "pg_url" in ctx.cache:
        return str(ctx.cache["pg_url"])
    from bench.service_load import free_port

    script = Path(__file__).resolve().parents[1] / "scripts" / "start-postgres.sh"
    pgdata = ctx.work / "pg"
    env = {**os.environ, "PGPORT": str(free_port()), "PGDATA": str(pgdata)}
    try:
        out = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, check=True, timeout=120
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise SuiteUnavailable(
            f"no PostgreSQL: set STELLA_TEST_PG_URL or install it ({str(e)[:200]})"
        ) from e
    ctx.cache["pg_url"] = out.strip().splitlines()[-1]
    ctx.cleanups.append(lambda: _stop_pg(pgdata))
    return str(ctx.cache["pg_url"])


def _stop_pg(pgdata: Path) -> None:
    import glob
    import os

    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1:]
    cmd = [*pg_ctl, "-D", str(pgdata), "-m", "fast", "stop"]
    if os.getuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, capture_output=True, check=False, timeout=60)


def suite_service(ctx: BenchContext) -> list[dict[str, Any]]:
    """API latency at a fixed 200 requests/s of mixed reads while exports run (SQLite)."""
    from bench import service_load

    rate, seconds = 200.0, 20.0
    setup = service_load.prepare(ctx.work / "service", ctx.corpora, None)
    rows = []
    for workers, label in (
        (1, "stella serve (1 worker process)"),
        (0, "serve --workers 0 (exports in-process)"),
    ):
        result = service_load.latency(
            ctx.work / "service",
            setup,
            workers=workers,
            rate=rate,
            seconds=seconds,
            repeat=min(ctx.repeat, 2),
        )
        reads, health = result["reads"], result["healthz"]
        errors = sum(r["error_count"] for r in reads + health)
        # What the errors were (status or exception, by request kind), summed over the runs.
        kinds: dict[str, int] = {}
        for r in reads + health:
            for what, n in r.get("errors", {}).items():
                kinds[what] = kinds.get(what, 0) + n
        error_kinds = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) or "none"
        exports = sum(r["exports_finished"] for r in reads)
        rows.append(
            {
                "name": f"API p99 at {rate:.0f} req/s, mixed reads while exports run, {label}"
                " (goal < 50 ms, no error)",
                "unit": "ms",
                "ours_runs": [r["all"]["p99_ms"] for r in reads],
                "baseline_runs": [r["all"]["p99_ms"] for r in health],
                "baseline_name": f"GET /healthz at {rate:.0f} req/s, same server, same exports",
                "peak_rss_mb": result["peak_rss_mb"],
                "note": f"{label}: reads p50 "
                + "/".join(f"{r['all']['p50_ms']:.1f}" for r in reads)
                + " ms, p99 "
                + "/".join(f"{r['all']['p99_ms']:.1f}" for r in reads)
                + f" ms; errors {errors} ({error_kinds}); {exports} exports finished during"
                " the reads;"
                " API process CPU "
                + "/".join(f"{r['api_cpu_share']:.0%}" for r in reads)
                + "; generator CPU "
                + "/".join(f"{r['generator_cpu_s'] / r['wall_s']:.0%}" for r in reads)
                + f"; peak RSS {result['rss_note']}",
            }
        )
    return rows


def suite_workers(ctx: BenchContext) -> list[dict[str, Any]]:
    """Export throughput of 2 worker processes vs 1, on PostgreSQL."""
    from bench import service_load

    url = _pg_url(ctx)
    setup = service_load.prepare(ctx.work / "workers", ctx.corpora, url)
    runs = 12
    by_workers: dict[int, list[float]] = {1: [], 2: []}
    rss = 0.0
    for _ in range(min(ctx.repeat, 2)):
        for n in (1, 2):
            r = service_load.throughput(ctx.work / "workers", setup, workers=n, runs=runs)
            by_workers[n].append(r["runs_per_s"])
            rss = max(rss, r["peak_rss_mb"])
    return [
        {
            "name": f"export throughput, 2 worker processes ({runs} json:raw runs of"
            f" {service_load.CORPUS[0]}, PostgreSQL; goal >= x1.6, higher is better)",
            "unit": "runs/s",
            "ours_runs": by_workers[2],
            "baseline_runs": by_workers[1],
            "baseline_name": "1 worker process",
            "peak_rss_mb": rss,
            "note": "workers: PostgreSQL from "
            + ("STELLA_TEST_PG_URL" if "pg_url" not in ctx.cache else "a throw-away cluster")
            + f"; runs/s with 1 worker {by_workers[1]}, with 2 {by_workers[2]}",
        }
    ]


def _startup_runs(cmd: list[str], repeat: int) -> tuple[list[float], float]:
    """Wall times of a short command (best of 5 per repeat: startup noise is one-sided) and
    its peak RSS in MB."""
    runs, rss = [], 0.0
    for _ in range(repeat):
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, check=True)
            best = min(best, time.perf_counter() - t)
            del proc
        runs.append(best)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss = max(rss, usage.ru_maxrss / 1024)
    return runs, rss


def suite_cli(ctx: BenchContext) -> list[dict[str, Any]]:
    """Start-up of the command line: every test subprocess and every user command pays it."""
    stella = str(Path(sys.executable).with_name("stella"))
    base, _ = _startup_runs([sys.executable, "-c", "pass"], ctx.repeat)
    rows = []
    for args in (["--help"], ["--version"]):
        ours, rss = _startup_runs([stella, *args], ctx.repeat)
        rows.append(
            {
                "name": f"stella {' '.join(args)} (goal < 0.3 s)",
                "unit": "s",
                "ours_runs": ours,
                "baseline_runs": base,
                "baseline_name": "python -c pass",
                "peak_rss_mb": rss,
            }
        )
    return rows


SUITES = [
    Suite("cli", suite_cli),
    Suite("ingest", suite_ingest),
    Suite("export", suite_export),
    Suite("trivy", suite_trivy),
    Suite("mirror-delta", suite_mirror_delta),
    Suite("service", suite_service),
    Suite("workers", suite_workers),
]
