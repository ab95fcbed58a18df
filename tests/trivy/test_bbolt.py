"""The bbolt writer against our reader and against the real bbolt library (gocheck)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export_center.trivy.bbolt import (
    PAGE_SIZE,
    BoltFormatError,
    BoltReader,
    BoltWriteError,
    BoltWriter,
    ReadBucket,
)
from support.bolt import MILLION_PACKAGES, GoCheck, digest
from support.tools import support_module_cmd

Tree = dict[bytes, "bytes | Tree"]


def write_tree(path: Path, tree: Tree) -> None:
    """Write nested dicts (every top-level value a dict): the caller's order does not matter."""

    def fill(bucket_writer: object, node: Tree) -> None:
        for key in sorted(node):
            value = node[key]
            if isinstance(value, dict):
                with bucket_writer.bucket(key) as child:  # type: ignore[attr-defined]
                    fill(child, value)
            else:
                bucket_writer.put(key, value)  # type: ignore[attr-defined]

    with BoltWriter(path) as db:
        fill(db, tree)


def read_tree(path: Path) -> dict[bytes, object]:
    with BoltReader(path) as reader:
        return reader.root().to_dict()


def trivy_shaped() -> Tree:
    return {
        b"alpine 3.22": {b"openssl": {b"CVE-2024-0001": b'{"FixedVersion":"3.1.4-r1"}'}},
        b"data-source": {b"pip::Feed": b'{"ID":"feed","Name":"Feed"}'},
        b"pip::Feed": {
            b"requests": {
                b"CVE-2023-32681": b'{"VulnerableVersions":[">=2.3.0, <2.31.0"]}',
                b"GHSA-9wx4-h78v-vm56": b'{"VulnerableVersions":["<2.32.0"]}',
            },
            b"werkzeug": {b"CVE-2019-14806": b'{"PatchedVersions":["0.15.3"]}'},
        },
        b"vulnerability": {
            b"CVE-2019-14806": b'{"Title":"t"}',
            b"CVE-2023-32681": b'{"Title":"u"}',
        },
    }


def test_empty_file_is_byte_identical_to_what_bbolt_creates(corpora: Path, tmp_path: Path) -> None:
    # trivy-db's normal.db fixture is a fresh file made by bbolt itself: two metas, an empty
    # freelist at page 2 and an empty root leaf at page 3.
    BoltWriter(tmp_path / "empty.db").close()
    made_by_bbolt = corpora / "aquasecurity-trivy-db/pkg/db/testdata/normal.db"
    assert (tmp_path / "empty.db").read_bytes() == made_by_bbolt.read_bytes()


def test_small_trivy_shaped_file_round_trips_and_passes_bbolt_check(
    tmp_path: Path, gocheck: GoCheck
) -> None:
    path = tmp_path / "trivy.db"
    tree = trivy_shaped()
    write_tree(path, tree)
    assert read_tree(path) == tree
    report = gocheck(path)
    assert report["keys"] == 7
    assert report["buckets"] == 3  # root buckets are not counted
    assert report["digest"] == digest(path)
    assert {k.encode() for k in report["roots"]} == set(tree)
    assert path.stat().st_size == PAGE_SIZE * BoltReader(path).high_water
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def _inline_image_size(entries: dict[bytes, bytes]) -> int:
    return 16 + sum(16 + len(k) + len(v) for k, v in entries.items())


