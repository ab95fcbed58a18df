"""The trivy.db writer's mapping processes fail cleanly (issue 16).

A large input is mapped in worker processes fed through a bounded queue. When a worker fails,
the writer must raise that error (keeping its class), stop the other workers, leave no database
and no run file behind, and not hang on items still queued for processes that are gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from export_center.errors import BadInputError, ExportCenterError
from export_center.model import to_json_dict
from export_center.trivy import dbwriter
from export_center.trivy.dbwriter import write_trivy_db
from support.bolt import GoCheck, synthetic_advisories


def as_bytes(count: int) -> Iterator[tuple[str, bytes]]:
    for feed, adv in synthetic_advisories(count):
        yield feed, orjson.dumps(to_json_dict(adv))


@pytest.fixture
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A run file every few hundred advisories: the input below reaches the worker processes.
    monkeypatch.setattr(dbwriter, "RUN_BUDGET", 64 << 10)
    monkeypatch.setattr(dbwriter, "BATCH", 50)


@pytest.mark.usefixtures("small_runs")
def test_a_failing_worker_fails_the_build_with_its_error(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    items = [*as_bytes(1200), ("Feed A", b"{not json"), *as_bytes(400)]
    with pytest.raises(BadInputError, match="advisory input is not JSON"):
        write_trivy_db(items, tmp_path / "trivy.db", work_dir=work, workers=2)
    assert not (tmp_path / "trivy.db").exists()
    assert list(work.iterdir()) == []  # run files removed
    assert [p.name for p in tmp_path.iterdir()] == ["work"]  # no temporary database left


@pytest.mark.usefixtures("small_runs")
def test_every_worker_failing_while_input_remains_does_not_hang(tmp_path: Path) -> None:
    # Both workers stop at their first bad batch while thousands of items are still to be
    # queued: the writer must notice, raise and exit without flushing the queue to nobody.
    bad = [("Feed A", b"[]")] * 5000
    with pytest.raises(BadInputError, match="a JSON list, not an object"):
        write_trivy_db([*as_bytes(1200), *bad], tmp_path / "trivy.db", workers=2)
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.usefixtures("small_runs")
def test_workers_write_the_bytes_of_one_process(tmp_path: Path, gocheck: GoCheck) -> None:
    one = write_trivy_db(as_bytes(2000), tmp_path / "one.db", workers=1)
    three = write_trivy_db(as_bytes(2000), tmp_path / "three.db", workers=3)
    assert one == three
    assert one.advisories == 2000
    assert (tmp_path / "one.db").read_bytes() == (tmp_path / "three.db").read_bytes()
    gocheck(tmp_path / "three.db")


@pytest.mark.usefixtures("small_runs")
def test_root_buckets_are_merged_in_processes_when_runs_were_spilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The path the bytes test above takes: several runs and workers → merging processes.
    placed: list[bytes] = []
    real_put = dbwriter.BoltWriter.put_encoded

    def put_encoded(self: dbwriter.BoltWriter, encoded: Any) -> None:
        placed.append(encoded.name)
        real_put(self, encoded)

    monkeypatch.setattr(dbwriter.BoltWriter, "put_encoded", put_encoded)
    report = write_trivy_db(as_bytes(1500), tmp_path / "two.db", workers=2)
    # Every root but data-source (written in place) was encoded apart, placed in root order.
    assert placed == sorted({*(b.encode() for b in report.buckets), b"vulnerability"})
    assert len(placed) >= 2


def test_a_failing_merging_process_fails_the_build_with_its_error(tmp_path: Path) -> None:
    # Runs as the mappers leave them, one of them gone before the merge reads it.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    mapper = dbwriter._Mapper(scratch, "m", 16 << 10)
    source = dbwriter.data_source_for("Feed A")
    mapper.map_batch([(source, adv) for _feed, adv in as_bytes(600)])
    mapper.spill()
    assert len(mapper.runs) > 2
    mapper.runs[1].path.unlink()
    roots = sorted({*mapper.runs[0].roots, dbwriter._DS_ROOT})
    db = dbwriter.BoltWriter(tmp_path / "trivy.db")
    with pytest.raises(ExportCenterError, match="merging process failed") as failed:
        dbwriter._write_roots_in_processes(db, roots, mapper.runs, lambda b: None, scratch, 2)
    db.abort()
    assert "FileNotFoundError" in str(failed.value)
    assert [p.name for p in tmp_path.iterdir()] == ["scratch"]  # no database written


def test_merge_order_starts_the_largest_roots_then_follows_root_order() -> None:
    def segs(size: int) -> list[tuple[Path, int, int]]:
        return [(Path("r0"), 0, size // 2), (Path("r1"), 100, 100 + size - size // 2)]

    # Root order as the writer gives them; the vulnerability bucket is the largest.
    tasks = {
        b"cargo::A": segs(10),
        b"go::A": segs(300),
        b"pip::A": segs(200),
        b"vulnerability": segs(900),
    }
    order = dbwriter._merge_order(tasks, 2)
    assert [root for _i, root in order] == [b"vulnerability", b"cargo::A", b"go::A", b"pip::A"]
    assert [i for i, _root in order] == [3, 0, 1, 2]  # each keeps its own scratch file name
    three = [root for _i, root in dbwriter._merge_order(tasks, 3)]
    assert three == [b"vulnerability", b"go::A", b"cargo::A", b"pip::A"]
    one = [root for _i, root in dbwriter._merge_order(tasks, 1)]
    assert one == list(tasks)
