"""Root buckets written apart and placed later (issue 16): the bytes of writing them in place.

The trivy.db writer merges and encodes root buckets in several processes
(:func:`~export_center.trivy.bbolt.encode_bucket`), numbering each one's pages as if it began
the file; :meth:`~export_center.trivy.bbolt.BoltWriter.put_encoded` moves the page ids, branch
children and nested bucket roots to where the pages land. ``put_bucket`` writes a small
sub-bucket in one call. Each is checked here against the plain streaming writer, byte for byte,
and against Go's bbolt (tx.Check and a full walk).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export_center.trivy import bbolt
from export_center.trivy.bbolt import (
    PAGE_SIZE,
    BoltWriteError,
    BoltWriter,
    BucketWriter,
    EncodedBucket,
    encode_bucket,
)
from support.bolt import GoCheck, digest

Tree = dict[bytes, "bytes | Tree"]


def fill_streaming(bucket: BucketWriter, node: Tree) -> None:
    for key in sorted(node):
        value = node[key]
        if isinstance(value, dict):
            with bucket.bucket(key) as child:
                fill_streaming(child, value)
        else:
            bucket.put(key, value)


def fill_fast(bucket: BucketWriter, node: Tree) -> None:
    """Like :func:`fill_streaming`, through the one-call paths: a sub-bucket of plain values
    goes through ``put_bucket``, consecutive plain values through ``put_all``."""
    plain: list[tuple[bytes, bytes]] = []
    for key in sorted(node):
        value = node[key]
        if not isinstance(value, dict):
            plain.append((key, value))
            continue
        assert bucket.put_all(plain) == len(plain)
        plain = []
        if all(isinstance(v, bytes) for v in value.values()):
            bucket.put_bucket(key, [(k, value[k]) for k in sorted(value)])  # type: ignore[misc]
        else:
            with bucket.bucket(key) as child:
                fill_fast(child, value)
    assert bucket.put_all(plain) == len(plain)


def write_plain(path: Path, tree: Tree) -> bytes:
    with BoltWriter(path) as db:
        for root in sorted(tree):
            with db.bucket(root) as bucket:
                fill_streaming(bucket, tree[root])  # type: ignore[arg-type]
    return path.read_bytes()


def write_encoded(
    path: Path, tree: Tree, work: Path, *, direct: frozenset[bytes] | set[bytes] = frozenset()
) -> bytes:
    """Every root encoded apart first (as the merging processes do), then placed in order;
    the roots in ``direct`` are written in place instead, between them."""
    work.mkdir(exist_ok=True)
    encoded: dict[bytes, EncodedBucket] = {}
    for i, root in enumerate(sorted(tree)):
        if root not in direct:
            node = tree[root]
            encoded[root] = encode_bucket(
                work / f"{i}",
                root,
                lambda b, node=node: fill_fast(b, node),  # type: ignore[misc]
            )
    with BoltWriter(path) as db:
        for root in sorted(tree):
            if root in direct:
                with db.bucket(root) as bucket:
                    fill_streaming(bucket, tree[root])  # type: ignore[arg-type]
            else:
                db.put_encoded(encoded[root])
    return path.read_bytes()


def big(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def trivy_like() -> Tree:
    """Every kind of page the writer makes: inline and paged package buckets, buckets nested
    two deep, overflow values, branch levels, an inline root."""
    return {
        b"alpine 3.22": {b"openssl": {b"CVE-2024-0001": b'{"FixedVersion":"3.1.4-r1"}'}},
        b"data-source": {b"pip::Feed": b'{"ID":"feed","Name":"Feed"}'},
        b"pip::Feed": {
            # Thousands of small inline package buckets: branch pages over the leaves.
            **{
                b"pkg-%05d" % i: {
                    b"GHSA-%04d" % j: b'{"VulnerableVersions":["<1"]}' for j in range(i % 4)
                }
                for i in range(2500)
            },
            # Package buckets too big to be inline: their roots are page ids in the parent.
            **{
                b"paged-%03d" % i: {b"CVE-%06d" % j: b"x" * (40 + j % 90) for j in range(60 + i)}
                for i in range(40)
            },
            b"with-overflow": {b"a": big(3 * PAGE_SIZE + 5, 1), b"b": b"small"},
            b"zz-nested": {b"inner": {b"deeper": {b"k": b"v" * 2000}}, b"leaf": b"1"},
        },
        b"vulnerability": {
            **{b"CVE-2024-%06d" % i: b'{"Title":"t%d"}' % i * (1 + i % 7) for i in range(6000)},
            b"CVE-2025-big": big(9 * PAGE_SIZE + 123, 2),
        },
    }


def test_encoded_roots_are_the_bytes_of_roots_written_in_place(
    tmp_path: Path, gocheck: GoCheck
) -> None:
    tree = trivy_like()
    plain = write_plain(tmp_path / "plain.db", tree)
    assert write_encoded(tmp_path / "encoded.db", tree, tmp_path / "work") == plain
    report = gocheck(tmp_path / "encoded.db")
    assert report["digest"] == digest(tmp_path / "plain.db")
    # The check covers what the moves touch: branch pages, paged sub-buckets, overflow pages.
    pip = report["roots"]["pip::Feed"]
    assert pip["branch_pages"] >= 1 and pip["buckets"] >= 40
    assert report["roots"]["vulnerability"]["leaf_overflow_pages"] >= 9
    # As the trivy.db writer does: data-source written in place between encoded roots.
    mixed = write_encoded(tmp_path / "mixed.db", tree, tmp_path / "work2", direct={b"data-source"})
    assert mixed == plain


def test_pages_larger_than_the_copy_buffer_move_whole(
    tmp_path: Path, gocheck: GoCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A value of 9 pages with a copy buffer of 2 pages: the buffer grows to take the span.
    monkeypatch.setattr(bbolt, "_COPY_CHUNK", 2 * PAGE_SIZE)
    tree = trivy_like()
    plain = write_plain(tmp_path / "plain.db", tree)
    assert write_encoded(tmp_path / "encoded.db", tree, tmp_path / "work") == plain
    assert gocheck(tmp_path / "encoded.db")["digest"] == digest(tmp_path / "plain.db")


def test_an_inline_root_has_no_pages_and_a_small_sub_bucket_is_one_call(tmp_path: Path) -> None:
    enc = encode_bucket(tmp_path / "ds", b"data-source", lambda b: b.put(b"k", b"v"))
    assert enc.pages == 0 and enc.path is None and not (tmp_path / "ds").exists()
    assert not enc.nested
    enc = encode_bucket(tmp_path / "pip", b"pip::F", lambda b: b.put_bucket(b"p", [(b"a", b"1")]))
    assert enc.pages == 1 and enc.nested  # a bucket with sub-buckets is never inline


_keys = st.binary(min_size=1, max_size=24)
_big = st.builds(lambda n, b: bytes([b]) * n, st.integers(1000, 9000), st.integers(0, 255))
_leaf_values = st.binary(max_size=64) | _big
_inner: st.SearchStrategy[dict[bytes, object]] = st.dictionaries(
    _keys,
    _leaf_values
    | st.dictionaries(_keys, _leaf_values, max_size=30)
    | st.dictionaries(_keys, st.dictionaries(_keys, _leaf_values, max_size=8), max_size=4),
    max_size=60,
)
_trees = st.dictionaries(_keys, _inner, min_size=1, max_size=5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=_trees, data=st.data())
def test_random_trees_encoded_apart_equal_the_plain_writer(
    tmp_path_factory: pytest.TempPathFactory, tree: Tree, data: st.DataObject
) -> None:
    tmp = tmp_path_factory.mktemp("random")
    direct = data.draw(st.sets(st.sampled_from(sorted(tree))))
    plain = write_plain(tmp / "plain.db", tree)
    assert write_encoded(tmp / "encoded.db", tree, tmp / "work", direct=direct) == plain


def test_misplaced_or_damaged_encoded_buckets_are_refused(tmp_path: Path) -> None:
    tree = trivy_like()
    work = tmp_path / "work"
    work.mkdir()
    vuln = encode_bucket(
        work / "v",
        b"vulnerability",
        lambda b: fill_streaming(b, tree[b"vulnerability"]),  # type: ignore[arg-type]
    )
    pip = encode_bucket(work / "p", b"pip::Feed", lambda b: fill_fast(b, tree[b"pip::Feed"]))  # type: ignore[arg-type]

    with pytest.raises(BoltWriteError, match="unsorted key"), BoltWriter(tmp_path / "a.db") as db:
        db.put_encoded(vuln)
        db.put_encoded(pip)  # "pip::Feed" sorts before "vulnerability"
    assert not (tmp_path / "a.db").exists()

    other_size = EncodedBucket(pip.name, pip.value, pip.path, pip.pages, 8192, pip.nested)
    with (
        pytest.raises(BoltWriteError, match="8192-byte pages"),
        BoltWriter(tmp_path / "b.db") as db,
    ):
        db.put_encoded(other_size)

    vuln = encode_bucket(  # again: placing it above consumed its file
        work / "v",
        b"vulnerability",
        lambda b: fill_streaming(b, tree[b"vulnerability"]),  # type: ignore[arg-type]
    )
    assert vuln.path is not None
    data = vuln.path.read_bytes()
    assert len(data) == vuln.pages * PAGE_SIZE
    vuln.path.write_bytes(data[:-PAGE_SIZE])  # a page lost
    with (
        pytest.raises(BoltWriteError, match=r"not the \d+ pages encoded"),
        BoltWriter(tmp_path / "c.db") as db,
    ):
        db.put_encoded(vuln)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no database left


def test_put_all_checks_what_put_checks(tmp_path: Path) -> None:
    keys = [b"k%05d" % i for i in range(3000)]  # far past a quarter page: a paged bucket
    with BoltWriter(tmp_path / "a.db") as db, db.bucket(b"b") as bucket:
        # A bytearray key and value are taken as put takes them.
        n = bucket.put_all(
            [(k, b"v") for k in keys[:-1]] + [(bytearray(keys[-1]), bytearray(b"w"))]
        )
    assert n == len(keys)
    with BoltWriter(tmp_path / "b.db") as db, db.bucket(b"b") as bucket:
        for k in keys[:-1]:
            bucket.put(k, b"v")
        bucket.put(keys[-1], b"w")
    assert (tmp_path / "a.db").read_bytes() == (tmp_path / "b.db").read_bytes()

    for bad, message in (
        ([*keys, keys[5]], "unsorted key"),
        ([*keys, keys[-1]], "duplicate key"),
        ([*keys, b""], "key length 0"),
        ([*keys, b"z" * 40_000], "key length 40000"),
    ):
        with (
            pytest.raises(BoltWriteError, match=message),
            BoltWriter(tmp_path / "c.db") as db,
            db.bucket(b"b") as bucket,
        ):
            bucket.put_all((k, b"v") for k in bad)
        assert not (tmp_path / "c.db").exists()
