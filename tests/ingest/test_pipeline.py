"""The ingest pipeline accounts for every input, reports progress in bytes as batches commit,
reports collisions, and stops cleanly when asked to."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import orjson
import pytest

from export_center.ingest import pipeline
from export_center.ingest.detect import TAG_VALUE
from export_center.ingest.pipeline import ingest_paths, survey
from export_center.store.repository import EvidenceStore


def _osv(upstream: str, **extra: object) -> bytes:
    return orjson.dumps({"id": upstream, "modified": "2026-01-01T00:00:00Z", **extra})


def _store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore.open(f"sqlite:///{tmp_path / 'stella.db'}")


def test_every_file_is_read_refused_or_skipped_with_a_reason(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_bytes(_osv("A-1"))
    (src / "b.yaml").write_text("id: B-1\nmodified: '2026-01-01T00:00:00Z'\n")
    (src / "README.md").write_text("# feed\n")
    (src / "sub" / "sbom.spdx").write_text("SPDXVersion: SPDX-2.3\n")
    (src / "sub" / "bom.xml").write_text("<bom/>")
    (src / "index.json").write_bytes(
        orjson.dumps({"updated_at": "2026-01-01", "packages": [{"id": "x", "location": "y"}]})
    )
    (src / "broken.json").write_bytes(b'{"id": ')
    entries = [orjson.loads(_osv("C-1")), orjson.loads(_osv("C-2")), {"id": "C-3"}]
    (src / "bundle.json").write_bytes(orjson.dumps({"vulns": entries}))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tf:
        for name, data in (("d.json", _osv("D-1")), ("notes.txt", b"hello")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (src / "feed.tar.gz").write_bytes(archive.getvalue())

    report = ingest_paths(_store(tmp_path), [src], source="s", tenant="t", max_bytes=1 << 20)

    skipped = {Path(s.where.split("!")[-1]).name: s.reason for s in report.skipped}
    assert skipped == {
        "README.md": "not an evidence file (.md)",
        "sbom.spdx": TAG_VALUE,
        "bom.xml": "XML is not supported: provide the document as JSON (CycloneDX, CSAF)",
        "index.json": "VEX repository index (index.json: where the documents are), not evidence",
        "notes.txt": "not an evidence file (.txt)",
    }
    refused = {Path(r.where).name: r.reason for r in report.refused}
    assert refused["broken.json"].startswith("malformed JSON at line 1")
    assert refused["bundle.json#vulns[2] (C-3)"].startswith("invalid OSV record: modified")
    # Files: a, b, bundle and the archive's d.json read; broken.json refused; five skipped.
    assert (report.files, report.files_read, report.files_refused) == (10, 4, 1)
    assert report.files == report.files_read + report.files_refused + report.skipped_files
    assert report.inserted == 5  # A-1, B-1, C-1, C-2, D-1
    assert len(report.refused) == 2


@pytest.mark.slow
def test_bom_shelter_tag_value_sboms_are_counted_as_skipped(corpora: Path, tmp_path: Path) -> None:
    root = corpora / "chainguard-bom-shelter/in-the-wild"
    report = ingest_paths(_store(tmp_path), [root], source="s", tenant="t", max_bytes=64 << 20)
    tag_value = sorted(Path(s.where).name for s in report.skipped if s.reason == TAG_VALUE)
    assert tag_value == sorted(p.name for p in root.rglob("*.spdx"))
    assert len(tag_value) == 18  # the corpus holds 18 .spdx files (SOURCES.md counts 17)
    files = sum(1 for p in root.rglob("*") if p.is_file())
    assert report.files == files
    assert report.files == report.files_read + report.files_refused + report.skipped_files


def test_progress_is_in_bytes_and_moves_inside_one_large_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "BATCH_RECORDS", 50)
    src = tmp_path / "in"
    src.mkdir()
    entries = [orjson.loads(_osv(f"BIG-{i:04d}", summary="x" * 200)) for i in range(400)]
    (src / "big.json").write_bytes(orjson.dumps({"vulns": entries}))
    (src / "small.json").write_bytes(_osv("SMALL-1"))
    calls: list[tuple[int, str]] = []
    report = ingest_paths(
        _store(tmp_path),
        [src],
        source="s",
        tenant="t",
        max_bytes=1 << 24,
        progress=lambda n, where: calls.append((n, where)),
    )
    assert report.inserted == 401
    _files, total = survey([src])
    assert sum(n for n, _ in calls) == total == report.bytes
    assert all(n > 0 for n, _ in calls)
    big = (src / "big.json").stat().st_size
    during_big = [n for n, where in calls if where.endswith("big.json")]
    # 400 entries in batches of 50: the bar moves with each batch inside the one file (the
    # last batch completes with the next file), not only at its end.
    assert len(during_big) >= 6
    assert during_big[0] < big / 4


def test_two_inputs_with_one_id_and_different_bytes_are_reported(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "1.json").write_bytes(_osv("GHSA-x", summary="first"))
    (src / "2.json").write_bytes(_osv("GHSA-x", summary="second"))
    report = ingest_paths(_store(tmp_path), [src], source="s", tenant="t", max_bytes=1 << 20)
    assert (report.inserted, report.revisions) == (1, 1)
    (collision,) = report.collisions
    assert collision.kind == "revised-twice"
    assert collision.where == str(src / "2.json")
    assert collision.stored_as == "t:s:GHSA-x:2"


@pytest.mark.parametrize("processes", [1, 2])
def test_cancel_writes_what_was_read_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    """Also with reading processes (``processes=2``: 200 files are enough to fork them)."""
    monkeypatch.setattr(pipeline, "BATCH_RECORDS", 10)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(200):
        (src / f"{i:03d}.json").write_bytes(_osv(f"A-{i:03d}"))
    store = _store(tmp_path)
    asked = 0

    def cancelled() -> bool:
        nonlocal asked
        asked += 1
        return asked > 25

    first = ingest_paths(
        store,
        [src],
        source="s",
        tenant="t",
        max_bytes=1 << 20,
        cancelled=cancelled,
        processes=processes,
    )
    assert first.interrupted
    assert 0 < first.inserted < 200
    seq = store.current_sequence("t")
    assert seq == first.inserted
    assert [c.seq for c in store.changes("t", 0, seq)] == list(range(1, seq + 1))

    second = ingest_paths(
        store, [src], source="s", tenant="t", max_bytes=1 << 20, processes=processes
    )
    assert not second.interrupted
    assert (second.unchanged, second.inserted) == (first.inserted, 200 - first.inserted)
    assert store.current_sequence("t") == 200
