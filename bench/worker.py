"""One measured task in a fresh process: ``python -m bench.worker TASK ARGS-JSON``.

Prints one JSON line: ``{"seconds": ..., "peak_rss_mb": ..., ...}``. Peak RSS is VmHWM from
/proc/self/status (``ru_maxrss`` of an exec'd child can carry the parent's peak).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def task_ingest(a: dict[str, Any]) -> dict[str, Any]:
    from export_center.ingest.pipeline import ingest_paths, reading_processes
    from export_center.store.repository import EvidenceStore

    store = EvidenceStore.open(a["db"])
    processes = reading_processes()
    total = 0
    with _TreeRss() as tree:
        t = time.perf_counter()
        for source, path in a["sources"]:
            # As `stella ingest` runs by default: reading processes as many as the cores.
            rep = ingest_paths(
                store,
                [Path(path)],
                source=source,
                tenant="default",
                max_bytes=1 << 28,
                processes=processes,
            )
            total += rep.stored + rep.unchanged
        seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "records": total,
        "processes": processes,
        # The reading processes are forked: their resident memory counts the pages they
        # share with this one again, so the sum overstates what the machine held.
        "tree_peak_rss_mb": max(tree.peak_sum_kb / 1024, peak_rss_mb()),
    }


def task_parse_only(a: dict[str, Any]) -> dict[str, Any]:
    """The ingest row's baseline: read and parse the same files (orjson; libyaml's C loader),
    nothing else."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    t = time.perf_counter()
    files = 0
    for root in a["paths"]:
        for p in sorted(Path(root).rglob("*")):
            if p.suffix == ".json":
                orjson.loads(p.read_bytes())
                files += 1
            elif p.suffix == ".yaml":
                yaml.load(p.read_bytes(), Loader=loader)  # noqa: S506 (a safe loader)
                files += 1
    return {"seconds": time.perf_counter() - t, "files": files}


def task_export(a: dict[str, Any]) -> dict[str, Any]:
    from export_center.exporter import run_export
    from export_center.planner.profiles import parse_profile_spec
    from export_center.planner.registry import ProfileRegistry
    from export_center.settings import load_settings
    from export_center.store.repository import EvidenceStore

    settings = load_settings(env={"STELLA_DATA_DIR": a["data_dir"]})
    store = EvidenceStore.open(settings.database_url)
    reg = ProfileRegistry(store)
    spec = parse_profile_spec(a["spec"])
    try:
        prof = reg.create("default", a["profile"], spec)
    except Exception:
        prof = reg.get("default", a["profile"])
    t = time.perf_counter()
    out = run_export(settings, store, prof, Path(a["out"]))
    return {
        "seconds": time.perf_counter() - t,
        "archive": str(out.bundle.archive_path),
        "bytes": out.bundle.archive_bytes,
    }


def task_verify(a: dict[str, Any]) -> dict[str, Any]:
    from export_center.bundle.verify import verify_bundle
    from export_center.signing.interface import load_trust_roots

    roots = load_trust_roots(Path(a["roots"]).read_bytes())
    t = time.perf_counter()
    report = verify_bundle(Path(a["archive"]), roots)
    if not report.ok:
        raise SystemExit(f"verify failed: {report.as_json()}")
    return {"seconds": time.perf_counter() - t}


def task_trivy_prep(a: dict[str, Any]) -> dict[str, Any]:
    """Synthesize ``n`` advisories once, as normalized JSON lines, for both trivy measurements."""
    from bench.synth import load_templates, synthesize
    from export_center.ingest.osv import OsvReader
    from export_center.model import Advisory, to_json_dict

    reader = OsvReader()
    templates = load_templates(Path(a["corpora"]))
    t = time.perf_counter()
    written = refused = 0
    first_refused: list[str] = []
    with Path(a["out"]).open("wb") as fh:
        for doc in synthesize(templates, a["n"], seed=7):
            for rec in reader.read(doc, orjson.dumps(doc), "synthetic"):
                norm = getattr(rec, "normalized", None)
                if isinstance(norm, Advisory):
                    fh.write(orjson.dumps(to_json_dict(norm)) + b"\n")
                    written += 1
                else:  # counted: the row names the number of advisories it was built from
                    refused += 1
                    if len(first_refused) < 3:
                        first_refused.append(repr(rec)[:200])
    return {
        "seconds": time.perf_counter() - t,
        "advisories": written,
        "refused": refused,
        "first_refused": first_refused,
    }


def _read_advisories(path: Path) -> Any:
    from export_center.model import advisory_from_json

    with path.open("rb") as fh:
        for line in fh:
            yield "synthetic", advisory_from_json(orjson.loads(line))


def _advisory_lines(path: Path) -> Any:
    # The store hands the trivy:db adapter each advisory's normalized JSON bytes; so does this.
    with path.open("rb") as fh:
        for line in fh:
            yield "synthetic", line


