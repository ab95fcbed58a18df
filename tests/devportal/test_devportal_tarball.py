"""The deterministic writer and the guarded reader, directly."""

from __future__ import annotations

import hashlib
import io

import pytest

from export_center.devportal.tarball import (
    InputChangedError,
    Member,
    bytes_member,
    read_members,
    write_tgz,
)


def _write(members: list[Member], mtime: int = 1735689600) -> bytes:
    out = io.BytesIO()
    write_tgz(out, members, mtime=mtime)
    return out.getvalue()


def test_round_trip_with_explicit_parents() -> None:
    data = _write([bytes_member("b/c/d.txt", b"deep"), bytes_member("a.txt", b"top")])
    read = list(read_members(io.BytesIO(data), keep=lambda p: p == "a.txt"))
    assert [(m.path, m.is_dir) for m in read] == [
        ("a.txt", False),
        ("b", True),
        ("b/c", True),
        ("b/c/d.txt", False),
    ]
    assert read[0].data == b"top" and read[3].data is None
    assert read[3].sha256 == hashlib.sha256(b"deep").hexdigest()


def test_input_order_does_not_matter() -> None:
    members = [bytes_member(f"d{n % 3}/f{n}", bytes([n])) for n in range(20)]
    assert _write(members) == _write(list(reversed(members)))


def test_a_source_that_changed_fails_the_write() -> None:
    declared = bytes_member("x", b"original")
    swapped = Member(
        path="x", size=declared.size, sha256=declared.sha256, open=lambda: io.BytesIO(b"changed!")
    )
    with pytest.raises(InputChangedError, match="x: changed while being archived"):
        _write([swapped])
    shrunk = Member(path="x", size=8, sha256=declared.sha256, open=lambda: io.BytesIO(b"short"))
    with pytest.raises(InputChangedError, match="x: shrank"):
        _write([shrunk])
    grown = Member(path="x", size=8, sha256=declared.sha256, open=lambda: io.BytesIO(b"original+"))
    with pytest.raises(InputChangedError, match="x: grew"):
        _write([grown])


def test_duplicates_and_file_directory_clashes_are_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        _write([bytes_member("a", b"1"), bytes_member("a", b"2")])
    with pytest.raises(ValueError, match="both a file and a directory"):
        _write([bytes_member("a", b"1"), bytes_member("a/b", b"2")])
