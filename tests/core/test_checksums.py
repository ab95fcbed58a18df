"""checksums.txt: one builder and one strict parser for every bundle, agreeing with sha256sum."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from export_center.checksums import build_checksums, parse_checksums
from export_center.digests import sha256_hex

A = sha256_hex(b"a")
B = sha256_hex(b"b")


def test_round_trip_sorted_bytewise() -> None:
    data = build_checksums([("z.txt", A), ("data/é.json", B), ("data-x", A), ("data/a", B)])
    assert data.decode().splitlines() == [
        f"{A}  data-x",
        f"{B}  data/a",
        f"{B}  data/é.json",
        f"{A}  z.txt",
    ]
    assert parse_checksums(data) == {"data-x": A, "data/a": B, "data/é.json": B, "z.txt": A}
    assert parse_checksums(b"") == {} == parse_checksums(build_checksums([]))


def test_sha256sum_reads_what_we_write(tmp_path: Path) -> None:
    tool = shutil.which("sha256sum")
    assert tool, "sha256sum (coreutils) is part of every Debian system"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b file.txt").write_bytes(b"b")
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "checksums.txt").write_bytes(build_checksums([("sub/b file.txt", B), ("a", A)]))
    subprocess.run([tool, "--strict", "-c", "checksums.txt"], cwd=tmp_path, check=True)
    listed = subprocess.run(
        [tool, "a", "sub/b file.txt"], cwd=tmp_path, capture_output=True, check=True
    ).stdout
    assert parse_checksums(listed) == {"a": A, "sub/b file.txt": B}


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (f"{A}  a\n{A}  a\n", "line 2: a listed twice"),
        (f"{A}  b\n{B}  a\n", "line 2: a is out of order"),
        (f"{A}  a", "no newline"),
        (f"{A}  a\r\n", "line 1 is not"),  # CRLF
        (f"{A}  a\n\n{B}  b\n", "line 2 is not"),  # blank line
        (f"{A.upper()}  a\n", "line 1 is not"),
        (f"{A} *a\n", "line 1 is not"),  # sha256sum's binary marker
        (f"\\{A}  a\\\\b\n", "line 1 is not"),  # sha256sum's escaping
        (f"{A[:-1]}  a\n", "line 1 is not"),
        (f"{A}  \n", "line 1 is not"),  # no path
        (f"{A}  a\u2028b\n", None),  # a separator only for str.splitlines: part of the name
    ],
)
def test_parser_is_strict(data: str, pattern: str | None) -> None:
    if pattern is None:
        assert parse_checksums(data.encode()) == {"a\u2028b": A}
        return
    with pytest.raises(ValueError, match=pattern):
        parse_checksums(data.encode())


def test_parser_refuses_non_utf8() -> None:
    with pytest.raises(ValueError, match="utf-8"):
        parse_checksums(A.encode() + b"  \xff\n")


@pytest.mark.parametrize("path", ["", "a\nb", "a\rb", "a\\b"])
def test_builder_refuses_paths_sha256sum_would_escape(path: str) -> None:
    with pytest.raises(ValueError, match="cannot be listed"):
        build_checksums([(path, A)])
