"""The deterministic writer: byte-identical output, what GNU tar / zstd / gzip make of it, the
ordering rules, and flat memory on a large archive."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import pytest
import zstandard

from export_center.archive.reader import iter_members
from export_center.archive.writer import (
    DEFAULT_MTIME,
    FRAME_THRESHOLD,
    DeterministicTarWriter,
    FileSource,
    SourceChangedError,
    TreeEntry,
    WriteResult,
    ZstdFrame,
    ZstdFrameWriter,
    source_date_epoch,
    write_tree,
)
from export_center.errors import BadInputError
from support.tools import need_tool

ENTRIES: list[TreeEntry | tuple[str, bytes | FileSource]] = [
    ("manifests/export.json", b'{"schema":"x"}\n'),
    ("data/b.jsonl", b'{"id":2}\n'),
    ("data/a.jsonl", b'{"id":1}\n'),
    ("data-extra.txt", b"sorts before data/ bytewise\n"),
    TreeEntry("verify-offline.sh", b"#!/bin/sh\nsha256sum -c checksums.txt\n", mode=0o755),
    ("portal/" + "deep/" * 25 + "index.html", b"<html></html>\n"),  # > 100 bytes: PAX path
    ("data/ünïcode-名前.json", b"{}\n"),  # non-ASCII: PAX path
    TreeEntry("empty-dir", None),
]
EXPECTED_ORDER = [
    "data-extra.txt",
    "data/",
    "data/a.jsonl",
    "data/b.jsonl",
    "data/ünïcode-名前.json",
    "empty-dir/",
    "manifests/",
    "manifests/export.json",
    "portal/",
]


def _write(compression: str = "zstd", **kw: object) -> tuple[bytes, WriteResult]:
    return _write_entries(ENTRIES, compression, **kw)


def _write_entries(
    entries: list[TreeEntry | tuple[str, bytes | FileSource | ZstdFrame]],
    compression: str = "zstd",
    **kw: object,
) -> tuple[bytes, WriteResult]:
    buf = io.BytesIO()
    result = write_tree(buf, entries, compression=compression, **kw)  # type: ignore[arg-type]
    return buf.getvalue(), result


def _plain_tar() -> bytes:
    return _write("none")[0]


def _unzstd(data: bytes) -> bytes:
    """Every frame (``ZstdDecompressor.decompress`` stops after the first one)."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    return reader.read()


def test_round_trip_sorted_with_explicit_directories() -> None:
    data, result = _write("zstd", threads=2)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    assert result.digest == f"sha256:{result.sha256}"
    members = []
    for m in iter_members(io.BytesIO(data)):
        members.append((m.name, m.is_dir, m.mode, None if m.is_dir else m.read()))
    names = [n + "/" if d else n for n, d, _, _ in members]
    assert names == sorted(names, key=lambda n: n.encode())  # bytewise archive-name order
    assert names[: len(EXPECTED_ORDER)] == EXPECTED_ORDER
    assert names[-1] == "verify-offline.sh"
    by_name = {n: (d, mode, body) for n, d, mode, body in members}
    assert by_name["verify-offline.sh"][1] == 0o755
    assert by_name["data/a.jsonl"] == (False, 0o644, b'{"id":1}\n')
    assert by_name["portal/deep"] == (True, 0o755, None)
    assert by_name["data/ünïcode-名前.json"][2] == b"{}\n"


def test_headers_carry_nothing_host_dependent() -> None:
    with tarfile.open(fileobj=io.BytesIO(_plain_tar())) as tf:
        members = tf.getmembers()
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == DEFAULT_MTIME
        assert m.mode == (0o755 if m.isdir() or m.name.endswith(".sh") else 0o644)
        # Only the name may need a PAX record: no atime/ctime/mtime, no hdrcharset; and only
        # when the name is longer than the ustar field or not ASCII.
        assert set(m.pax_headers) <= {"path"}
        arcname = m.name + "/" if m.isdir() else m.name
        needs_pax = len(arcname.encode()) > 100 or not arcname.isascii()
        assert bool(m.pax_headers) == needs_pax, m.name
    raw = _plain_tar()
    assert len(raw) % 10240 == 0
    # devmajor/devminor empty, magic POSIX "ustar\0" "00"
    assert raw[257:265] == b"ustar\x0000"
    assert raw[329:345] == bytes(16)


