"""The deterministic ``.tgz`` writer and the guarded streaming reader of devportal bundles.

Writer (bundles.md, "Determinism"): PAX format, UTF-8 names, entries sorted bytewise by path,
every parent directory written explicitly, uid/gid 0, empty user/group names, mode 0644 for
files and 0755 for scripts and directories, mtime ``SOURCE_DATE_EPOCH``; gzip level 9 with
header mtime 0 and no file name. Nothing from the host (umask, owner, time zone, locale, file
mtimes) reaches the bytes. The same zlib gives the same compressed bytes; CPython's bundled or
system zlib is the reference.

Reader: the bundle comes from outside, so it is read as a stream (``r|``: no seeking, so no
negative-size loops), member by member, with limits on member count, name length, per-member
and total size and compression ratio (which also bounds what ``tarfile`` buffers for a PAX
header). Only regular files and directories are accepted; names must be relative, clean and
unique; global PAX headers and sparse members are refused; whatever follows the end-of-archive
marker must be zeros (``tarfile`` silently stops at a corrupt header, hiding later members).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from export_center.errors import UnsafeArchiveError

__all__ = [
    "DEFAULT_SOURCE_DATE_EPOCH",
    "InputChangedError",
    "Limits",
    "Member",
    "ReadMember",
    "read_members",
    "write_tgz",
]

#: 2025-01-01T00:00:00Z, the project-wide default (bundles.md).
DEFAULT_SOURCE_DATE_EPOCH = 1735689600

_CHUNK = 1 << 20
FILE_MODE = 0o644
EXEC_MODE = 0o755


class _Source(Protocol):
    def __call__(self) -> BinaryIO: ...


@dataclass(frozen=True)
class Member:
    """One file of the archive: its path, size, expected sha256, mode and how to open it.

    The writer streams the bytes and checks them against ``size`` and ``sha256``, so an input
    file that changes between hashing and archiving fails the build instead of producing a
    bundle whose manifest lies.
    """

    path: str
    size: int
    sha256: str
    open: _Source
    executable: bool = False


def bytes_member(path: str, data: bytes, *, executable: bool = False) -> Member:
    """A :class:`Member` over bytes held in memory."""
    return Member(
        path=path,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        open=lambda: io.BytesIO(data),
        executable=executable,
    )


def file_member(path: str, source: Path, size: int, sha256: str) -> Member:
    """A :class:`Member` streamed from ``source`` on disk."""
    return Member(path=path, size=size, sha256=sha256, open=lambda: source.open("rb"))


def _key(path: str) -> bytes:
    return path.encode("utf-8", errors="surrogateescape")


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")[:-1]
    for n in range(1, len(parts) + 1):
        yield "/".join(parts[:n])


def _info(name: str, *, directory: bool, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class InputChangedError(Exception):
    """A member's source could not be read, or differs from its declared size or sha256."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class _Checked(io.RawIOBase):
    """Streams a member's source, hashing it; ``finish`` checks size and digest."""

    def __init__(self, member: Member, raw: BinaryIO) -> None:
        self._member = member
        self._raw = raw
        self._hash = hashlib.sha256()
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(buffer))
        except OSError as e:
            raise InputChangedError(self._member.path, f"cannot read: {e}") from e
        if not data and self._count < self._member.size:
            raise InputChangedError(self._member.path, "shrank while being archived")
        self._hash.update(data)
        self._count += len(data)
        buffer[: len(data)] = data
        return len(data)

    def finish(self) -> None:
        rest = self._raw.read(1)
        if rest or self._count != self._member.size:
            raise InputChangedError(self._member.path, "grew while being archived")
        if self._hash.hexdigest() != self._member.sha256:
            raise InputChangedError(self._member.path, "changed while being archived")


