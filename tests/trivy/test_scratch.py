"""Scratch data already read is given back during a trivy.db build (issue 16).

:func:`export_center.trivy.scratch.release` punches holes in the run files as the merge reads
them and in each encoded root bucket as it is copied into the database, so the next writes
reuse that memory (docs/trivy.md, "Writing a large trivy.db"). What must hold: only whole pages
already read are freed, never a byte of a neighbouring range (another root's rows in the same
run file, read by another process), the database is the same bytes, and an encoded bucket once
placed cannot be placed again as zeros.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
import pytest

from export_center.model import to_json_dict
from export_center.trivy import dbwriter, scratch
from export_center.trivy.bbolt import (
    PAGE_SIZE,
    BoltWriteError,
    BoltWriter,
    BucketWriter,
    encode_bucket,
)
from export_center.trivy.dbwriter import write_trivy_db
from export_center.trivy.mapping import data_source_for
from export_center.trivy.scratch import release
from support.bolt import synthetic_advisories

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="hole punching is Linux's (a no-op elsewhere)"
)


def _file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_whole_pages_of_the_range_are_freed_and_nothing_else(tmp_path: Path) -> None:
    assert scratch._punch is not None  # CI's file systems (ext4, tmpfs) can punch holes
    path = tmp_path / "run"
    data = _file(path, 16 * PAGE_SIZE)
    with path.open("r+b") as fh:
        blocks = os.fstat(fh.fileno()).st_blocks
        # From inside page 1 to inside page 9: pages 2-8 are wholly in the range.
        nxt = release(fh.fileno(), PAGE_SIZE + 100, 9 * PAGE_SIZE + 5)
        assert nxt == 9 * PAGE_SIZE  # the page 9 falls in is freed with the next range
        assert os.fstat(fh.fileno()).st_blocks < blocks  # really given back
    after = path.read_bytes()
    assert len(after) == len(data)  # the size is kept
    assert after[: 2 * PAGE_SIZE] == data[: 2 * PAGE_SIZE]  # page 1 is partly outside
    assert after[2 * PAGE_SIZE : 9 * PAGE_SIZE] == bytes(7 * PAGE_SIZE)
    assert after[9 * PAGE_SIZE :] == data[9 * PAGE_SIZE :]


def test_a_reader_going_on_frees_its_range_and_spares_its_neighbours(tmp_path: Path) -> None:
    # Two roots share pages 2 and 7; the reader of the middle one releases as it goes, in
    # steps that do not fall on pages, and must leave every byte of the others.
    path = tmp_path / "run"
    data = _file(path, 10 * PAGE_SIZE)
    start, end = 2 * PAGE_SIZE + 700, 7 * PAGE_SIZE + 300
    with path.open("r+b") as fh:
        held = start
        for pos in range(start + 999, end, 999):
            held = release(fh.fileno(), held, pos)
        release(fh.fileno(), held, end)
    after = path.read_bytes()
    assert after[:start] == data[:start]
    assert after[end:] == data[end:]
    assert after[3 * PAGE_SIZE : 7 * PAGE_SIZE] == bytes(4 * PAGE_SIZE)


def test_a_file_open_only_for_reading_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "run"
    data = _file(path, 4 * PAGE_SIZE)
    with path.open("rb") as fh:
        assert release(fh.fileno(), 0, 4 * PAGE_SIZE) == 4 * PAGE_SIZE  # no error either
    assert path.read_bytes() == data
    assert scratch._punch is not None  # a refused call does not turn punching off


def test_run_rows_are_read_whole_while_their_pages_are_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbwriter, "_RELEASE_EVERY", PAGE_SIZE)  # release after every block
    mapper = dbwriter._Mapper(tmp_path, "t", 1 << 30)
    mapper.map_batch(
        (data_source_for(feed), orjson.dumps(to_json_dict(adv)))
        for feed, adv in synthetic_advisories(3000)
    )
    mapper.spill()
    (run,) = mapper.runs
    assert len(run.roots) > 2
    copy = tmp_path / "copy"
    copy.write_bytes(run.path.read_bytes())
    # Every root read in turn from the released file equals the same root of the copy.
    for root, (start, end) in sorted(run.roots.items(), key=lambda item: -item[1][0]):
        rows = list(dbwriter._read_run(run.path, start, end))
        assert rows == list(dbwriter._read_run(copy, start, end))
        assert rows and all(row.startswith(root + b"\x00") for row in rows)
    # ... and what was read is gone: only pages shared by two roots can still hold bytes.
    assert os.stat(run.path).st_blocks * 512 <= (len(run.roots) + 1) * PAGE_SIZE


def test_the_database_is_the_same_bytes_with_release_and_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One process (so the patches below apply to the merge), many small runs, a release
    # after every block.
    monkeypatch.setattr(dbwriter, "RUN_BUDGET", 64 << 10)
    monkeypatch.setattr(dbwriter, "_RELEASE_EVERY", PAGE_SIZE)

    def items() -> list[tuple[str, bytes]]:
        return [(f, orjson.dumps(to_json_dict(a))) for f, a in synthetic_advisories(2000)]

    # Punching must really be on for the first build, or the two builds would be the same one.
    assert scratch._punch is not None
    released = write_trivy_db(items(), tmp_path / "released.db", workers=1)
    assert scratch._punch is not None  # and stayed on through it
    monkeypatch.setattr(scratch, "_punch", None)
    kept = write_trivy_db(items(), tmp_path / "kept.db", workers=1)
    assert released == kept
    assert (tmp_path / "released.db").read_bytes() == (tmp_path / "kept.db").read_bytes()


def test_an_encoded_bucket_is_placed_once(tmp_path: Path) -> None:
    def fill(bucket: BucketWriter) -> None:
        for i in range(3000):  # a paged bucket: a file of pages
            bucket.put(b"k%05d" % i, b"v" * 40)

    encoded = encode_bucket(tmp_path / "v", b"vulnerability", fill)
    assert encoded.path is not None and encoded.pages > 1
    with BoltWriter(tmp_path / "a.db") as db:
        db.put_encoded(encoded)
    assert encoded.path.stat().st_size == 0  # consumed
    with (
        pytest.raises(BoltWriteError, match="empty: placed already"),
        BoltWriter(tmp_path / "b.db") as db,
    ):
        db.put_encoded(encoded)
    assert not (tmp_path / "b.db").exists()