def test_gzip_header_is_constant() -> None:
    data, _ = _write("gzip")
    # magic, deflate, no flags (no name, no comment), mtime 0, XFL 0 (level 6), OS 255
    assert data[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert _write("gzip", level=9)[0][8] == 2
    assert _write("gzip", level=1)[0][8] == 4
    plain = gzip.decompress(data)
    assert plain == _plain_tar()
    crc, size = int.from_bytes(data[-8:-4], "little"), int.from_bytes(data[-4:], "little")
    assert (crc, size) == (zlib.crc32(plain), len(plain))


def test_zstd_frame_has_content_size_and_checksum() -> None:
    data, result = _write("zstd")
    params = zstandard.get_frame_parameters(data)
    assert params.content_size == result.tar_size == len(_plain_tar())
    assert params.has_checksum
    assert zstandard.ZstdDecompressor().decompress(data) == _plain_tar()


def _big_entries() -> list[tuple[str, bytes]]:
    # ~40 MB: more than two zstd jobs at level 10 (a job is 4 windows, 16 MiB), so the
    # worker count would show if it changed the bytes. (Below one job, libzstd's
    # multi-threaded mode emits exactly what the single-threaded one does.) Rotations of one
    # random block: compresses fast.
    base = random.Random(7).randbytes(1 << 16)
    blob = b"".join(base[i % 4099 :] + base[: i % 4099] for i in range(600))
    return [("data/big.bin", blob), ("data/small.txt", b"x")]


def test_zstd_bytes_same_for_any_worker_count_but_not_single_threaded() -> None:
    entries = _big_entries()
    outs = {}
    for threads in (1, 2, 3):
        buf = io.BytesIO()
        write_tree(buf, entries, threads=threads)
        outs[threads] = buf.getvalue()
    assert outs[1] == outs[2] == outs[3]
    # The single-threaded mode (what threads=0 would select) writes different bytes, which is
    # why the writer refuses it.
    plain = io.BytesIO()
    result = write_tree(plain, entries, compression="none")
    single = zstandard.ZstdCompressor(
        level=10, threads=0, write_checksum=True, write_content_size=True
    ).compress(plain.getvalue())
    assert result.tar_size > 32 << 20
    assert single != outs[1]
    assert _unzstd(outs[1]) == plain.getvalue()
    with pytest.raises(BadInputError, match="threads must be 1 or more"):
        write_tree(io.BytesIO(), entries, threads=0)


def test_low_level_writer_spools_to_the_same_bytes() -> None:
    """Without a known size the writer spools; with write_tree it streams: same bytes."""
    expected, expected_result = _write("zstd", threads=1)
    buf = io.BytesIO()
    with DeterministicTarWriter(buf, threads=2) as w:
        w.add_file("data-extra.txt", b"sorts before data/ bytewise\n")
        w.add_dir("data")
        w.add_file("data/a.jsonl", io.BytesIO(b'{"id":1}\n'), size=9)
        w.add_file("data/b.jsonl", b'{"id":2}\n')
        w.add_file("data/ünïcode-名前.json", b"{}\n")
        w.add_dir("empty-dir")
        w.add_dir("manifests")
        w.add_file("manifests/export.json", b'{"schema":"x"}\n')
        path = "portal"
        for part in ["portal", *["deep"] * 25]:
            path = part if part == "portal" else f"{path}/{part}"
            w.add_dir(path)
        w.add_file(path + "/index.html", b"<html></html>\n")
        w.add_file("verify-offline.sh", b"#!/bin/sh\nsha256sum -c checksums.txt\n", mode=0o755)
    assert buf.getvalue() == expected
    assert w.result == expected_result


def test_file_sources_stream_from_disk(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    buf = io.BytesIO()
    write_tree(buf, [("data/big.bin", FileSource.from_path(src))], compression="gzip")
    contents = {m.name: m.read() for m in iter_members(io.BytesIO(buf.getvalue()))}
    assert contents == {"data": b"", "data/big.bin": src.read_bytes()}


@pytest.mark.parametrize(
    ("steps", "pattern"),
    [
        ([("file", "b"), ("file", "a")], "out of order"),
        ([("file", "a"), ("file", "a")], "duplicate entry"),
        ([("file", "d/x")], "parent directory 'd' must be added first"),
        ([("file", "a"), ("dir", "a")], "a file of the same name"),
        ([("file", "README"), ("file", "readme")], "collides with 'README'"),
        ([("file", "../x")], "'..' path component"),
        ([("file", "/abs")], "absolute path"),
        ([("file", "a\\b")], "backslash"),
        ([("file", "a\nb")], "control character"),
        ([("file", "./a")], "'.' path component"),
        ([("file", "a//b")], "empty path component"),
    ],
)
def test_writer_refuses_bad_entries(steps: list[tuple[str, str]], pattern: str) -> None:
    buf = io.BytesIO()
    w = DeterministicTarWriter(buf, compression="none")
    with pytest.raises(BadInputError, match=pattern):
        for kind, path in steps:
            w.add_dir(path) if kind == "dir" else w.add_file(path, b"")
    # A refused entry wrote nothing: the writer goes on and the archive stays valid.
    w.add_file("zzz", b"last")
    w.close()
    assert [m.name for m in iter_members(io.BytesIO(buf.getvalue()))][-1] == "zzz"


def test_writer_refuses_bad_modes_streams_and_levels() -> None:
    w = DeterministicTarWriter(io.BytesIO(), compression="none")
    with pytest.raises(BadInputError, match="mode must be 0o644 or 0o755"):
        w.add_file("a", b"", mode=0o777)
    with pytest.raises(BadInputError, match="stream ended after 3 of 10 bytes"):
        w.add_file("b", io.BytesIO(b"abc"), size=10)
    w2 = DeterministicTarWriter(io.BytesIO(), compression="gzip")
    with pytest.raises(BadInputError, match="longer than its declared 2 bytes"):
        w2.add_file("c", io.BytesIO(b"abc"), size=2)
    with pytest.raises(BadInputError, match="incomplete"):
        w2.close()
    with pytest.raises(BadInputError, match="zstd level must be 1 to 22"):
        DeterministicTarWriter(io.BytesIO(), level=23)
    with pytest.raises(BadInputError, match="gzip level must be 1 to 9"):
        DeterministicTarWriter(io.BytesIO(), compression="gzip", level=0)


def test_write_tree_refuses_duplicates_and_file_dir_clashes() -> None:
    with pytest.raises(BadInputError, match="'a': duplicate entry"):
        write_tree(io.BytesIO(), [("a", b"1"), ("a", b"2")])
    with pytest.raises(BadInputError, match="parent 'a' is a file"):
        write_tree(io.BytesIO(), [("a", b"1"), ("a/b", b"2")])
    with pytest.raises(BadInputError, match="stream ended"):
        write_tree(io.BytesIO(), [("a", FileSource(5, lambda: io.BytesIO(b"abc")))])


def test_a_source_that_changed_since_it_was_listed_fails_the_write(tmp_path: Path) -> None:
    # A manifest records each file's size and SHA-256 before the archive is written; a file
    # that changes in between must fail the write, not give an archive that lies.
    src = tmp_path / "page.html"
    src.write_bytes(b"original")
    listed = FileSource.from_path(src, sha256=hashlib.sha256(b"original").hexdigest())
    buf = io.BytesIO()
    write_tree(buf, [("page.html", listed)], compression="gzip")
    assert {m.name: m.read() for m in iter_members(io.BytesIO(buf.getvalue()))} == {
        "page.html": b"original"
    }
    src.write_bytes(b"changed!")  # same size, other bytes
    with pytest.raises(SourceChangedError, match=r"'page\.html': the data does not hash to"):
        write_tree(io.BytesIO(), [("page.html", listed)], compression="gzip")
    src.write_bytes(b"short")
    with pytest.raises(SourceChangedError, match="stream ended after 5 of 8 bytes"):
        write_tree(io.BytesIO(), [("page.html", listed)], compression="gzip")
    src.write_bytes(b"original+")
    with pytest.raises(SourceChangedError, match="longer than its declared 8 bytes"):
        write_tree(io.BytesIO(), [("page.html", listed)], compression="gzip")


def test_a_digest_mismatch_abandons_the_archive() -> None:
    w = DeterministicTarWriter(io.BytesIO(), compression="gzip")
    with pytest.raises(SourceChangedError, match="does not hash to"):
        w.add_file("a", io.BytesIO(b"abc"), size=3, sha256="0" * 64)
    with pytest.raises(BadInputError, match="incomplete"):
        w.close()
    w = DeterministicTarWriter(io.BytesIO(), compression="none")
    with pytest.raises(SourceChangedError, match="does not hash to"):
        w.add_file("b", b"abc", sha256=hashlib.sha256(b"abd").hexdigest())
    ok = DeterministicTarWriter(io.BytesIO(), compression="none")
    ok.add_file("c", b"abc", sha256=hashlib.sha256(b"abc").hexdigest())
    assert ok.close().tar_size == 10240


def test_input_order_never_changes_the_bytes() -> None:
    entries = [(f"d{n % 3}/f{n}", bytes([n])) for n in range(20)]
    one, two = io.BytesIO(), io.BytesIO()
    write_tree(one, entries, compression="gzip", level=9)
    write_tree(two, list(reversed(entries)), compression="gzip", level=9)
    assert one.getvalue() == two.getvalue()


def test_source_date_epoch() -> None:
    assert source_date_epoch({}) == DEFAULT_MTIME == 1735689600
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "0"}) == 0
    with pytest.raises(BadInputError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})
    buf = io.BytesIO()
    write_tree(buf, [("a", b"x")], compression="none", mtime=86400)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        assert tf.getmember("a").mtime == 86400


