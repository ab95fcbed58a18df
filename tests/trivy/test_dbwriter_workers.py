"""The trivy.db writer's mapping processes fail cleanly (issue 16).

A large input is mapped in worker processes fed through a bounded queue. When a worker fails,
the writer must raise that error (keeping its class), stop the other workers, leave no database
and no run file behind, and not hang on items still queued for processes that are gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from export_center.errors import BadInputError
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
