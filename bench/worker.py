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
    from export_center.ingest.pipeline import ingest_paths
    from export_center.store.repository import EvidenceStore

    store = EvidenceStore.open(a["db"])
    t = time.perf_counter()
    total = 0
    for source, path in a["sources"]:
        rep = ingest_paths(store, [Path(path)], source=source, tenant="default", max_bytes=1 << 28)
        total += rep.stored + rep.unchanged
    return {"seconds": time.perf_counter() - t, "records": total}


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


def task_trivy(a: dict[str, Any]) -> dict[str, Any]:
    from bench.synth import load_templates, synthesize
    from export_center.ingest.osv import OsvReader
    from export_center.model import Advisory
    from export_center.trivy.dbwriter import write_trivy_db

    reader = OsvReader()
    templates = load_templates(Path(a["corpora"]))

    def advisories() -> Any:
        for doc in synthesize(templates, a["n"], seed=7):
            content = orjson.dumps(doc)
            for rec in reader.read(doc, content, "synthetic"):
                if not hasattr(rec, "normalized"):
                    continue
                norm = rec.normalized
                assert isinstance(norm, Advisory)
                yield "synthetic", norm

    if a.get("baseline"):
        # Baseline: produce the same advisories and serialize their JSON values, nothing else.
        t = time.perf_counter()
        from export_center.model import to_json_dict

        n = 0
        for _src, adv in advisories():
            n += len(orjson.dumps(to_json_dict(adv)))
        return {"seconds": time.perf_counter() - t, "bytes": n}
    out = Path(a["out"])
    t = time.perf_counter()
    report = write_trivy_db(advisories(), out, work_dir=out.parent)
    return {
        "seconds": time.perf_counter() - t,
        "bytes": out.stat().st_size,
        "entries": report.entries,
    }


TASKS = {"ingest": task_ingest, "export": task_export, "verify": task_verify, "trivy": task_trivy}


def main() -> None:
    task, args = sys.argv[1], orjson.loads(sys.argv[2])
    result = TASKS[task](args)
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
