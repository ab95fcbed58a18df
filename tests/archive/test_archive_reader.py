"""The safe reader on well-formed archives: every format it accepts, the member API, and
safe_extract's all-or-nothing behaviour."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from export_center.archive.reader import Limits, Member, iter_members, safe_extract
from export_center.archive.writer import TreeEntry, write_tree
from export_center.errors import BadInputError, UnsafeArchiveError
from support.tools import need_tool

TREE = [
    ("data/a.json", b'{"a":1}\n'),
    ("data/nested/b.json", b'{"b":2}\n' * 1000),
    ("ünï/名前.txt", b"unicode\n"),
    ("long/" + "n" * 150, b"long name\n"),
]
FILES = {path: data for path, data in TREE} | {"run.sh": b"#!/bin/sh\n"}


def _archive(compression: str = "none") -> bytes:
    buf = io.BytesIO()
    entries = [TreeEntry(p, d) for p, d in TREE] + [TreeEntry("run.sh", b"#!/bin/sh\n", 0o755)]
    write_tree(buf, entries, compression=compression)  # type: ignore[arg-type]
    return buf.getvalue()


def _files(source: Path | io.BytesIO, limits: Limits | None = None) -> dict[str, bytes]:
    return {m.name: m.read() for m in iter_members(source, limits) if not m.is_dir}


@pytest.mark.parametrize(
    "pack",
    [
        lambda: _archive("none"),
        lambda: _archive("zstd"),
        lambda: _archive("gzip"),
        lambda: lzma.compress(_archive()),
        lambda: bz2.compress(_archive()),
        # concatenated streams are one stream in all these formats
        lambda: gzip.compress(_archive()[:4096]) + gzip.compress(_archive()[4096:]),
        lambda: lzma.compress(_archive()[:4096]) + bytes(8) + lzma.compress(_archive()[4096:]),
        lambda: bz2.compress(_archive()[:4096]) + bz2.compress(_archive()[4096:]),
        lambda: (
            zstandard.ZstdCompressor().compress(_archive()[:4096])
            + zstandard.ZstdCompressor(write_checksum=True).compress(_archive()[4096:])
        ),
        # tape-style zero padding after the compressed stream
        lambda: gzip.compress(_archive()) + bytes(1024),
    ],
    ids=[
        "tar",
        "zstd",
        "gzip",
        "xz",
        "bzip2",
        "gzip-multi",
        "xz-multi-padded",
        "bzip2-multi",
        "zstd-two-frames",
        "gzip-zero-padded",
    ],
)
def test_formats_detected_by_magic(tmp_path: Path, pack: Callable[[], bytes]) -> None:
    archive = tmp_path / "misnamed.json"  # extension is ignored
    archive.write_bytes(pack())
    assert _files(archive) == FILES


def _python_tar(fmt: int, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                data = name.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tarfile_written_archives(fmt: int) -> None:
    long_name = "d/" + "x" * 98 if fmt == tarfile.USTAR_FORMAT else "d/" + "x" * 200
    names = [
        "./",
        "./d/",
        f"./{long_name}",
        "./d/é.txt" if fmt != tarfile.USTAR_FORMAT else "./d/e",
    ]
    members = list(iter_members(io.BytesIO(_python_tar(fmt, names))))
    # "./" (the root) is not a member; the leading "./" is dropped from the others
    assert [m.name for m in members] == ["d", long_name, names[3][2:]]


def test_gnu_tar_written_archives(tmp_path: Path) -> None:
    tar = need_tool("tar")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / ("n" * 120)).write_text("long")
    (src / "sub" / "é.txt").write_text("utf-8 name")
    (src / "top.txt").write_text("top")
    for flags in (["-czf"], ["--format=posix", "-cJf"], ["--format=gnu", "-cjf"]):
        archive = tmp_path / "gnu.archive"
        subprocess.run([tar, *flags, str(archive), "-C", str(src), "."], check=True)
        assert _files(archive) == {
            "sub/" + "n" * 120: b"long",
            "sub/é.txt": b"utf-8 name",
            "top.txt": b"top",
        }


def test_zip_archives(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dir/", b"")
        zf.writestr("dir/a.txt", b"a" * 10_000)
        info = zipfile.ZipInfo("dir/run.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(info, b"#!/bin/sh\n")
        zf.writestr("ü.txt", b"unicode")
    members = list(iter_members(archive))
    assert [(m.name, m.is_dir, m.mode) for m in members] == [
        ("dir", True, 0o775),  # zipfile.writestr's default for a directory
        ("dir/a.txt", False, 0o600),  # zipfile.writestr's default for a name
        ("dir/run.sh", False, 0o755),
        ("ü.txt", False, 0o600),
    ]
    assert _files(archive)["dir/a.txt"] == b"a" * 10_000


def test_member_data_only_while_current() -> None:
    members: list[Member] = []
    for m in iter_members(io.BytesIO(_archive("zstd"))):
        members.append(m)
        if m.name == "data/a.json":
            first = next(m.chunks(chunk_size=3))
            assert first == b'{"a'  # partly read: the rest is skipped when moving on
            with pytest.raises(BadInputError, match="read only once"):
                m.read()
    late = next(m for m in members if m.name == "run.sh")
    with pytest.raises(BadInputError, match="only be read while iterating"):
        late.read()


def test_non_seekable_streams() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            chunk = self._buf.read(min(len(b), 777))  # short reads, like a pipe
            b[: len(chunk)] = chunk
            return len(chunk)

    assert _files(Pipe(_archive("gzip"))) == FILES  # type: ignore[arg-type]
    zip_bytes = io.BytesIO()
    with zipfile.ZipFile(zip_bytes, "w") as zf:
        zf.writestr("a", b"a")
    with pytest.raises(BadInputError, match="seekable"):
        list(iter_members(Pipe(zip_bytes.getvalue())))  # type: ignore[arg-type]


def test_limits_are_validated() -> None:
    with pytest.raises(BadInputError, match="max_members must be positive"):
        Limits(max_members=0)


def test_ratio_grace_lets_small_compressible_archives_through(tmp_path: Path) -> None:
    # 8 MiB of zeros compress ~1000x, but stay under the grace: not a bomb.
    buf = io.BytesIO()
    write_tree(buf, [("zeros.bin", bytes(8 << 20))])
    assert len(buf.getvalue()) * 200 < 8 << 20
    assert [m.size for m in iter_members(io.BytesIO(buf.getvalue()))] == [8 << 20]


# -- narrowing: formats, PAX keys, members read into memory -------------------------------------


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (lambda: _archive("none"), "a plain tar"),
        (lambda: _archive("zstd"), "a zstd-compressed tar"),
        (lambda: lzma.compress(_archive()), "a xz-compressed tar"),
        (lambda: b"PK\x03\x04 not a tarball", "a zip"),
        (lambda: b"plain text, not an archive", "unrecognized data"),
    ],
    ids=["tar", "zstd", "xz", "zip", "garbage"],
)
def test_formats_narrow_what_is_accepted(data: Callable[[], bytes], found: str) -> None:
    assert _files(io.BytesIO(_archive("gzip"))) == FILES
    accepted = {m.name for m in iter_members(io.BytesIO(_archive("gzip")), formats={"gzip"})}
    assert set(FILES) <= accepted
    pattern = rf"not a gzip-compressed tar archive \(found {found}\)"
    with pytest.raises(UnsafeArchiveError, match=pattern):
        list(iter_members(io.BytesIO(data()), formats={"gzip"}))


def test_formats_must_be_known() -> None:
    with pytest.raises(BadInputError, match="formats"):
        list(iter_members(io.BytesIO(_archive()), formats={"rar"}))  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="formats"):
        list(iter_members(io.BytesIO(_archive()), formats=()))


def _tar_with_pax(records: dict[str, str], name: str = "a.txt") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = 1
        info.pax_headers = records
        tf.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def test_pax_keys_narrow_the_records_accepted() -> None:
    tagged = _tar_with_pax({"comment": "hello", "SCHILY.xattr.user.x": "y", "uname": "me"})
    # By default a record the reader does not act on is ignored ...
    assert [m.name for m in iter_members(io.BytesIO(tagged))] == ["a.txt"]
    # ... and a caller that knows its writer can refuse everything else.
    with pytest.raises(
        UnsafeArchiveError,
        match=r"member 'a\.txt': unexpected PAX records \['SCHILY\.xattr\.user\.x', 'comment'\]",
    ):
        list(iter_members(io.BytesIO(tagged), pax_keys={"uname"}))
    assert [
        m.name
        for m in iter_members(
            io.BytesIO(tagged), pax_keys={"comment", "SCHILY.xattr.user.x", "uname"}
        )
    ] == ["a.txt"]
    # path and size are what the reader interprets: always accepted.
    long_name = "d" * 150
    members = iter_members(io.BytesIO(_tar_with_pax({}, long_name)), pax_keys=())
    assert [m.name for m in members] == [long_name]


def test_member_read_into_memory_is_capped_before_reading() -> None:
    for m in iter_members(io.BytesIO(_archive("gzip"))):
        if m.name == "data/nested/b.json":
            with pytest.raises(UnsafeArchiveError, match=r"8000 bytes, more than the 7999"):
                m.read(max_bytes=7999)
            # refused from the declared size: the data is still unread
            assert m.read(max_bytes=8000) == b'{"b":2}\n' * 1000


# -- safe_extract ---------------------------------------------------------------------------------


def test_safe_extract_writes_fixed_modes_whatever_the_umask(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.tar.zst"
    archive.write_bytes(_archive("zstd"))
    dest = tmp_path / "out"
    old = os.umask(0o077)
    try:
        written = safe_extract(archive, dest)
    finally:
        os.umask(old)
    assert sorted(written) == sorted(FILES)
    for path, data in FILES.items():
        assert (dest / path).read_bytes() == data
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "data/a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "data/nested").stat().st_mode) == 0o755
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.tar.zst", "out"]


def test_safe_extract_into_an_empty_directory(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(_archive())
    dest = tmp_path / "empty"
    dest.mkdir()
    safe_extract(archive, dest)
    assert (dest / "run.sh").is_file()


def test_safe_extract_refuses_existing_destinations(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(_archive())
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not an empty directory"):
        safe_extract(archive, full)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(BadInputError, match="not an empty directory"):
        safe_extract(archive, link)
    assert list(elsewhere.iterdir()) == []


def test_safe_extract_only_allowed_paths(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(_archive())
    dest = tmp_path / "out"
    allowed = set(FILES) - {"run.sh"}
    with pytest.raises(UnsafeArchiveError, match=r"'run\.sh': not a path the manifest"):
        safe_extract(archive, dest, allowed=allowed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]
    assert sorted(safe_extract(archive, dest, allowed=set(FILES) | {"absent.txt"})) == sorted(FILES)
    with pytest.raises(BadInputError, match=r"allowed path '\.\./x'"):
        safe_extract(archive, tmp_path / "other", allowed={"../x"})