# -- the same bytes whatever the host ------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import hashlib, io, json, sys
    from export_center.archive.writer import TreeEntry, write_tree
    entries = {entries}
    out = {{}}
    for comp in ("zstd", "gzip", "none"):
        buf = io.BytesIO()
        # a set, so PYTHONHASHSEED changes the input order
        items = set((p, d.encode("utf-8", "surrogateescape")) for p, d in entries)
        tree = [TreeEntry(p, d) for p, d in items]
        tree.append(TreeEntry("bin/run.sh", b"#!/bin/sh\\n", 0o755))
        write_tree(buf, tree, compression=comp, threads=int(sys.argv[1]))
        out[comp] = hashlib.sha256(buf.getvalue()).hexdigest()
    print(json.dumps(out))
    """
)


def test_identical_bytes_across_tz_umask_locale_hashseed_and_threads(tmp_path: Path) -> None:
    entries = [
        ("data/a.json", "{}"),
        ("data/é.json", "[]"),
        ("z/" + "n" * 120, "long"),
        ("Ärger/ß.txt", "x"),
    ]
    script = tmp_path / "gen.py"
    script.write_text(_SCRIPT.format(entries=repr(entries)))
    env_base = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATE_EPOCH",)}
    variants = [
        ({"TZ": "UTC", "LANG": "C", "LC_ALL": "C", "PYTHONHASHSEED": "0"}, "022", 1),
        (
            {
                "TZ": "Asia/Kathmandu",
                "LANG": "tr_TR.UTF-8",
                "LC_ALL": "tr_TR.UTF-8",
                "PYTHONHASHSEED": "1",
            },
            "077",
            2,
        ),
        (
            {
                "TZ": "America/St_Johns",
                "LANG": "de_DE.ISO-8859-1",
                "LC_ALL": "",
                "PYTHONHASHSEED": "12345",
                "PYTHONUTF8": "0",
            },
            "000",
            3,
        ),
    ]
    results = []
    for env, umask, threads in variants:
        proc = subprocess.run(
            [
                "/bin/sh",
                "-c",
                f'umask {umask} && exec "$0" "$1" "$2"',
                sys.executable,
                str(script),
                str(threads),
            ],
            env={**env_base, **env},
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        results.append(json.loads(proc.stdout))
    assert results[0] == results[1] == results[2]


# -- what the standard tools make of it ----------------------------------------------------------


def _need(tool: str) -> str:
    return need_tool(tool)


@pytest.mark.parametrize(
    ("compression", "suffix"), [("zstd", ".tar.zst"), ("gzip", ".tar.gz"), ("none", ".tar")]
)
def test_gnu_tar_lists_and_extracts(tmp_path: Path, compression: str, suffix: str) -> None:
    tar = _need("tar")
    if compression == "zstd":
        _need("zstd")
    archive = tmp_path / f"bundle{suffix}"
    with archive.open("wb") as f:
        write_tree(f, ENTRIES, compression=compression)  # type: ignore[arg-type]
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    listing = subprocess.run(
        [tar, "-tvf", str(archive)], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(listing) == len(list(iter_members(archive)))
    for line in listing:
        perms, owner, _size, date, time_, _name = line.split(maxsplit=5)
        assert owner == "0/0"
        assert (date, time_) == ("2025-01-01", "00:00")
        assert perms in ("-rw-r--r--", "drwxr-xr-x", "-rwxr-xr-x")
    assert any(
        line.startswith("-rwxr-xr-x") and line.endswith("verify-offline.sh") for line in listing
    )
    names = subprocess.run(
        [tar, "--quoting-style=literal", "-tf", str(archive)],
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["sort", "-c"], input=names, env=env, check=True)  # bytewise order
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([tar, "-xf", str(archive), "-C", str(out)], env=env, check=True)
    assert (out / "data/a.jsonl").read_bytes() == b'{"id":1}\n'
    assert (out / "data/ünïcode-名前.json").read_bytes() == b"{}\n"


@pytest.mark.parametrize(("tool", "compression"), [("zstd", "zstd"), ("gzip", "gzip")])
def test_command_line_decompressors_agree(tmp_path: Path, tool: str, compression: str) -> None:
    exe = _need(tool)
    data, _ = _write(compression)
    archive = tmp_path / "a.bin"
    archive.write_bytes(data)
    subprocess.run([exe, "-t", str(archive)], check=True, capture_output=True)
    plain = subprocess.run([exe, "-dc", str(archive)], check=True, capture_output=True).stdout
    assert plain == _plain_tar()
    if tool == "zstd":
        info = subprocess.run(
            [exe, "-lv", str(archive)], check=True, capture_output=True, text=True
        ).stdout
        assert "Check: XXH64" in info
        assert f"Decompressed Size: {len(plain) // 1024}.0 KiB ({len(plain)} B)" in info


# -- zstd frames: large files in frames of their own -----------------------------------------------


def _frame_sizes(data: bytes) -> list[int]:
    """The declared content size of every frame, walking the stream frame by frame."""
    sizes = []
    reader = io.BytesIO(data)
    while reader.tell() < len(data):
        start = reader.tell()
        sizes.append(zstandard.frame_content_size(data[start:]))
        dobj = zstandard.ZstdDecompressor().decompressobj()
        dobj.decompress(data[start:])
        reader.seek(len(data) - len(dobj.unused_data))
    return sizes


def _tree_with_large_files() -> list[TreeEntry | tuple[str, bytes | FileSource]]:
    big = _big_entries()[0][1]
    return [
        ("README.txt", b"read me\n"),
        ("data/big.bin", big),
        ("data/edge.bin", big[: 1 << 20]),  # exactly FRAME_THRESHOLD: a frame of its own
        ("data/small.bin", big[: (1 << 20) - 1]),  # one byte less: with its neighbours
        ("manifests/export.json", b"{}"),
    ]


def test_large_files_are_frames_of_their_own_and_small_ones_share_one() -> None:
    assert FRAME_THRESHOLD == 1 << 20
    entries = _tree_with_large_files()
    data, result = _write_entries(entries, "zstd", threads=2)
    plain, _ = _write_entries(entries, "none")
    assert _unzstd(data) == plain
    big = len(_big_entries()[0][1])
    sizes = _frame_sizes(data)
    # glue (README, data/ dir, big's header) | big | padding + edge's header | edge |
    # the rest (small.bin, manifests, end-of-archive)
    assert sizes[1] == big and sizes[3] == 1 << 20
    assert len(sizes) == 5 and sum(sizes) == result.tar_size == len(plain)


def test_frames_are_the_same_bytes_whichever_route_the_data_takes(tmp_path: Path) -> None:
    """bytes, a file on disk, or a frame compressed while the data was written (in pieces of
    any size, by any worker count): one archive."""
    entries = _tree_with_large_files()
    expected, _ = _write_entries(entries, "zstd", threads=1)
    files: list[TreeEntry | tuple[str, bytes | FileSource | ZstdFrame]] = []
    for n, (path, content) in enumerate(entries):  # type: ignore[misc]
        if len(content) >= FRAME_THRESHOLD:
            w = ZstdFrameWriter(tmp_path / f"f{n}", level=10, threads=n % 3 + 1)
            rng = random.Random(n)
            pos = 0
            while pos < len(content):
                step = rng.randrange(1, 3 << 20)
                w.write(content[pos : pos + step])
                pos += step
            frame = w.finish()
            assert (frame.size, frame.sha256) == (len(content), hashlib.sha256(content).hexdigest())
            files.append((path, frame))
        else:
            local = tmp_path / f"p{n}"
            local.write_bytes(content)
            files.append((path, FileSource.from_path(local)))
    again, _ = _write_entries(files, "zstd", threads=2)
    assert again == expected
    # Another level or compression: the frame's data is read back, same bytes as from bytes.
    for compression, level in (("zstd", 3), ("gzip", 6), ("none", None)):
        want, _ = _write_entries(entries, compression, level=level)
        got, _ = _write_entries(files, compression, level=level)
        assert got == want


def test_a_large_file_frame_is_what_a_pledged_compression_writes() -> None:
    """The frame compressed without knowing its size, then given it, is the frame libzstd
    writes when the size is pledged up front (for data larger than the window)."""
    big = _big_entries()[0][1]
    data, _ = _write_entries([("big.bin", big)], "zstd", threads=2)
    header = 512
    first = zstandard.ZstdDecompressor().decompressobj()
    first.decompress(data)
    rest = first.unused_data
    pledged = zstandard.ZstdCompressor(
        level=10, threads=2, write_checksum=True, write_content_size=True
    ).compress(big)
    assert rest.startswith(pledged)
    assert zstandard.frame_content_size(data) == header


def test_a_frame_whose_data_changed_is_refused(tmp_path: Path) -> None:
    content = _big_entries()[0][1]
    w = ZstdFrameWriter(tmp_path / "f", level=10, threads=1)
    w.write(content)
    frame = w.finish()
    lying = ZstdFrame(frame.spool, frame.compressed_size, frame.size, "0" * 64, frame.level)
    with pytest.raises(SourceChangedError, match="does not hash to"):
        write_tree(io.BytesIO(), [("big.bin", lying)], compression="gzip")
    (tmp_path / "g").write_bytes(b"not a zstd frame at all" * 20)
    bogus = ZstdFrame(tmp_path / "g", 460, 2 << 20, frame.sha256, 10)
    with pytest.raises(BadInputError, match="not a zstd frame of unknown size"):
        write_tree(io.BytesIO(), [("big.bin", bogus)], compression="zstd")


@pytest.mark.parametrize("tool", ["zstd", "tar"])
def test_command_line_tools_read_every_frame(tmp_path: Path, tool: str) -> None:
    exe = _need(tool)
    _need("zstd")
    entries = _tree_with_large_files()
    data, _ = _write_entries(entries, "zstd")
    plain, _ = _write_entries(entries, "none")
    archive = tmp_path / "a.tar.zst"
    archive.write_bytes(data)
    if tool == "zstd":
        subprocess.run([exe, "-t", str(archive)], check=True, capture_output=True)
        out = subprocess.run([exe, "-dc", str(archive)], check=True, capture_output=True)
        assert out.stdout == plain
        info = subprocess.run(
            [exe, "-lv", str(archive)], check=True, capture_output=True, text=True
        ).stdout
        assert "# Zstandard Frames: 5" in info
        assert f"({len(plain)} B)" in info
    else:
        dest = tmp_path / "x"
        dest.mkdir()
        subprocess.run([exe, "--zstd", "-xf", str(archive), "-C", str(dest)], check=True)
        for path, content in entries:  # type: ignore[misc]
            assert (dest / path).read_bytes() == content


# -- memory stays flat -----------------------------------------------------------------------------

_MEM_SCRIPT = textwrap.dedent(
    """
    import io, os, random, resource, sys
    from pathlib import Path
    from export_center.archive.writer import FileSource, write_tree
    from export_center.archive.reader import Limits, iter_members

    class Generated(io.RawIOBase):
        # Compressible generated data, made on the fly: the test never holds it.
        def __init__(self, size, seed):
            self.left = size
            self.base = random.Random(seed).randbytes(1 << 16) * 6
            self.i = 0
        def readable(self):
            return True
        def readinto(self, b):
            n = min(len(b), self.left, 1 << 18)
            if n <= 0:
                return 0
            off = (self.i * 4099) % 65536
            self.i += 1
            memoryview(b).cast("B")[:n] = self.base[off:off + n]
            self.left -= n
            return n

    mode, size, target = sys.argv[1], int(sys.argv[2]) << 20, Path(sys.argv[3])
    if mode == "write":
        files = [(f"data/part-{i}.bin", size // 3) for i in range(3)]
        with target.open("wb") as out:
            write_tree(out, [(p, FileSource(s, lambda s=s, i=i: io.BufferedReader(Generated(s, i))))
                             for i, (p, s) in enumerate(files)], threads=2)
    else:
        total = 0
        for m in iter_members(target, Limits(max_compression_ratio=1e9)):
            for chunk in m.chunks() if not m.is_dir else ():
                total += len(chunk)
        assert total == size // 3 * 3, total
    # Peak RSS of this process image. On Linux, ru_maxrss also counts the parent's RSS at
    # fork time (it survives exec), so prefer VmHWM, which belongs to this image alone.
    try:
        status = Path("/proc/self/status").read_text()
        hwm = next(l for l in status.splitlines() if l.startswith("VmHWM:"))
        print(int(hwm.split()[1]) // 1024)
    except (OSError, StopIteration):
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def _peak_rss_mib(script: Path, mode: str, size_mib: int, target: Path) -> int:
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(size_mib), str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout.strip())


def test_memory_stays_flat_for_a_large_archive(tmp_path: Path) -> None:
    """512 MiB of generated data streamed through the writer (zstd, level 10, two workers)
    and back through the reader, each in its own process, peak RSS measured."""
    script = tmp_path / "mem.py"
    script.write_text(_MEM_SCRIPT)
    archive = tmp_path / "large.tar.zst"
    write_peak = _peak_rss_mib(script, "write", 512, archive)
    read_peak = _peak_rss_mib(script, "read", 512, archive)
    # The writer's peak is libzstd's multi-threaded state (jobs of 16 MiB at level 10, a few
    # in flight per worker: 140-220 MiB here, depending on scheduling), whatever the size.
    assert write_peak < 320, write_peak
    # The reader holds one chunk at a time plus the zstd window.
    assert read_peak < 100, read_peak