def write_tgz(out: BinaryIO, members: Iterable[Member], *, mtime: int) -> None:
    """Write the deterministic ``.tgz`` of ``members`` (plus their parent directories) to ``out``.

    Raises:
        ValueError: duplicate paths, a path that is also a directory, or ``mtime`` < 0.
        InputChangedError: a member's source is unreadable or its bytes differ from its
            declared size or sha256 (the input changed while being archived).
        OSError: writing to ``out`` failed.
    """
    if mtime < 0:
        raise ValueError(f"mtime must not be negative, got {mtime}")
    files: dict[str, Member] = {}
    for m in members:
        if m.path in files:
            raise ValueError(f"{m.path} is given twice")
        files[m.path] = m
    directories = {d for path in files for d in _parents(path)}
    clash = sorted(directories & files.keys())
    if clash:
        raise ValueError(f"{clash[0]} is both a file and a directory")
    names = sorted([*files, *directories], key=_key)
    # encoding is explicit: the default follows the locale, and with it the header bytes.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar,
    ):
        for name in names:
            if name in directories:
                tar.addfile(_info(name, directory=True, size=0, mode=EXEC_MODE, mtime=mtime))
                continue
            member = files[name]
            mode = EXEC_MODE if member.executable else FILE_MODE
            info = _info(name, directory=False, size=member.size, mode=mode, mtime=mtime)
            try:
                raw = member.open()
            except OSError as e:
                raise InputChangedError(name, f"cannot open: {e}") from e
            with raw:
                checked = _Checked(member, raw)
                tar.addfile(info, io.BufferedReader(checked, _CHUNK))
                checked.finish()


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Bounds for reading an untrusted bundle."""

    max_members: int = 100_000
    max_name_bytes: int = 4096
    max_member_bytes: int = 8 << 30
    max_total_bytes: int = 32 << 30
    # Decompressed bytes may exceed this multiple of the compressed bytes read so far only
    # within the first `ratio_floor_bytes` (gzip's own maximum is about 1032:1).
    max_ratio: int = 200
    ratio_floor_bytes: int = 64 << 20


@dataclass(frozen=True)
class ReadMember:
    """A member as read: directories have ``sha256 == ""``; ``data`` is kept only when asked."""

    path: str
    is_dir: bool
    size: int
    sha256: str
    data: bytes | None


class _Counting(io.RawIOBase):
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        self.count += len(data)
        buffer[: len(data)] = data
        return len(data)


class _Bounded(io.RawIOBase):
    """Decompressed stream that refuses to grow past the total and ratio limits."""

    def __init__(self, inner: BinaryIO, compressed: _Counting, limits: Limits) -> None:
        self._inner = inner
        self._compressed = compressed
        self._limits = limits
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buffer), _CHUNK))
        self.count += len(data)
        lim = self._limits
        if self.count > lim.max_total_bytes:
            raise UnsafeArchiveError(f"archive expands beyond {lim.max_total_bytes} bytes")
        if self.count > lim.ratio_floor_bytes and self.count > lim.max_ratio * max(
            self._compressed.count, 1
        ):
            raise UnsafeArchiveError(
                f"archive expands more than {lim.max_ratio}:1 (a decompression bomb?)"
            )
        buffer[: len(data)] = data
        return len(data)


_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_ALLOWED_PAX = frozenset({"path", "size", "mtime", "uid", "gid", "uname", "gname"})


def _check_name(info: tarfile.TarInfo, limits: Limits) -> str:
    name = info.name
    if info.isdir():
        name = name.rstrip("/")
    encoded = name.encode("utf-8", errors="surrogateescape")
    if not name or len(encoded) > limits.max_name_bytes:
        raise UnsafeArchiveError(f"member name of {len(encoded)} bytes")
    if name.startswith("/") or _BAD_NAME_CHARS.search(name):
        raise UnsafeArchiveError(f"member {name!r}: absolute path or forbidden character")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise UnsafeArchiveError(f"member {name!r}: empty, '.' or '..' path component")
    try:
        encoded.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnsafeArchiveError(f"member {name!r}: name is not UTF-8") from e
    return name


def read_members(
    stream: BinaryIO,
    *,
    keep: Callable[[str], bool],
    max_kept_bytes: int = 64 << 20,
    limits: Limits | None = None,
) -> Iterator[ReadMember]:
    """Stream the members of a ``.tgz``, hashing each file; keep the bytes where ``keep(path)``.

    Raises:
        UnsafeArchiveError: not a gzip'd tar, a limit exceeded, a link, device, FIFO, sparse
            or unknown member, a bad or duplicate name, a global PAX header, trailing data,
            or a kept file larger than ``max_kept_bytes``.
    """
    lim = limits or Limits()
    tar = _open_stream(stream, lim)
    seen: set[str] = set()
    try:
        with tar:
            for count, info in enumerate(tar, start=1):
                if count > lim.max_members:
                    raise UnsafeArchiveError(f"more than {lim.max_members} members")
                yield _read_one(tar, info, seen, keep, max_kept_bytes, lim)
            if tar.pax_headers:
                raise UnsafeArchiveError("global PAX header (it would rename every member)")
            _check_trailer(tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UnsafeArchiveError(f"corrupt archive: {e}") from e


def _open_stream(stream: BinaryIO, lim: Limits) -> tarfile.TarFile:
    compressed = _Counting(stream)
    try:
        gz = gzip.GzipFile(fileobj=io.BufferedReader(compressed, _CHUNK), mode="rb")
        bounded = _Bounded(gz, compressed, lim)  # type: ignore[arg-type]
        reader = io.BufferedReader(bounded, _CHUNK)
        return tarfile.open(fileobj=reader, mode="r|", encoding="utf-8")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UnsafeArchiveError(f"not a gzip-compressed tar archive: {e}") from e


def _read_one(
    tar: tarfile.TarFile,
    info: tarfile.TarInfo,
    seen: set[str],
    keep: Callable[[str], bool],
    max_kept_bytes: int,
    lim: Limits,
) -> ReadMember:
    name = _check_name(info, lim)
    if name in seen:
        raise UnsafeArchiveError(f"member {name!r} appears twice")
    seen.add(name)
    unknown = sorted(set(info.pax_headers) - _ALLOWED_PAX)
    if unknown:
        raise UnsafeArchiveError(f"member {name!r}: unexpected PAX records {unknown}")
    if info.isdir():
        return ReadMember(path=name, is_dir=True, size=0, sha256="", data=None)
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or info.sparse is not None:
        raise UnsafeArchiveError(f"member {name!r}: not a regular file or directory")
    if info.size > lim.max_member_bytes:
        raise UnsafeArchiveError(f"member {name!r}: {info.size} bytes is over the limit")
    kept = keep(name)
    if kept and info.size > max_kept_bytes:
        raise UnsafeArchiveError(f"member {name!r}: {info.size} bytes is too large")
    fh = tar.extractfile(info)
    if fh is None:  # pragma: no cover - regular files always have a stream
        raise UnsafeArchiveError(f"member {name!r}: unreadable")
    digest = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if kept:
            parts.append(chunk)
    if size != info.size:
        raise UnsafeArchiveError(f"member {name!r}: truncated")
    return ReadMember(
        path=name,
        is_dir=False,
        size=size,
        sha256=digest.hexdigest(),
        data=b"".join(parts) if kept else None,
    )


def _check_trailer(tar: tarfile.TarFile) -> None:
    # After the end-of-archive marker only zero padding may follow; anything else is a hidden
    # member behind a corrupt header or an appended archive.
    stream = tar.fileobj
    if stream is None:  # pragma: no cover
        return
    while chunk := stream.read(_CHUNK):
        if chunk.strip(b"\0"):
            raise UnsafeArchiveError("data after the end of the archive")