def _rss_kb(pid: int | str) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) when it is gone."""
    rss = hwm = 0
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


class _TreeRss:
    """Samples the resident memory of this process and its children every 0.1 s: the peak of
    their sum (what the machine had to hold at once) and each child's own peak (VmHWM, read while
    it runs: ``ru_maxrss`` of a spawned child can include its parent's size at fork)."""

    def __init__(self) -> None:
        import os
        import threading

        self.pid = os.getpid()
        self.peak_sum_kb = 0
        self.child_hwm_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The ppid is the second field after the parenthesized command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                found.append(entry.name)
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            total = _rss_kb(self.pid)[0]
            for child in self._children():
                rss, hwm = _rss_kb(child)
                total += rss
                self.child_hwm_kb = max(self.child_hwm_kb, hwm)
            self.peak_sum_kb = max(self.peak_sum_kb, total)

    def __enter__(self) -> _TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def task_trivy(a: dict[str, Any]) -> dict[str, Any]:
    from export_center.trivy.dbwriter import write_trivy_db

    src = Path(a["input"])
    if a.get("baseline"):
        # Baseline: read the same advisories and serialize their JSON values, nothing else.
        from export_center.model import to_json_dict

        t = time.perf_counter()
        n = sum(len(orjson.dumps(to_json_dict(adv))) for _s, adv in _read_advisories(src))
        return {"seconds": time.perf_counter() - t, "bytes": n}
    out = Path(a["out"])
    workers = a.get("workers")
    with _TreeRss() as tree:
        t = time.perf_counter()
        # As the trivy:db adapter calls it: the file is an intermediate the bundle archives
        # (and syncs), so it is not synced itself.
        report = write_trivy_db(
            _advisory_lines(src), out, work_dir=out.parent, workers=workers, durable=False
        )
        seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "bytes": out.stat().st_size,
        "entries": report.entries,
        "vulnerabilities": report.vulnerabilities,
        "worker_peak_rss_mb": tree.child_hwm_kb / 1024,
        "tree_peak_rss_mb": max(tree.peak_sum_kb / 1024, peak_rss_mb()),
    }


def task_mirror_delta(a: dict[str, Any]) -> dict[str, Any]:
    """mirror:full of the Go vulndb, then ``fraction`` of its records revised, then mirror:delta."""
    import random

    from export_center.exporter import run_export
    from export_center.ingest.pipeline import InputDocument, parse_records
    from export_center.model import ParsedRecord
    from export_center.planner.profiles import parse_profile_spec
    from export_center.planner.registry import ProfileRegistry
    from export_center.settings import load_settings
    from export_center.store.repository import EvidenceStore

    settings = load_settings(env={"STELLA_DATA_DIR": a["data_dir"]})
    store = EvidenceStore.open(settings.database_url)
    reg = ProfileRegistry(store)
    full = reg.create(
        "default", "bench-full", parse_profile_spec({"kind": "mirror", "variant": "full"})
    )
    full_bundle = run_export(settings, store, full, Path(a["out"]) / "full").bundle
    records = list(store.iter_raw("default", store.current_sequence("default")))
    rng = random.Random(11)
    changed = rng.sample(records, max(1, round(len(records) * a["fraction"])))
    with store.session() as s:
        cursor = store.lock_tenant(s, "default")
        for rec in changed:
            doc = orjson.loads(rec.content)
            doc["summary"] = f"{doc.get('summary') or ''} (revised)"
            content = orjson.dumps(doc)
            for parsed in parse_records(InputDocument(rec.upstream_id, content)):
                if isinstance(parsed, ParsedRecord):
                    store.put(s, cursor, rec.source, parsed)
        s.commit()
    delta = reg.create(
        "default",
        "bench-delta",
        parse_profile_spec(
            {
                "kind": "mirror",
                "variant": "delta",
                "options": {"base": {"bundle": str(full_bundle.archive_path)}},
            }
        ),
    )
    t = time.perf_counter()
    delta_bundle = run_export(settings, store, delta, Path(a["out"]) / "delta").bundle
    return {
        "seconds": time.perf_counter() - t,
        "full_bytes": full_bundle.archive_bytes,
        "delta_bytes": delta_bundle.archive_bytes,
        "records": len(records),
        "changed": len(changed),
    }


TASKS = {
    "ingest": task_ingest,
    "parse_only": task_parse_only,
    "export": task_export,
    "verify": task_verify,
    "trivy_prep": task_trivy_prep,
    "trivy": task_trivy,
    "mirror_delta": task_mirror_delta,
}


def main() -> None:
    task, args = sys.argv[1], orjson.loads(sys.argv[2])
    result = TASKS[task](args)
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
