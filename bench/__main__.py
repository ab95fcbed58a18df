"""``python -m bench [--scale N] [--repeat R] [--only SUITE ...] [--trivy-1m]``.

Runs each benchmark in a fresh subprocess (so peak RSS is the benchmark's own), next to a
baseline measured in the same script run, repeats it, and writes ``bench/results/latest.json``
plus the Markdown table in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import suites

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def _versions() -> dict[str, str]:
    def tool(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
            return out.strip().splitlines()[0] if out.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "absent"

    import sqlalchemy
    import zstandard

    from export_center import __version__

    return {
        "python": platform.python_version(),
        "export_center": __version__,
        "zstandard": zstandard.__version__,
        "libzstd": ".".join(map(str, zstandard.ZSTD_VERSION)),
        "sqlalchemy": sqlalchemy.__version__,
        "tar": tool(["tar", "--version"]),
        "zstd": tool(["zstd", "--version"]),
        "kernel": platform.release(),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / statistics.median(values) if values else 0.0,
    }


def _run_suites(ctx: suites.BenchContext, only: list[str] | None, results: dict[str, Any]) -> bool:
    """Run the chosen suites into ``results``; True when one of them failed."""
    failed = False
    for suite in suites.SUITES:
        if only and suite.name not in only:
            continue
        print(f"== {suite.name}", file=sys.stderr, flush=True)
        try:
            rows = suite.run(ctx)
        except suites.SuiteUnavailable as e:
            results["suites"][suite.name] = {"unavailable": str(e)}
            print(f"   unavailable: {e}", file=sys.stderr)
            continue
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            # One broken suite must not lose the others' figures: record it and go on.
            results["suites"][suite.name] = {"unavailable": f"failed: {str(e)[:300]}"}
            print(f"   FAILED: {e}", file=sys.stderr)
            failed = True
            continue
        for row in rows:
            row["ours"] = _summary(row.pop("ours_runs"))
            row["baseline"] = _summary(row.pop("baseline_runs"))
            row["ratio"] = row["ours"]["median"] / row["baseline"]["median"]
            print(
                f"   {row['name']}: ours {row['ours']['median']:.3f}{row['unit']} vs "
                f"{row['baseline_name']} {row['baseline']['median']:.3f}{row['unit']} "
                f"= x{row['ratio']:.2f}; peak RSS {row.get('peak_rss_mb', 0):.0f} MB",
                file=sys.stderr,
                flush=True,
            )
        results["suites"][suite.name] = {"rows": rows}
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--scale", type=int, default=10, help="synthetic scale-up factor (default 10)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="suite names to run")
    ap.add_argument("--trivy-1m", action="store_true", help="also build a 1M-advisory trivy.db")
    ap.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    ap.add_argument("--render-only", action="store_true", help="rewrite the Markdown from JSON")
    args = ap.parse_args(argv)
    if args.render_only:
        DOC.write_text(render_markdown(orjson.loads((RESULTS / "latest.json").read_bytes())))
        return 0

    started = time.time()
    results: dict[str, Any] = {
        # Load average before and after: other work on the machine skews every figure.
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": list(os.getloadavg()),
        },
        "versions": _versions(),
        "params": {"scale": args.scale, "repeat": args.repeat},
        "suites": {},
    }
    with tempfile.TemporaryDirectory(prefix="stella-bench-") as tmp:
        work = Path(tmp)
        ctx = suites.BenchContext(
            corpora=args.corpora,
            work=work,
            scale=args.scale,
            repeat=args.repeat,
            trivy_1m=args.trivy_1m,
        )
        try:
            failed = _run_suites(ctx, args.only, results)
        finally:
            for cleanup in ctx.cleanups:
                cleanup()
    results["wall_seconds"] = time.time() - started
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    previous = RESULTS / "latest.json"
    if args.only and previous.is_file():
        # --only updates its suites' rows and keeps the others' figures (and says so).
        kept = orjson.loads(previous.read_bytes())
        for name, suite in kept.get("suites", {}).items():
            if name not in results["suites"]:
                suite["from_earlier_run"] = True
                results["suites"][name] = suite
        results["suites"] = {
            s.name: results["suites"][s.name] for s in suites.SUITES if s.name in results["suites"]
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    DOC.write_text(render_markdown(results))
    print(
        f"wrote {RESULTS / 'latest.json'} and {DOC} in {results['wall_seconds']:.0f} s",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _load(machine: dict[str, Any]) -> str:
    if "loadavg_start" not in machine:
        return ""
    start, end = machine["loadavg_start"], machine.get("loadavg_end", machine["loadavg_start"])
    return (
        f" Load average (1/5/15 min) {start[0]:.2f}/{start[1]:.2f}/{start[2]:.2f} at the start,"
        f" {end[0]:.2f}/{end[1]:.2f}/{end[2]:.2f} at the end: on a busy machine every wall-clock"
        " figure (ours and baselines alike) is slower and noisier."
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rss(row: dict[str, Any]) -> str:
    mb = row.get("peak_rss_mb") or 0.0
    return f"{mb:.0f} MB" if mb else "n/a"


def render_markdown(results: dict[str, Any]) -> str:
    m, v = results["machine"], results["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`); do not edit by hand. Every figure is the",
        "median of the repeats, next to a baseline measured in the same run; the ratio is",
        "ours / baseline (lower is better for times). Spread = (max - min) / median.",
        "",
        f"Machine: {m['cores']} cores, {m['platform']}. Python {v['python']}, "
        f"zstandard {v['zstandard']}, {v['zstd']}, {v['tar']}. "
        f"Scale x{results['params']['scale']}, {results['params']['repeat']} repeats, "
        f"{results['wall_seconds']:.0f} s in all.{_load(m)}",
        "",
        "| suite | benchmark | ours | baseline | ratio | spread (ours) | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    # In the suites' own order: latest.json is written with sorted keys, and --render-only
    # must give the page a live run gives.
    rank = {s.name: i for i, s in enumerate(suites.SUITES)}
    ordered = sorted(results["suites"].items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    for name, suite in ordered:
        if "unavailable" in suite:
            lines.append(f"| {name} | unavailable: {suite['unavailable']} | | | | | |")
            continue
        label = f"{name} (earlier run)" if suite.get("from_earlier_run") else name
        for r in suite["rows"]:
            lines.append(
                f"| {label} | {_cell(r['name'])} | {r['ours']['median']:.3f} {r['unit']} | "
                f"{_cell(r['baseline_name'])}: {r['baseline']['median']:.3f} {r['unit']} | "
                f"x{r['ratio']:.2f} | {r['ours']['spread']:.0%} | "
                f"{_rss(r)} |"
            )
    notes = [r.get("note") for _, s in ordered for r in s.get("rows", [])]
    if any(notes):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes if n]
    lines += ["", *HOW]
    return "\n".join(lines) + "\n"


#: What each suite measures (rendered under the table, so the page stands alone).
HOW = (
    "## How the rows are measured",
    "",
    "Each measured task runs in a fresh process (`python -m bench.worker`); peak RSS is that",
    "process's VmHWM. `--only SUITE ...` reruns some suites and keeps the others' rows (marked",
    '"earlier run"); `--trivy-1m` adds the 1M-advisory trivy.db row. Which goals are met, and',
    "what limits the others: docs/performance.md.",
    "",
    "- **cli**: `stella --help` / `--version`, best of 5, against `python -c pass`.",
    "- **ingest**: the three real OSV feeds into a fresh SQLite store, as `stella ingest` runs",
    "  by default (reading processes as many as the cores, at most 4), against parsing the same",
    "  files only in one process.",
    "- **export**: `json:raw`, zstd level 10, of the real corpora and of a synthetic corpus scaled",
    "  up from them (x10: 87,000 advisories, 313 MB of JSONL), timed from the plan to the",
    "  published, signed archive; baseline: `tar --sort=name | zstd -T0 -10` over the same JSONL",
    "  files (extracted from our archive). **verify**: `stella export verify`'s checks on that",
    "  archive, against `sha256sum` + `zstd -d` of it.",
    "- **trivy**: trivy.db from synthetic advisories, against reading and serializing them.",
    "  Every size is built `--repeat` times, 1M too; the row's note lists the runs in order.",
    "- **mirror-delta**: size of a mirror:delta after revising 1 % / 10 % of the records.",
    "- **service**: `stella serve` on SQLite with the Go vulnerability database (4,291",
    "  advisories) ingested, as a user runs it. A feeder keeps two json:raw runs queued, so the",
    "  workers export the whole time. `bench/loadgen.py`, a process of its own, sends requests at",
    "  a fixed rate (open loop: request i is due at t0 + i/rate whatever the server does; latency",
    "  counts from the due time, so a slow server cannot lower the rate it is measured at) on",
    "  keep-alive connections: mixed reads (get run 40 %, list runs 25 %, list profiles 20 %, get",
    "  profile 10 %, plan 5 %), then `GET /healthz` at the same rate on the same server as the",
    "  baseline. The row is run with the default (one worker process) and with `--workers 0`",
    "  (exports in threads of the API process, as before issue 16).",
    "- **workers**: 12 json:raw runs of the Go vulnerability database queued on PostgreSQL,",
    "  then `stella serve --workers 2` (ours) or `--workers 1` (baseline); runs per second from",
    "  the first start to the last finish (higher is better). PostgreSQL is `STELLA_TEST_PG_URL`",
    "  when set",
    "  (that database is wiped) or a throw-away cluster that `scripts/start-postgres.sh` starts in",
    "  the bench's temporary directory (fsync off) and that is stopped at the end.",
)


if __name__ == "__main__":
    raise SystemExit(main())
