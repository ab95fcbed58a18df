"""Hostile and corrupt archives: each one is refused with the member and the reason named, and
``safe_extract`` leaves nothing behind, neither outside nor inside the target directory."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import resource
import stat
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from export_center.archive.reader import Limits, iter_members, safe_extract
from export_center.archive.writer import write_tree
from export_center.errors import UnsafeArchiveError
from support.archive_craft import (
    directory,
    end,
    entry,
    header,
    pax,
    tar,
    zip_archive,
)

# (case id, archive bytes, regex the message must match: the member and the reason)
TAR_CASES: list[tuple[str, bytes, str]] = [
    (
        "dotdot",
        tar(entry("../evil.txt", b"pwned"), end()),
        r"'\.\./evil\.txt'.*'\.\.' path component",
    ),
    (
        "dotdot-nested",
        tar(directory("a"), entry("a/../../evil.txt", b"pwned"), end()),
        r"'a/\.\./\.\./evil\.txt'.*'\.\.' path component",
    ),
    ("absolute", tar(entry("/tmp/evil.txt", b"pwned"), end()), r"'/tmp/evil\.txt'.*absolute"),
    (
        "symlink",
        tar(header("link", typeflag=b"2", linkname=b"/etc/passwd"), end()),
        r"'link'.*symbolic link",
    ),
    (
        "symlink-then-write-through",
        tar(
            header("d", typeflag=b"2", linkname=b"/tmp"),
            entry("d/evil.txt", b"pwned"),
            end(),
        ),
        r"'d'.*symbolic link",
    ),
    (
        "hardlink",
        tar(header("hard", typeflag=b"1", linkname=b"/etc/passwd"), end()),
        r"'hard'.*hard link",
    ),
    ("chardev", tar(header("null", typeflag=b"3"), end()), r"'null'.*character device"),
    ("blockdev", tar(header("sda", typeflag=b"4"), end()), r"'sda'.*block device"),
    ("fifo", tar(header("pipe", typeflag=b"6"), end()), r"'pipe'.*FIFO"),
    (
        "duplicate",
        tar(entry("a.txt", b"first"), entry("a.txt", b"second"), end()),
        r"'a\.txt'.*duplicate entry",
    ),
    (
        "duplicate-after-normalization",
        tar(entry("./a.txt", b"first"), entry("a.txt", b"second"), end()),
        r"'a\.txt'.*duplicate entry",
    ),
    (
        "case-collision",
        tar(entry("README", b"1"), entry("readme", b"2"), end()),
        r"'readme'.*collides with 'README'",
    ),
    (
        "file-as-parent",
        tar(entry("a", b"file"), entry("a/b.txt", b"x"), end()),
        r"'a/b\.txt'.*parent 'a' is a file",
    ),
    (
        "huge-pax-header",
        # Declares a 4 GiB extended header: tarfile would try to read it all.
        tar(header("././@PaxHeader", typeflag=b"x", size=1 << 32), b"30 path=whatever\n"),
        r"extended header '\./\./@PaxHeader' at offset 0: PAX header of 4294967296 bytes"
        r" exceeds max_pax_header_bytes",
    ),
    (
        "global-pax",
        tar(pax({"path": "evil"}, typeflag=b"g"), entry("a.txt", b"x"), end()),
        r"header '\./\./@PaxHeader' at offset 0: global PAX header",
    ),
    (
        "gnu-sparse-type",
        tar(header("sparse.bin", typeflag=b"S", size=0), end()),
        r"'sparse\.bin'.*GNU sparse",
    ),
    (
        "gnu-sparse-pax-keys",
        tar(
            pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "x"}),
            entry("GNUSparseFile.0/x", b"0\n"),
            end(),
        ),
        r"'GNUSparseFile\.0/x'.*GNU sparse file \(PAX key 'GNU\.sparse\.major'\)",
    ),
    (
        "bad-checksum",
        tar(entry("ok.txt", b"x"), header("tampered.txt", bad_checksum=True), end()),
        r"'tampered\.txt'.*bad header checksum",
    ),
    (
        "trailing-garbage",
        tar(entry("a.txt", b"x"), end(), b"#!/bin/sh rm -rf ~\n"),
        r"end-of-archive marker.*data after the end-of-archive marker",
    ),
    (
        "concatenated-archive",
        tar(entry("a.txt", b"x"), end(), tar(entry("hidden.txt", b"evil"), end())),
        r"data after the end-of-archive marker \(a concatenated archive",
    ),
    ("backslash", tar(entry("a\\..\\evil", b"x"), end()), r"backslash"),
    (
        "control-char",
        tar(pax({"path": "a\x1b[2Jb"}), entry("placeholder", b"x"), end()),
        r"control character U\+001B",
    ),
    (
        "nul-in-pax-path",
        tar(pax({"path": "a.txt\x00.sh"}), entry("placeholder", b"x"), end()),
        r"control character U\+0000",
    ),
    (
        "hidden-after-nul",
        tar(entry(b"a.txt\x00evil.sh", b"x"), end()),
        r"data hidden after the NUL",
    ),
    ("setuid", tar(entry("run", b"x", mode=0o4755), end()), r"'run'.*setuid"),
    ("sticky-dir", tar(header("tmp/", typeflag=b"5", mode=0o1777), end()), r"'tmp/'.*sticky"),
    ("file-with-slash", tar(entry("dir/", b"x"), end()), r"'dir/'.*file name ends with '/'"),
    (
        "pax-linkpath",
        tar(pax({"linkpath": "/etc/passwd"}), entry("f", b"x"), end()),
        r"'f'.*linkpath",
    ),
    (
        "gnu-longlink",
        tar(header("././@LongLink", typeflag=b"K", size=4), b"x" * 512, end()),
        r"GNU long link",
    ),
    (
        "two-extended-headers",
        tar(pax({"path": "a"}), pax({"path": "b"}), entry("c", b"x"), end()),
        r"two extended headers",
    ),
    (
        "not-tar-magic",
        tar(entry("a", b"x", magic=b"ustar\x00\x00\x00")[:257] + bytes(255)),
        r"not a ustar|not a tar",
    ),
    ("truncated", tar(entry("a.txt", b"x" * 2000))[:1024], r"'a\.txt'.*truncated"),
    (
        "no-end-marker",
        entry("a.txt", b"x"),
        r"archive ends without an end-of-archive marker",
    ),
    (
        "dir-with-data",
        tar(header("d/", typeflag=b"5", size=10), bytes(512), end()),
        r"'d/'.*directory with 10 bytes",
    ),
]


def _leftovers(parent: Path, archive: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p != archive)


def _assert_refused(
    archive: Path, pattern: str, tmp_path: Path, limits: Limits | None = None
) -> None:
    with pytest.raises(UnsafeArchiveError, match=pattern):
        for member in iter_members(archive, limits):
            if not member.is_dir:
                member.read()
    dest_parent = tmp_path / "extract"
    dest_parent.mkdir()
    dest = dest_parent / "dest"
    with pytest.raises(UnsafeArchiveError, match=pattern):
        safe_extract(archive, dest, limits)
    assert not dest.exists(), "a refused archive must leave no target directory"
    assert list(dest_parent.iterdir()) == [], "the staging directory must be removed"
    # Nothing escaped: no evil.txt anywhere around.
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/evil.txt").exists()


@pytest.mark.parametrize(
    ("data", "pattern"), [c[1:] for c in TAR_CASES], ids=[c[0] for c in TAR_CASES]
)
def test_hostile_tar_is_refused(tmp_path: Path, data: bytes, pattern: str) -> None:
    archive = tmp_path / "hostile.bin"
    archive.write_bytes(data)
    _assert_refused(archive, pattern, tmp_path)


@pytest.mark.parametrize("compress", ["zstd", "gzip", "xz"])
def test_hostile_tar_is_refused_inside_compression(tmp_path: Path, compress: str) -> None:
    data = tar(entry("../evil.txt", b"pwned"), end())
    packers: dict[str, Callable[[bytes], bytes]] = {
        "zstd": zstandard.ZstdCompressor().compress,
        "gzip": gzip.compress,
        "xz": lzma.compress,
    }
    packed = packers[compress](data)
    archive = tmp_path / "innocent-name.zip"  # the name lies; magic bytes decide
    archive.write_bytes(packed)
    _assert_refused(archive, r"'\.\./evil\.txt'.*'\.\.' path component", tmp_path)


def test_huge_pax_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    # A few bytes of archive ask for 4 GiB: refused from the size field alone, in no time.
    archive = tmp_path / "pax.tar"
    archive.write_bytes(header("././@PaxHeader", typeflag=b"x", size=1 << 32) + b"x" * 100)
    start = time.monotonic()
    with pytest.raises(UnsafeArchiveError, match="exceeds max_pax_header_bytes"):
        list(iter_members(archive))
    assert time.monotonic() - start < 1


@pytest.mark.parametrize(
    ("limits", "data", "pattern"),
    [
        (
            Limits(max_members=2),
            tar(entry("a", b""), entry("b", b""), entry("c", b""), end()),
            r"'c'.*more than max_members \(2\)",
        ),
        (Limits(max_name_length=10), tar(entry("a" * 11, b""), end()), r"max_name_length"),
        (Limits(max_path_depth=2), tar(entry("a/b/c", b""), end()), r"'a/b/c'.*max_path_depth"),
        (
            Limits(max_member_bytes=10),
            tar(header("big", size=1 << 30), end()),
            r"'big'.*size 1073741824 exceeds max_member_bytes \(10\)",
        ),
        (
            Limits(max_total_bytes=10_000),
            tar(entry("a", b"x" * 6000), entry("b", b"y" * 6000), end()),
            r"'b'.*members add up to more than max_total_bytes",
        ),
        (
            Limits(max_pax_header_bytes=20),
            tar(pax({"path": "x" * 30}), entry("f", b""), end()),
            r"max_pax_header_bytes \(20\)",
        ),
    ],
    ids=["members", "name-length", "depth", "member-size", "total-size", "pax-size"],
)
def test_limits(tmp_path: Path, limits: Limits, data: bytes, pattern: str) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(data)
    _assert_refused(archive, pattern, tmp_path, limits)


# -- compression bombs --------------------------------------------------------------------------

BOMB_SIZE = 2 << 30  # 2 GiB of zeros in a ~64 KiB zstd frame


@pytest.fixture(scope="module")
def zstd_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.zst"
    zeros = bytes(1 << 20)
    tar_size = 512 + BOMB_SIZE + 1024
    tar_size += -tar_size % 10240
    with path.open("wb") as f:
        cctx = zstandard.ZstdCompressor(level=1, write_content_size=True, write_checksum=True)
        with cctx.stream_writer(f, size=tar_size, closefd=False) as w:
            w.write(header("zeros.bin", size=BOMB_SIZE))
            for _ in range(BOMB_SIZE >> 20):  # streamed: never held in memory
                w.write(zeros)
            w.write(bytes(tar_size - 512 - BOMB_SIZE))
    assert path.stat().st_size < 1 << 20
    return path


def test_zstd_bomb_refused_by_ratio_quickly(zstd_bomb: Path, tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    _assert_refused(
        zstd_bomb, r"member 'zeros\.bin'.*max_compression_ratio \(compression bomb\)", tmp_path
    )
    assert time.monotonic() - start < 10
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"peak RSS grew by {grown_mib:.0f} MiB reading a bomb"


def test_zstd_frame_declaring_too_much_is_refused_up_front(zstd_bomb: Path, tmp_path: Path) -> None:
    _assert_refused(
        zstd_bomb,
        r"zstd frames declare \d+ bytes, over max_total_bytes",
        tmp_path,
        Limits(max_total_bytes=1 << 30),
    )


def test_zip_bomb_refused_by_declared_ratio(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as w:
        chunk = bytes(1 << 20)
        for _ in range(64):
            w.write(chunk)
    _assert_refused(archive, r"'zeros\.bin'.*max_compression_ratio \(compression bomb\)", tmp_path)


def test_zip_overlapping_entries_refused(tmp_path: Path) -> None:
    # The non-recursive zip bomb: many central entries sharing one compressed blob.
    archive = tmp_path / "overlap.zip"
    archive.write_bytes(
        zip_archive([(b"a.txt", b"x" * 100)], extra_central=[(b"b.txt", 0, 0), (b"c.txt", 0, 0)])
    )
    _assert_refused(archive, r"overlaps entry", tmp_path)


# -- hostile zips -------------------------------------------------------------------------------


def _zip_with(tmp_path: Path, info: zipfile.ZipInfo, data: bytes = b"pwned") -> Path:
    archive = tmp_path / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, data)
    return archive


def test_zip_traversal_refused(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path, zipfile.ZipInfo("../evil.txt"))
    _assert_refused(archive, r"'\.\./evil\.txt'.*'\.\.' path component", tmp_path)


def test_zip_absolute_refused(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path, zipfile.ZipInfo("/tmp/evil.txt"))
    _assert_refused(archive, r"'/tmp/evil\.txt'.*absolute path", tmp_path)


def test_zip_symlink_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip_with(tmp_path, info, b"/etc/passwd")
    _assert_refused(archive, r"'link'.*symbolic link", tmp_path)


def test_zip_traversal_and_symlink_together_refused(tmp_path: Path) -> None:
    archive = tmp_path / "both.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("up")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "..")
        zf.writestr("up/evil.txt", "pwned")
    _assert_refused(archive, r"'up'.*symbolic link", tmp_path)


def test_zip_encrypted_refused(tmp_path: Path) -> None:
    archive = tmp_path / "enc.zip"
    archive.write_bytes(zip_archive([(b"secret.txt", b"x")], flags=0x1))
    _assert_refused(archive, r"'secret\.txt'.*encrypted entry", tmp_path)


def test_zip_nul_in_name_refused(tmp_path: Path) -> None:
    # zipfile cuts names at NUL ("a.txt\0.sh" would become "a.txt"): refuse instead.
    archive = tmp_path / "nul.zip"
    archive.write_bytes(zip_archive([(b"a.txt\x00.sh", b"x")]))
    _assert_refused(archive, r"NUL in name", tmp_path)


def test_zip_setuid_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("run.sh")
    info.external_attr = (stat.S_IFREG | 0o4755) << 16
    _assert_refused(_zip_with(tmp_path, info), r"'run\.sh'.*setuid", tmp_path)


def test_zip_duplicate_refused(tmp_path: Path) -> None:
    archive = tmp_path / "dup.zip"
    archive.write_bytes(zip_archive([(b"a.txt", b"1"), (b"a.txt", b"2")]))
    _assert_refused(archive, r"'a\.txt'.*duplicate entry", tmp_path)


def test_zip_member_over_size_limit_refused(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    archive.write_bytes(zip_archive([(b"big.bin", b"x" * 5000)]))
    _assert_refused(
        archive, r"'big\.bin'.*exceeds max_member_bytes", tmp_path, Limits(max_member_bytes=4096)
    )


# -- corrupt streams ----------------------------------------------------------------------------


def _good_tar() -> bytes:
    buf = io.BytesIO()
    write_tree(buf, [("a.txt", b"hello\n" * 1000)], compression="none")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (
            lambda t: zstandard.ZstdCompressor(write_checksum=True).compress(t)[:-2],
            r"zstd stream is truncated",
        ),
        (
            lambda t: zstandard.ZstdCompressor().compress(t) + b"garbage!",
            r"data after the last zstd frame|corrupt zstd",
        ),
        (lambda t: gzip.compress(t)[:-4], r"gzip stream is truncated"),
        (lambda t: gzip.compress(t) + b"garbage!", r"corrupt gzip data"),
        (lambda t: lzma.compress(t)[:-10], r"xz stream is truncated|corrupt xz"),
        (lambda t: b"just some text, not an archive" * 30, r"not a tar .* or zip archive"),
    ],
    ids=[
        "zstd-truncated",
        "zstd-trailing",
        "gzip-truncated",
        "gzip-trailing",
        "xz-truncated",
        "not-an-archive",
    ],
)
def test_corrupt_streams_refused(
    tmp_path: Path, make: Callable[[bytes], bytes], pattern: str
) -> None:
    archive = tmp_path / "corrupt.bin"
    archive.write_bytes(make(_good_tar()))
    _assert_refused(archive, pattern, tmp_path)


def test_tarfile_would_have_missed_the_concatenated_archive(tmp_path: Path) -> None:
    """Why we parse tar ourselves: tarfile stops at the first end marker and never sees
    the second archive."""
    import tarfile

    data = tar(entry("a.txt", b"x"), end(), tar(entry("hidden.txt", b"evil"), end()))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getnames() == ["a.txt"]
    archive = tmp_path / "concat.tar"
    archive.write_bytes(data)
    with pytest.raises(UnsafeArchiveError, match="concatenated"):
        list(iter_members(archive))
    assert os.listdir(tmp_path) == ["concat.tar"]
