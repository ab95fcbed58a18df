"""Ingest with reading processes (``stella ingest --jobs N``): the files are read and parsed in
forked processes, the records written by the ingesting process in input order. The store must
hold exactly what an ingest read in one process stores, on the real corpora; progress and
refusals must behave the same (cancellation: tests/ingest/test_pipeline.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from export_center.ingest import pipeline
from export_center.ingest.pipeline import IngestReport, ingest_paths, survey
from export_center.store.repository import EvidenceStore

FEEDS = [
    ("pypa", "pypa-advisory-database/vulns"),
    ("go-vulndb", "golang-vulndb/data/osv"),
    ("rustsec", "rustsec-advisory-db-osv/crates"),
]
# What a row holds, without the wall-clock columns (the two ingests run at different times).
TABLES = {
    "tenants": "name, last_seq",
    "raw_records": "id, tenant, source, upstream_id, revision, observation_id, doc_type, format, "
    "media_type, digest, size, content, withdrawn, seq, superseded_seq, supersedes",
    "normalized_records": "id, raw_id, tenant, record_type, record_key, data",
    "advisory_packages": "normalized_id, tenant, purl_type, name",
    "vex_statements": "normalized_id, tenant, vulnerability, product, status, justification",
    "sbom_components": "normalized_id, tenant, purl, purl_type, name, version, sha1",
    "change_log": "tenant, seq, kind, raw_id, observation_id, previous_observation_id, doc_type",
}
_PIDS_FILE = "STELLA_TEST_READING_PIDS"


def _recording_read_chunk(files: list[tuple[Path, bool]], max_bytes: int) -> list[Any]:
    """``_read_chunk``, noting which process ran it (module level: the pool pickles it)."""
    with open(os.environ[_PIDS_FILE], "a") as f:
        f.write(f"{os.getpid()}\n")
    return _READ_CHUNK(files, max_bytes)


_READ_CHUNK = pipeline._read_chunk


def _dump(store: EvidenceStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as c:
        return {
            table: [tuple(r) for r in c.execute(text(f"SELECT {cols} FROM {table} ORDER BY 1, 2"))]
            for table, cols in TABLES.items()
        }


def _summary(report: IngestReport) -> tuple[Any, ...]:
    return (
        report.files,
        report.files_read,
        report.files_refused,
        report.bytes,
        report.inserted,
        report.revisions,
        report.withdrawals,
        report.unchanged,
        report.skipped,
        report.refused,
        report.collisions,
        report.interrupted,
    )


@pytest.mark.slow
def test_reading_processes_store_exactly_what_one_process_stores(
    corpora: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    monkeypatch.setenv(_PIDS_FILE, str(pids))
    monkeypatch.setattr(pipeline, "_read_chunk", _recording_read_chunk)
    stores, reports = [], []
    for processes in (1, 2):
        store = EvidenceStore.open(f"sqlite:///{tmp_path / f'{processes}.db'}")
        runs = [
            ingest_paths(
                store,
                [corpora / path],
                source=source,
                tenant="t",
                max_bytes=1 << 26,
                processes=processes,
            )
            for source, path in FEEDS
        ]
        stores.append(store)
        reports.append([_summary(r) for r in runs])
    # The reading really happened in other processes (two per ingest) and only with two.
    readers = set(pids.read_text().split())
    assert len(readers) == 2 * len(FEEDS) and str(os.getpid()) not in readers
    assert reports[0] == reports[1]
    assert sum(r[4] for r in reports[1]) > 8000  # inserted: the whole corpus
    one, two = (_dump(s) for s in stores)
    assert {t: len(rows) for t, rows in one.items()} == {t: len(rows) for t, rows in two.items()}
    for table in TABLES:
        assert one[table] == two[table], table
    # The index rows prepared in the reading processes are those of the stored JSON.
    packages: dict[int, set[tuple[str, str]]] = {}
    for norm_id, _t, purl_type, name in two["advisory_packages"]:
        packages.setdefault(norm_id, set()).add((purl_type, name))
    for norm_id, _raw, _t, _type, key, data in two["normalized_records"]:
        doc = orjson.loads(data)
        assert key == doc["id"]
        expected = {(a["purl_type"], a["name"][:512]) for a in doc["affected"]}
        assert packages.get(norm_id, set()) == expected, key


def _files(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        body = {"id": f"A-{i:03d}", "modified": "2026-01-01T00:00:00Z", "summary": "x" * i}
        (root / f"{i:03d}.json").write_bytes(orjson.dumps(body))
    (root / "broken.json").write_bytes(b"{not json")
    (root / "notes.txt").write_bytes(b"not evidence")
    return root


def test_progress_refusals_and_skips_are_the_same_with_reading_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "BATCH_RECORDS", 25)
    src = _files(tmp_path / "in", 150)
    results = []
    for processes in (1, 2):
        calls: list[int] = []
        report = ingest_paths(
            EvidenceStore.open(f"sqlite:///{tmp_path / f'{processes}.db'}"),
            [src],
            source="s",
            tenant="t",
            max_bytes=1 << 20,
            processes=processes,
            progress=lambda n, _where, calls=calls: calls.append(n),
        )
        assert sum(calls) == survey([src])[1] == report.bytes
        assert len(calls) >= 6  # the bar moves with the batches
        results.append(_summary(report))
    assert results[0] == results[1]
    assert (results[1][4], len(results[1][8]), len(results[1][9])) == (150, 1, 1)