@pytest.mark.parametrize(
    ("value_len", "inline"), [(1024 - 16 - 16 - 1, True), (1024 - 16 - 16, False)]
)
def test_buckets_are_inline_up_to_a_quarter_page_like_bbolt(
    tmp_path: Path, gocheck: GoCheck, value_len: int, inline: bool
) -> None:
    # bbolt's inlineable(): page header + elements + keys + values <= pageSize / 4.
    entries = {b"k": b"v" * value_len}
    assert (_inline_image_size(entries) <= PAGE_SIZE // 4) is inline
    path = tmp_path / "inline.db"
    write_tree(path, {b"outer": {b"pkg": entries, b"zz-other": {b"a": b"1"}}})
    with BoltReader(path) as reader:
        outer = reader.bucket(b"outer")
        assert outer is not None and not outer.is_inline
        pkg = outer.get(b"pkg")
        assert isinstance(pkg, ReadBucket)
        assert pkg.is_inline is inline
        assert pkg.to_dict() == entries
    report = gocheck(path)
    assert report["roots"]["outer"]["inline_buckets"] == (2 if inline else 1)
    assert report["digest"] == digest(path)


def test_bucket_with_sub_buckets_is_never_inline(tmp_path: Path, gocheck: GoCheck) -> None:
    path = tmp_path / "nested.db"
    write_tree(path, {b"a": {b"b": {b"c": {b"d": b"e"}}}})
    with BoltReader(path) as reader:
        a = reader.bucket(b"a")
        assert a is not None and not a.is_inline
        b = a.get(b"b")
        assert isinstance(b, ReadBucket) and not b.is_inline
        c = b.get(b"c")
        assert isinstance(c, ReadBucket) and c.is_inline
    assert gocheck(path)["buckets"] == 2


@pytest.mark.parametrize("size", [PAGE_SIZE + 1, 5 * 1024, 9 * PAGE_SIZE + 123, 1 << 20])
def test_overflow_values(tmp_path: Path, gocheck: GoCheck, size: int) -> None:
    big = bytes(i % 251 for i in range(size))
    tree: Tree = {
        b"big": {b"a-small": b"1", b"b-big": big, b"c-small": b"2", b"d-big-too": big[::-1]},
        b"inline-pkg": {b"x": b"y"},
    }
    path = tmp_path / "overflow.db"
    write_tree(path, tree)
    assert read_tree(path) == tree
    report = gocheck(path)
    pages_per_value = -(-(16 + 16 + 7 + size) // PAGE_SIZE)
    assert report["roots"]["big"]["leaf_overflow_pages"] >= 2 * (pages_per_value - 1)
    assert report["digest"] == digest(path)


def test_branch_levels(tmp_path: Path, gocheck: GoCheck) -> None:
    # 200-byte keys: about 18 per leaf page and 18 per branch page, so 20,000 keys need two
    # branch levels above the leaves.
    path = tmp_path / "branches.db"
    n = 20_000
    with BoltWriter(path) as db, db.bucket(b"deep") as bucket:
        for i in range(n):
            bucket.put(b"%08d" % i + b"k" * 192, b"%d" % i)
    report = gocheck(path)
    deep = report["roots"]["deep"]
    assert deep["keys"] == n
    assert deep["depth"] >= 4
    assert deep["branch_pages"] > 18
    assert report["digest"] == digest(path)
    with BoltReader(path) as reader:
        bucket_r = reader.bucket(b"deep")
        assert bucket_r is not None
        for i in (0, 1, 17, 18, 9_999, n - 1):
            assert bucket_r.get(b"%08d" % i + b"k" * 192) == b"%d" % i
        assert bucket_r.get(b"%08d" % n + b"k" * 192) is None
        assert bucket_r.get(b"0") is None


def test_many_inline_package_buckets_spill_across_pages(tmp_path: Path, gocheck: GoCheck) -> None:
    path = tmp_path / "packages.db"
    tree: Tree = {
        b"npm::Feed": {
            b"pkg-%05d" % i: {
                b"GHSA-%04d" % j: b'{"VulnerableVersions":["<1"]}' for j in range(i % 5)
            }
            for i in range(3000)
        }
    }
    write_tree(path, tree)
    assert read_tree(path) == tree
    report = gocheck(path)
    assert report["roots"]["npm::Feed"]["branch_pages"] >= 1
    assert report["roots"]["npm::Feed"]["inline_buckets"] == 3000
    assert report["digest"] == digest(path)


def test_two_writes_of_the_same_input_are_byte_identical(tmp_path: Path) -> None:
    def build(path: Path) -> str:
        tree = trivy_shaped()
        tree[b"pip::Feed"][b"zz-big"] = {b"v": b"x" * 20_000}  # type: ignore[index]
        write_tree(path, tree)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert build(tmp_path / "one.db") == build(tmp_path / "two.db")


def test_unsorted_and_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    with (
        pytest.raises(BoltWriteError, match=r"unsorted key b'a' after b'b'"),
        BoltWriter(path) as db,
        db.bucket(b"x") as bucket,
    ):
        bucket.put(b"b", b"1")
        bucket.put(b"a", b"2")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too

    with (
        pytest.raises(BoltWriteError, match=r"'x': duplicate key b'k'"),
        BoltWriter(path) as db,
        db.bucket(b"x") as bucket,
    ):
        bucket.put(b"k", b"1")
        bucket.put(b"k", b"2")

    with pytest.raises(BoltWriteError, match=r"unsorted key b'a'"), BoltWriter(path) as db:
        with db.bucket(b"b"):
            pass
        db.bucket(b"a")

    with (
        pytest.raises(BoltWriteError, match=r"'p/q': unsorted key b'0'"),
        BoltWriter(path) as db,
        db.bucket(b"p") as p,
        p.bucket(b"q") as q,
    ):
        q.put(b"1", b"")
        q.put(b"0", b"")
    assert list(tmp_path.iterdir()) == []


def test_misuse_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    with (
        pytest.raises(BoltWriteError, match="sub-bucket 'p/q' is still open"),
        BoltWriter(path) as db,
        db.bucket(b"p") as p,
    ):
        p.bucket(b"q")
        p.put(b"r", b"")
    with (
        pytest.raises(BoltWriteError, match=r"key length 0 is outside 1\.\.32768"),
        BoltWriter(path) as db,
    ):
        db.bucket(b"")
    with pytest.raises(BoltWriteError, match="key length 32769"), BoltWriter(path) as db:
        db.bucket(b"p").put(b"k" * 32769, b"")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "trivy.db"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), BoltWriter(path) as db:
        db.bucket(b"a").put(b"k", b"v")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    write_tree(path, {b"a": {b"k": b"v"}})
    assert read_tree(path) == {b"a": {b"k": b"v"}}


def test_reader_and_bbolt_refuse_corrupted_metas(tmp_path: Path, gocheck_bin: Path) -> None:
    path = tmp_path / "corrupt.db"
    write_tree(path, trivy_shaped())
    data = bytearray(path.read_bytes())
    data[PAGE_SIZE + 16 + 40] ^= 0xFF  # meta 1's freelist pgid: its checksum no longer matches
    path.write_bytes(bytes(data))
    # Our reader wants both metas valid (we always write both); bbolt 1.3 falls back to the
    # other meta when only one is bad, so it needs both broken to refuse the file.
    with pytest.raises(BoltFormatError, match="meta page 1: checksum error"):
        BoltReader(path)
    data[16 + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BoltFormatError, match="meta page 0: checksum error"):
        BoltReader(path)
    proc = subprocess.run(
        [str(gocheck_bin), str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "checksum error" in proc.stderr


def test_bbolt_check_catches_keys_out_of_order(tmp_path: Path, gocheck_bin: Path) -> None:
    # The checker must have teeth: swap two same-length keys inside a leaf page.
    path = tmp_path / "swapped.db"
    with BoltWriter(path) as db, db.bucket(b"flat") as bucket:
        for i in range(400):
            bucket.put(b"key-%04d" % i, b"v")
    data = bytearray(path.read_bytes())
    first = data.index(b"key-0001")
    second = data.index(b"key-0002")
    data[first : first + 8], data[second : second + 8] = b"key-0002", b"key-0001"
    path.write_bytes(bytes(data))
    proc = subprocess.run(
        [str(gocheck_bin), str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "not after" in proc.stderr
    with BoltReader(path) as reader:
        bucket_r = reader.bucket(b"flat")
        assert bucket_r is not None
        with pytest.raises(BoltFormatError, match="is not after"):
            list(bucket_r.items())


def test_reader_refuses_non_bolt_files(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"\0" * 16 + struct.pack("<III", 1, 2, 4096) + b"\0" * 8192)
    with pytest.raises(BoltFormatError, match="not a meta page"):
        BoltReader(path)


_keys = st.binary(min_size=1, max_size=24)
# Big values cost little entropy: a length and a fill byte.
_big = st.builds(lambda n, b: bytes([b]) * n, st.integers(1000, 9000), st.integers(0, 255))
_leaf_values = st.binary(max_size=64) | _big
_inner: st.SearchStrategy[dict[bytes, object]] = st.dictionaries(
    _keys,
    _leaf_values | st.dictionaries(_keys, _leaf_values, max_size=20),
    max_size=40,
)
_trees = st.dictionaries(_keys, _inner, max_size=4)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.slow
@given(tree=_trees)
def test_random_sorted_maps_round_trip(tmp_path: Path, tree: Tree) -> None:
    path = tmp_path / "random.db"
    write_tree(path, tree)
    assert read_tree(path) == tree


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=_trees)
def test_random_maps_pass_bbolt_check(tmp_path: Path, gocheck: GoCheck, tree: Tree) -> None:
    path = tmp_path / "random.db"
    write_tree(path, tree)
    assert gocheck(path)["digest"] == digest(path)


@pytest.mark.slow
def test_a_million_keys_stream_in_bounded_memory(tmp_path: Path, gocheck: GoCheck) -> None:
    path = tmp_path / "million.db"
    # A fresh process, so that ru_maxrss is the writer's and not this test session's.
    cmd, env = support_module_cmd("bolt", os.environ)
    proc = subprocess.run(
        [*cmd, "million", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env=env,
    )
    measured = json.loads(proc.stdout)
    print(
        f"\n1M-key bbolt write: {measured['keys']} keys, {measured['seconds']} s, "
        f"peak RSS {measured['max_rss_kib'] / 1024:.1f} MiB, "
        f"file {path.stat().st_size / 2**20:.1f} MiB"
    )
    assert measured["keys"] >= 1_000_000
    # Bounded: the interpreter itself is ~10 MiB; nothing here grows with the key count.
    assert measured["max_rss_kib"] < 100 * 1024
    report = gocheck(path)
    assert report["keys"] == measured["keys"]
    assert report["buckets"] == MILLION_PACKAGES
    assert report["roots"]["vulnerability"]["depth"] >= 3
