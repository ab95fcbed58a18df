"""The benchmark suites. Each returns rows: ours vs a baseline, measured in the same run."""

from __future__ import annotations

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
import yaml

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


def _parse_only(paths: list[Path]) -> float:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    t = time.perf_counter()
    for root in paths:
        for p in sorted(root.rglob("*")):
            if p.suffix == ".json":
                orjson.loads(p.read_bytes())
            elif p.suffix == ".yaml":
                yaml.load(p.read_bytes(), Loader=loader)  # noqa: S506
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
    info = ks.generate(KeyType.ED25519)
    (data_dir / "trusted.pem").write_bytes(ks.export_public(info.keyid))


@dataclass
class Suite:
    name: str
    run: Callable[[BenchContext], list[dict[str, Any]]]


def suite_ingest(ctx: BenchContext) -> list[dict[str, Any]]:
    paths = [ctx.corpora / f for _n, f in REAL_SOURCES]
    ours, base, rss, records = [], [], 0.0, 0
    for i in range(ctx.repeat):
        db = ctx.work / f"ingest-{i}.db"
        r = run_task(
            "ingest",
            {
                "db": f"sqlite:///{db}",
                "sources": [(n, str(ctx.corpora / f)) for n, f in REAL_SOURCES],
            },
        )
        db.unlink()
        ours.append(r["seconds"])
        rss = max(rss, r["peak_rss_mb"])
        records = r["records"]
        base.append(_parse_only(paths))
    return [
        {
            "name": f"ingest real OSV corpora ({records} advisories) into SQLite",
            "unit": "s",
            "ours_runs": ours,
            "baseline_runs": base,
            "baseline_name": "parse the same files (orjson / libyaml) only",
            "peak_rss_mb": rss,
            "note": f"ingest: {records / sorted(ours)[len(ours) // 2]:.0f} advisories/s (median)",
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
    sizes = [100_000] + ([1_000_000] if ctx.trivy_1m else [])
    rows = []
    for n in sizes:
        ours, base, rss = [], [], 0.0
        repeats = ctx.repeat if n <= 100_000 else 1
        for _ in range(repeats):
            out = ctx.work / f"trivy-{n}" / "trivy.db"
            out.parent.mkdir(exist_ok=True)
            r = run_task("trivy", {"corpora": str(ctx.corpora), "n": n, "out": str(out)})
            ours.append(r["seconds"])
            rss = max(rss, r["peak_rss_mb"])
            b = run_task("trivy", {"corpora": str(ctx.corpora), "n": n, "baseline": True})
            base.append(b["seconds"])
            shutil.rmtree(out.parent)
        rows.append(
            {
                "name": f"trivy.db build, {n:,} synthetic advisories",
                "unit": "s",
                "ours_runs": ours,
                "baseline_runs": base,
                "baseline_name": "produce + serialize the same advisories as JSON",
                "peak_rss_mb": rss,
                "note": f"trivy.db {n:,}: target < 60 s and < 500 MB for 1M",
            }
        )
    return rows


SUITES = [
    Suite("ingest", suite_ingest),
    Suite("export", suite_export),
    Suite("trivy", suite_trivy),
]
