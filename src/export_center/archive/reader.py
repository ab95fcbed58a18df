"""The one safe archive reader: every bundle import and every ingestion goes through here.

This module is a security boundary (docs/bundle-format.md, "Reading archives safely").
Archives come from outside, so it streams member by member under explicit :class:`Limits` and
**refuses** (raises :class:`~export_center.errors.UnsafeArchiveError` naming the member and the
reason) instead of repairing. All guards live here, once, for every format:

- names: absolute paths, ``..``/``.``/empty components, backslashes, control characters and NUL,
  over-long names or components, too deep paths, duplicates (also names that would land on the
  same file on a case-insensitive or normalizing file system), a file used as a directory;
- entry types: only regular files and directories; symlinks, hard links, devices, FIFOs, GNU
  sparse/multi-volume/dump entries and unknown types are refused, as are setuid, setgid and
  sticky bits;
- tar structure: we parse ustar/PAX/GNU headers ourselves instead of using :mod:`tarfile`, which
  reads a whole PAX header or GNU long name into memory before looking at it, lets a global PAX
  header rename every later member, honours ``GNU.sparse.*`` keys, and silently stops at a bad
  checksum or at the first end-of-archive marker. Here: the size of a PAX header or long name is
  checked before it is read; global headers and ``GNU.*`` PAX keys are refused; a bad header
  checksum is refused; everything after the end-of-archive marker must be zero padding, so a
  second (concatenated) archive or trailing data is refused;
- bombs: declared sizes are checked before any data is read (per member, in total, zstd frame
  content sizes, zip entry sizes and ratios), and the decompressed stream is metered as it is
  read: past ``ratio_grace_bytes`` it may not expand more than ``max_compression_ratio`` times
  the compressed bytes consumed, nor past ``max_total_bytes`` in all. Nothing is allocated
  beyond a few chunks (decompression runs a few chunks ahead of the caller, in a thread of
  its own, so that it overlaps with what the caller does with the data);
- compression is detected by magic bytes, never by file name: zstd (read across frames; frame
  structure walked so a truncated frame or missing checksum is refused, which python-zstandard's
  reader does not do), gzip, xz and bzip2 (concatenated streams allowed, trailing zero padding
  allowed, anything else after the last stream refused);
- zip: central directory entries counted before :mod:`zipfile` loads them; encrypted entries,
  symlinks and other special types (Unix mode in ``external_attr``), unsupported methods,
  names with NUL (which :mod:`zipfile` would silently cut), overlapping entries and
  declared or actual sizes beyond the limits are refused.
- narrowing, for callers that know what they expect (a ``.tgz`` we wrote ourselves): only the
  given formats, only the given PAX keys, and a size cap on a member read into memory.

Corrupt data (bad checksums, truncated streams) is refused with the same error: at this
boundary a malformed archive cannot be told apart from a hostile one, and a parser that
guesses is what an attacker aims at.
"""

from __future__ import annotations

import bz2
import contextlib
import itertools
import logging
import lzma
import os
import queue
import shutil
import stat
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import BinaryIO, Literal, NoReturn, Protocol, cast, get_args

import zstandard

from export_center.archive._names import collision_key, name_problem, parents
from export_center.errors import BadInputError, UnsafeArchiveError

__all__ = ["ArchiveFormat", "Limits", "Member", "iter_members", "safe_extract"]

#: What :func:`iter_members` recognizes by magic bytes: a plain tar, a tar compressed with
#: gzip, zstd, xz or bzip2, or a zip.
ArchiveFormat = Literal["tar", "gzip", "zstd", "xz", "bzip2", "zip"]
_FORMAT_NAMES: dict[ArchiveFormat, str] = {
    "tar": "plain tar",
    "gzip": "gzip-compressed tar",
    "zstd": "zstd-compressed tar",
    "xz": "xz-compressed tar",
    "bzip2": "bzip2-compressed tar",
    "zip": "zip",
}

log = logging.getLogger(__name__)

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_CHUNK = 1 << 20  # data chunk handed to callers
_AHEAD_CHUNK = 4 << 20  # decompressed ahead of the caller at a time
_IN_CHUNK = 1 << 17  # compressed bytes read from the archive at a time
_XZ_MEMLIMIT = 1 << 28  # xz -9 needs ~65 MiB to decode; a header may ask for 1.5 GiB
_ZSTD_MAX_WINDOW = 1 << 27  # libzstd's default limit (128 MiB), explicit so it cannot drift

_MAGIC_ZSTD = b"\x28\xb5\x2f\xfd"
_MAGIC_GZIP = b"\x1f\x8b"
_MAGIC_XZ = b"\xfd7zXZ\x00"
_MAGIC_BZ2 = b"BZh"
_MAGIC_ZIP = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class Limits:
    """What an archive may contain before it is refused. Sizes are in bytes.

    ``max_total_bytes`` bounds both the sum of member sizes and the uncompressed archive
    stream (tar headers and padding included). ``max_compression_ratio`` applies once the
    uncompressed stream is past ``ratio_grace_bytes`` (small, highly compressible archives are
    normal; large ones that expand a thousandfold are bombs).
    """

    max_members: int = 100_000
    max_name_length: int = 1024
    max_path_depth: int = 32
    max_pax_header_bytes: int = 64 * 1024
    max_member_bytes: int = 4 << 30
    max_total_bytes: int = 16 << 30
    max_compression_ratio: float = 200.0
    ratio_grace_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise BadInputError(f"archive limit {f.name} must be positive, not {value!r}")


class Member:
    """One file or directory of an archive, as :func:`iter_members` yields it.

    ``name`` is normalized (relative, ``/``-separated, no trailing ``/``, a leading ``./``
    removed); ``mode`` holds only permission bits. The data can be read once, with
    :meth:`chunks` or :meth:`read`, and only until the iteration moves to the next member.
    """

    __slots__ = ("_open", "_read", "is_dir", "mode", "name", "size")

    def __init__(
        self,
        name: str,
        *,
        size: int,
        mode: int,
        is_dir: bool,
        open_data: Callable[[int], Iterator[bytes]],
    ) -> None:
        self.name = name
        self.size = size
        self.mode = mode
        self.is_dir = is_dir
        self._open = open_data
        self._read = False

    def __repr__(self) -> str:
        kind = "dir" if self.is_dir else "file"
        return f"Member({self.name!r}, {kind}, size={self.size}, mode={self.mode:#o})"

    def chunks(self, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        """The member's data in chunks of at most ``chunk_size`` bytes.

        Raises:
            BadInputError: the data was already read, or the iteration has moved on.
            UnsafeArchiveError: the archive turns out hostile or corrupt while reading.
        """
        if self._read:
            raise BadInputError(f"{self.name!r}: member data can be read only once")
        self._read = True
        return self._open(chunk_size)

    def read(self, max_bytes: int | None = None) -> bytes:
        """All of the member's data: at most ``Limits.max_member_bytes``, or ``max_bytes``
        when given (for data a caller holds in memory, e.g. a manifest it parses).

        ``max_bytes`` is checked against the member's declared size before anything is read;
        the reader guarantees the data is exactly that size.

        Raises:
            BadInputError: the data was already read, or the iteration has moved on.
            UnsafeArchiveError: the member is larger than ``max_bytes``, or the archive turns
                out hostile or corrupt while reading.
        """
        if max_bytes is not None and self.size > max_bytes:
            raise UnsafeArchiveError(
                f"member {self.name!r}: {self.size} bytes, more than the {max_bytes} accepted"
                " for a file read into memory"
            )
        return b"".join(self.chunks())


class _Problem(Exception):
    """Raised below the format parsers, which add the archive and member to the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# byte sources: archive file → (decompression) → metered stream


class _Raw:
    """The archive's bytes as read from the file (after the sniffed head), counted."""

    def __init__(self, f: BinaryIO, head: bytes) -> None:
        self._f = f
        self._head = head
        self.count = 0
        self.tap: Callable[[bytes], None] | None = None

    def read(self, n: int = _IN_CHUNK) -> bytes:
        if n < 0:
            n = _IN_CHUNK
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
        else:
            data = self._f.read(n)
        self.count += len(data)
        if self.tap is not None:
            self.tap(data)
        return data


class _Source(Protocol):
    def read(self, n: int, /) -> bytes: ...


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def wants_input(self) -> bool: ...

    def step(self, data: bytes, max_length: int) -> bytes: ...


class _ZlibStep:
    """One gzip member (header, deflate, CRC-32 and size checked by zlib)."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def wants_input(self) -> bool:
        return not self._d.unconsumed_tail

    def step(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail + data, max_length)


class _BufferedStep:
    """One xz or bzip2 stream; the decompressor buffers unconsumed input itself."""

    def __init__(self, d: lzma.LZMADecompressor | bz2.BZ2Decompressor) -> None:
        self._d = d

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def wants_input(self) -> bool:
        return self._d.needs_input

    def step(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(data, max_length)


class _Decompressing:
    """gzip, xz or bzip2 with bounded output per read. Concatenated streams are one stream (all
    three formats say so); zero padding after a stream is tolerated (tape-style padding, xz
    stream padding); anything else must be a valid next stream or it is refused."""

    def __init__(self, raw: _Raw, fmt: str) -> None:
        self._raw = raw
        self._fmt = fmt
        self._pending = b""
        self._d = self._new()

    def _new(self) -> _Decompressor:
        if self._fmt == "gzip":
            return _ZlibStep()
        if self._fmt == "xz":
            return _BufferedStep(lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT))
        return _BufferedStep(bz2.BZ2Decompressor())

    def read(self, n: int, /) -> bytes:
        try:
            return self._read(n)
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:
            raise _Problem(f"corrupt {self._fmt} data ({e})") from e

    def _read(self, n: int) -> bytes:
        while True:
            if self._d.eof:
                rest = (self._d.unused_data + self._pending).lstrip(b"\x00")
                while not rest:
                    chunk = self._raw.read(_IN_CHUNK)
                    if not chunk:
                        return b""
                    rest = chunk.lstrip(b"\x00")
                self._d = self._new()
                self._pending = rest
            if self._pending:
                data, self._pending = self._pending, b""
            elif self._d.wants_input():
                data = self._raw.read(_IN_CHUNK)
                if not data:
                    raise _Problem(f"{self._fmt} stream is truncated")
            else:
                data = b""
            out = self._d.step(data, n)
            if out:
                return out


class _ZstdFrames:
    """Walks the zstd frame structure of the compressed bytes as they are read.

    python-zstandard's ``stream_reader`` returns EOF without error when the input stops in the
    middle of a frame (even before its checksum), so we track frame boundaries ourselves: the
    stream must end exactly after a complete frame. The walk also sees each frame's declared
    content size before that frame is decompressed, so a frame announcing more than the
    limits allow is refused up front.
    """

    _FCS_BYTES = (0, 2, 4, 8)
    _DICT_BYTES = (0, 1, 2, 4)

    def __init__(self, max_total: int) -> None:
        self._max_total = max_total
        self._declared = 0
        self._state = "magic"
        self._need = 4
        self._buf = bytearray()
        self._skip = 0
        self._checksum = False
        self._fcs_len = 0
        self._last_block = False

    def feed(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            if self._skip:
                step = min(self._skip, len(data) - pos)
                pos += step
                self._skip -= step
                if not self._skip:
                    self._after_payload()
                continue
            take = min(self._need - len(self._buf), len(data) - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                field = bytes(self._buf)
                self._buf.clear()
                self._field(field)

    def finish(self) -> None:
        if self._state != "magic" or self._buf or self._skip:
            raise _Problem("zstd stream is truncated (incomplete frame)")

    def _expect(self, state: str, need: int) -> None:
        self._state, self._need = state, need
        if need == 0:
            self._field(b"")

    def _field(self, field: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(field, "little")
            if field == _MAGIC_ZSTD:
                self._expect("descriptor", 1)
            elif magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
                self._expect("skippable", 4)
            else:
                raise _Problem("data after the last zstd frame is not a zstd frame")
        elif self._state == "descriptor":
            fhd = field[0]
            if fhd & 0x08:
                raise _Problem("zstd frame header has its reserved bit set")
            single_segment = bool(fhd & 0x20)
            fcs_flag = fhd >> 6
            self._checksum = bool(fhd & 0x04)
            self._fcs_len = 1 if single_segment and fcs_flag == 0 else self._FCS_BYTES[fcs_flag]
            window = 0 if single_segment else 1
            self._expect("header", window + self._DICT_BYTES[fhd & 0x03] + self._fcs_len)
        elif self._state == "header":
            if self._fcs_len:
                size = int.from_bytes(field[-self._fcs_len :], "little")
                if self._fcs_len == 2:
                    size += 256
                self._declared += size
                if self._declared > self._max_total:
                    raise _Problem(
                        f"zstd frames declare {self._declared} bytes, over max_total_bytes"
                        f" ({self._max_total})"
                    )
            self._expect("block", 3)
        elif self._state == "block":
            header = int.from_bytes(field, "little")
            self._last_block = bool(header & 1)
            block_type = (header >> 1) & 3
            if block_type == 3:
                raise _Problem("zstd block of reserved type")
            self._payload(1 if block_type == 1 else header >> 3)
        elif self._state == "checksum":
            self._expect("magic", 4)
        elif self._state == "skippable":
            self._last_block = True
            self._checksum = False
            self._payload(int.from_bytes(field, "little"))

    def _payload(self, size: int) -> None:
        self._state = "payload"
        self._skip = size
        if not size:
            self._after_payload()

    def _after_payload(self) -> None:
        if not self._last_block:
            self._expect("block", 3)
        elif self._checksum:
            self._expect("checksum", 4)
        else:
            self._expect("magic", 4)


class _Zstd:
    def __init__(self, raw: _Raw, limits: Limits) -> None:
        self._frames = _ZstdFrames(limits.max_total_bytes)
        raw.tap = self._frames.feed
        dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        # read_across_frames: without it the reader stops after the first frame, and whatever
        # follows (a second archive) would never be looked at.
        self._reader = dctx.stream_reader(
            cast(BinaryIO, raw), read_size=_IN_CHUNK, read_across_frames=True, closefd=False
        )

    def read(self, n: int, /) -> bytes:
        try:
            out = self._reader.read(n)
        except zstandard.ZstdError as e:
            raise _Problem(f"corrupt zstd data ({e})") from e
        if not out:
            self._frames.finish()
        return out


class _ReadAhead:
    """Decompresses in a thread of its own, a few chunks ahead of the reader.

    The decompressors release the GIL, so decompression overlaps with whatever the caller does
    with the data (hashing it, writing it out). Errors raised while decompressing (a refusal,
    corrupt data, an unreadable file) reach the caller at the read where the data would have
    been, so nothing changes but the timing. At most ``depth`` chunks wait: memory is bounded,
    and the compressed byte count the ratio check uses runs at most that far ahead.
    """

    def __init__(self, source: _Source, *, chunk: int = _AHEAD_CHUNK, depth: int = 4) -> None:
        self._source = source
        self._chunk = chunk
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._buf = b""
        self._pos = 0
        self._error: BaseException | None = None
        self._eof = False
        self._thread = threading.Thread(target=self._run, name="stella-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                data = self._source.read(self._chunk)
                if not self._put(data) or not data:
                    return
        except BaseException as e:  # handed to the reader's thread
            self._put(e)

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(self, n: int, /) -> bytes:
        if self._pos >= len(self._buf):
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._error = item
                raise item
            if not item:
                self._eof = True
                return b""
            self._buf, self._pos = item, 0
        if self._pos == 0 and n >= len(self._buf):
            self._pos = len(self._buf)
            return self._buf
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def close(self) -> None:
        """Stop the thread (the caller stopped reading, or reached the end)."""
        self._closed.set()
        self._thread.join()


class _Metered:
    """The uncompressed archive stream, with its total size and expansion ratio watched."""

    def __init__(self, source: _Source, raw: _Raw, limits: Limits, *, compressed: bool) -> None:
        self._source = source
        self._raw = raw
        self._limits = limits
        self._compressed = compressed
        self.offset = 0

    def read(self, n: int) -> bytes:
        data = self._source.read(n)
        self.offset += len(data)
        lim = self._limits
        if self.offset > lim.max_total_bytes:
            raise _Problem(f"archive expands past max_total_bytes ({lim.max_total_bytes})")
        if (
            self._compressed
            and self.offset > lim.ratio_grace_bytes
            and self.offset > lim.max_compression_ratio * max(self._raw.count, 1)
        ):
            raise _Problem(
                f"{self.offset} bytes expanded from {self._raw.count} compressed bytes, over"
                f" the {lim.max_compression_ratio:g}x max_compression_ratio (compression bomb)"
            )
        return data

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes, or fewer only at the end of the stream."""
        parts: list[bytes] = []
        while n:
            data = self.read(n)
            if not data:
                break
            parts.append(data)
            n -= len(data)
        return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# names


def _normalize(raw: str, *, is_dir: bool) -> tuple[str | None, str | None]:
    """``(name, None)``, ``(None, None)`` for the archive root (``./``), or ``(None, reason)``."""
    name = raw
    if name.endswith("/"):
        if not is_dir:
            return None, "file name ends with '/'"
        name = name[:-1]
    while name.startswith("./"):
        name = name[2:]
    if name == "." and is_dir:
        return None, None
    problem = name_problem(name)
    return (None, problem) if problem else (name, None)


class _Names:
    """Member count, name limits, duplicates and file/directory clashes, for every format."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._count = 0
        self._total = 0
        self._seen: dict[str, str] = {}
        self._files: set[str] = set()
        self._dirs: set[str] = set()

    def count(self) -> str | None:
        self._count += 1
        if self._count > self._limits.max_members:
            return f"more than max_members ({self._limits.max_members}) members"
        return None

    def admit(self, raw: str, *, is_dir: bool, size: int) -> tuple[str | None, str | None]:
        """Check one member; ``(name, None)``, ``(None, None)`` to skip it, or a reason."""
        lim = self._limits
        if len(raw.encode("utf-8", "surrogatepass")) > lim.max_name_length:
            return None, f"name longer than max_name_length ({lim.max_name_length} bytes)"
        name, problem = _normalize(raw, is_dir=is_dir)
        if problem:
            return None, problem
        if name is None:
            return None, None if size == 0 else "archive root entry with data"
        if name.count("/") + 1 > lim.max_path_depth:
            return None, f"path deeper than max_path_depth ({lim.max_path_depth})"
        if size > lim.max_member_bytes:
            return None, f"size {size} exceeds max_member_bytes ({lim.max_member_bytes})"
        self._total += size
        if self._total > lim.max_total_bytes:
            return None, f"members add up to more than max_total_bytes ({lim.max_total_bytes})"
        key = collision_key(name)
        if key in self._seen:
            other = self._seen[key]
            if other == name:
                return None, "duplicate entry"
            return None, (
                f"collides with {other!r} (same file on case-insensitive or normalizing"
                " file systems)"
            )
        for parent in parents(name):
            if collision_key(parent) in self._files:
                return None, f"parent {parent!r} is a file"
        if not is_dir and key in self._dirs:
            return None, "a file where earlier members put a directory"
        self._seen[key] = name
        self._dirs.update(collision_key(p) for p in parents(name))
        (self._dirs if is_dir else self._files).add(key)
        return name, None


# ---------------------------------------------------------------------------------------------
# tar

_TAR_POSIX_MAGIC = b"ustar\x00"
_TAR_GNU_MAGIC = b"ustar  \x00"
_REGULAR_TYPES = (b"0", b"\x00", b"7")  # 7 = contiguous file, a regular file everywhere
_REFUSED_TYPES = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"6": "FIFO",
    b"S": "GNU sparse file",
    b"D": "GNU dump directory",
    b"M": "GNU multi-volume continuation",
    b"V": "volume label",
    b"N": "GNU old-style long name",
    b"X": "Solaris extended header",
    b"K": "GNU long link name (links are not allowed)",
    b"g": "global PAX header (it would apply to every later member)",
}
_UTF8_HDRCHARSET = b"ISO-IR 10646 2000 UTF-8"
# The PAX keys this reader acts on; always accepted, whatever ``pax_keys`` says.
_INTERPRETED_PAX_KEYS = frozenset({"path", "size"})


@dataclass(frozen=True)
class _Header:
    typeflag: bytes
    name: bytes
    mode: int
    size: int


def _field_str(field: bytes) -> bytes:
    """A NUL-terminated string field; bytes after the terminator must be NUL too."""
    head, _, tail = field.partition(b"\x00")
    if tail.strip(b"\x00"):
        raise _Problem("data hidden after the NUL that ends a name field")
    return head


def _field_int(field: bytes, what: str) -> int:
    if field[:1] == b"\xff":
        raise _Problem(f"negative {what}")
    if field[:1] == b"\x80":  # GNU base-256, used for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    digits = field.strip(b" \x00")
    if not digits or any(c not in b"01234567" for c in digits):
        raise _Problem(f"malformed {what} field {field!r}")
    return int(digits, 8)


def _parse_header(block: bytes) -> _Header:
    magic = block[257:263]
    gnu = block[257:265] == _TAR_GNU_MAGIC
    if magic != _TAR_POSIX_MAGIC and not gnu:
        raise _Problem("not a ustar, PAX or GNU tar header")
    stored = _field_int(block[148:156], "checksum")
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if stored != unsigned:
        signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
        if stored != signed:
            raise _Problem("bad header checksum (corrupt or forged header)")
    name = _field_str(block[0:100])
    if not gnu:
        prefix = _field_str(block[345:500])
        if prefix:
            name = prefix + b"/" + name
    return _Header(
        typeflag=block[156:157],
        name=name,
        mode=_field_int(block[100:108], "mode"),
        size=_field_int(block[124:136], "size"),
    )


def _parse_pax(data: bytes) -> dict[str, bytes]:
    """POSIX pax records ``"<len> <key>=<value>\\n"``, strictly: no gaps, no repeats."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise _Problem("malformed PAX record length")
        end = pos + int(digits)
        if end > len(data) or end <= space + 1 or data[end - 1 : end] != b"\n":
            raise _Problem("malformed PAX record")
        key_bytes, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key_bytes:
            raise _Problem("malformed PAX record (no key)")
        try:
            key = key_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _Problem("PAX key is not UTF-8") from e
        if key in records:
            raise _Problem(f"PAX key {key!r} repeated")
        records[key] = value
        pos = end
    return records


def _decode_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Problem(f"name {raw!r} is not valid UTF-8") from e


class _TarReader:
    def __init__(
        self, stream: _Metered, limits: Limits, label: str, pax_keys: frozenset[str] | None
    ) -> None:
        self._stream = stream
        self._limits = limits
        self._label = label
        self._pax_keys = pax_keys
        self._names = _Names(limits)
        self._where = "the first header"
        self._current: object | None = None
        self._remaining = 0
        self._last_name = ""

    def _refuse(self, reason: str, where: str | None = None) -> NoReturn:
        raise UnsafeArchiveError(
            f"{self._label}: {where or self._where}: {reason}",
            hint="the archive was refused as a whole; nothing was extracted from it",
        )

    def _read_exact(self, n: int) -> bytes:
        try:
            data = self._stream.read_exact(n)
        except _Problem as e:
            self._refuse(e.reason)
        if len(data) < n:
            self._refuse("archive is truncated")
        return data

    def members(self) -> Iterator[Member]:
        pax: dict[str, bytes] | None = None
        long_name: bytes | None = None
        previous: str | None = None
        while True:
            offset = self._stream.offset
            self._where = (
                "the first header" if previous is None else f"the header after {previous!r}"
            )
            try:
                block = self._stream.read_exact(_BLOCK)
            except _Problem as e:
                self._refuse(e.reason)
            if len(block) < _BLOCK:
                self._refuse("archive ends without an end-of-archive marker (truncated)")
            if block == _ZERO_BLOCK:
                if pax is not None or long_name is not None:
                    self._refuse("extended header not followed by a member")
                self._check_end()
                return
            try:
                header = _parse_header(block)
            except _Problem as e:
                shown = block[:100].split(b"\x00", 1)[0].decode("utf-8", "replace")
                self._refuse(e.reason, f"header of {shown!r} at offset {offset}")
            shown = header.name.decode("utf-8", "replace")
            if header.typeflag in (b"g", b"K"):
                self._refuse(
                    _REFUSED_TYPES[header.typeflag], f"header {shown!r} at offset {offset}"
                )
            if header.typeflag in (b"x", b"L"):
                self._where = f"extended header {shown!r} at offset {offset}"
                if pax is not None or long_name is not None:
                    self._refuse("two extended headers in a row")
                if header.typeflag == b"x":
                    pax = self._read_pax(header.size)
                else:
                    long_name = self._read_long_name(header.size)
                continue
            yield from self._member(header, pax, long_name)
            previous = self._last_name
            pax = long_name = None

    def _read_pax(self, size: int) -> dict[str, bytes]:
        limit = self._limits.max_pax_header_bytes
        if size > limit:  # checked before a single byte of it is read
            self._refuse(f"PAX header of {size} bytes exceeds max_pax_header_bytes ({limit})")
        data = self._read_exact(size + (-size % _BLOCK))[:size]
        try:
            return _parse_pax(data)
        except _Problem as e:
            self._refuse(e.reason)

    def _read_long_name(self, size: int) -> bytes:
        limit = self._limits.max_name_length
        if size > limit + 1:
            self._refuse(f"GNU long name of {size} bytes exceeds max_name_length ({limit})")
        data = self._read_exact(size + (-size % _BLOCK))[:size]
        name = data.rstrip(b"\x00")
        if b"\x00" in name:
            self._refuse("NUL inside a GNU long name")
        return name

    def _member(
        self, header: _Header, pax: dict[str, bytes] | None, long_name: bytes | None
    ) -> Iterator[Member]:
        raw_name = header.name
        size = header.size
        pax = pax or {}
        if "path" in pax:
            raw_name = pax["path"]
        elif long_name is not None:
            raw_name = long_name
        try:
            name = _decode_name(raw_name)
        except _Problem as e:
            self._refuse(e.reason, f"member {raw_name!r}")
        self._last_name = name
        where = f"member {name!r}"
        for key, value in pax.items():
            if key.startswith("GNU."):
                kind = "GNU sparse file" if key.startswith("GNU.sparse.") else "GNU extension"
                self._refuse(f"{kind} (PAX key {key!r})", where)
            if key == "linkpath":
                self._refuse("PAX linkpath (links are not allowed)", where)
            if key == "hdrcharset" and value != _UTF8_HDRCHARSET:
                self._refuse(f"PAX hdrcharset {value!r}: names must be UTF-8", where)
            if key == "size":
                if not value.isdigit():
                    self._refuse(f"malformed PAX size {value!r}", where)
                size = int(value)
        if self._pax_keys is not None:
            unexpected = sorted(set(pax) - self._pax_keys - _INTERPRETED_PAX_KEYS)
            if unexpected:
                self._refuse(f"unexpected PAX records {unexpected}", where)
        typeflag = header.typeflag
        if typeflag in _REFUSED_TYPES:
            self._refuse(_REFUSED_TYPES[typeflag], where)
        if typeflag != b"5" and typeflag not in _REGULAR_TYPES:
            self._refuse(f"unsupported entry type {typeflag!r}", where)
        is_dir = typeflag == b"5"
        if header.mode & 0o7000:
            self._refuse(f"setuid, setgid or sticky bit in mode {header.mode & 0o7777:#o}", where)
        if is_dir and size:
            self._refuse(f"directory with {size} bytes of data", where)
        problem = self._names.count()
        if problem:
            self._refuse(problem, where)
        normalized, problem = self._names.admit(name, is_dir=is_dir, size=size)
        if problem:
            self._refuse(problem, where)
        self._where = where
        self._remaining = size
        padding = -size % _BLOCK
        if normalized is not None:
            token = object()
            self._current = token
            yield Member(
                normalized,
                size=size,
                mode=header.mode & 0o777,
                is_dir=is_dir,
                open_data=partial(self._data, token, normalized),
            )
            self._current = None
        self._skip(self._remaining + padding)
        self._remaining = 0

    def _data(self, token: object, name: str, chunk_size: int) -> Iterator[bytes]:
        while True:
            if token is not self._current:
                raise BadInputError(
                    f"{name!r}: member data can only be read while iterating over that member"
                )
            if not self._remaining:
                return
            try:
                data = self._stream.read(min(chunk_size, self._remaining))
            except _Problem as e:
                self._refuse(e.reason, f"member {name!r}")
            if not data:
                self._refuse("archive is truncated inside the member's data", f"member {name!r}")
            self._remaining -= len(data)
            yield data

    def _skip(self, n: int) -> None:
        while n:
            try:
                data = self._stream.read(min(n, _CHUNK))
            except _Problem as e:
                self._refuse(e.reason)
            if not data:
                self._refuse("archive is truncated")
            n -= len(data)

    def _check_end(self) -> None:
        self._where = "the end-of-archive marker"
        while True:
            try:
                data = self._stream.read(_CHUNK)
            except _Problem as e:
                self._refuse(e.reason)
            if not data:
                return
            if data.strip(b"\x00"):
                self._refuse(
                    "data after the end-of-archive marker (a concatenated archive or trailing"
                    " garbage)"
                )


# ---------------------------------------------------------------------------------------------
# zip


def _zip_cd_entries(f: BinaryIO, size: int, stop_after: int) -> int | None:
    """Entries in the central directory, counted without loading it (stops past
    ``stop_after``); ``None`` when the directory cannot be found (zipfile will say why)."""
    tail_len = min(size, 22 + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    eocd = tail.rfind(b"PK\x05\x06")
    if eocd < 0 or len(tail) - eocd < 22:
        return None
    cd_size, cd_offset = struct.unpack("<II", tail[eocd + 12 : eocd + 20])
    if cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        locator = tail[eocd - 20 : eocd] if eocd >= 20 else b""
        if locator[:4] != b"PK\x06\x07":
            return None
        (z64_offset,) = struct.unpack("<Q", locator[8:16])
        f.seek(z64_offset)
        record = f.read(56)
        if record[:4] != b"PK\x06\x06" or len(record) < 56:
            return None
        cd_size, cd_offset = struct.unpack("<QQ", record[40:56])
    if cd_offset + cd_size > size:
        return None
    f.seek(cd_offset)
    count = 0
    remaining = cd_size
    while remaining >= 46 and count <= stop_after:
        fixed = f.read(46)
        if len(fixed) < 46 or fixed[:4] != b"PK\x01\x02":
            return count
        name_len, extra_len, comment_len = struct.unpack("<HHH", fixed[28:34])
        skip = name_len + extra_len + comment_len
        f.seek(skip, os.SEEK_CUR)
        remaining -= 46 + skip
        count += 1
    return count


_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_ZIP_LOCAL_HEADER = 30


def _zip_type_problem(unix_mode: int, is_dir: bool) -> str | None:
    kind = stat.S_IFMT(unix_mode)
    if kind == 0 or (kind == stat.S_IFREG and not is_dir) or (kind == stat.S_IFDIR and is_dir):
        return None
    names = {
        stat.S_IFLNK: "symbolic link",
        stat.S_IFCHR: "character device",
        stat.S_IFBLK: "block device",
        stat.S_IFIFO: "FIFO",
        stat.S_IFSOCK: "socket",
        stat.S_IFDIR: "directory mode on a file entry",
        stat.S_IFREG: "file mode on a directory entry",
    }
    return names.get(kind, f"unknown file type {kind:#o}")


def _zip_members(f: BinaryIO, limits: Limits, label: str) -> Iterator[Member]:
    def refuse(reason: str, name: str | None = None) -> NoReturn:
        where = f"member {name!r}" if name is not None else "central directory"
        raise UnsafeArchiveError(
            f"{label}: {where}: {reason}",
            hint="the archive was refused as a whole; nothing was extracted from it",
        )

    archive_size = f.seek(0, os.SEEK_END)
    declared = _zip_cd_entries(f, archive_size, limits.max_members)
    if declared is not None and declared > limits.max_members:
        refuse(f"more than max_members ({limits.max_members}) entries")
    f.seek(0)
    try:
        zf = zipfile.ZipFile(f)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        ValueError,
        EOFError,
        struct.error,
    ) as e:
        refuse(f"not a valid zip archive ({e})")
    with zf:
        infos = zf.infolist()
        names = _Names(limits)
        accepted: list[tuple[zipfile.ZipInfo, str, int, bool]] = []
        expand_total = 0
        for info in infos:
            raw = info.orig_filename
            if "\x00" in raw:
                refuse("NUL in name (zipfile would cut the name there)", raw)
            problem = names.count()
            if problem:
                refuse(problem, raw)
            if info.flag_bits & 0x1:
                refuse("encrypted entry", raw)
            if info.compress_type not in _ZIP_METHODS:
                refuse(f"unsupported compression method {info.compress_type}", raw)
            is_dir = raw.endswith("/")
            unix_mode = info.external_attr >> 16
            problem = _zip_type_problem(unix_mode, is_dir)
            if problem:
                refuse(problem, raw)
            if unix_mode & 0o7000:
                refuse(f"setuid, setgid or sticky bit in mode {unix_mode & 0o7777:#o}", raw)
            if is_dir and info.file_size:
                refuse(f"directory with {info.file_size} bytes of data", raw)
            if (
                info.file_size > limits.ratio_grace_bytes
                and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1)
            ):
                refuse(
                    f"declares {info.file_size} bytes from {info.compress_size} compressed, over"
                    f" the {limits.max_compression_ratio:g}x max_compression_ratio"
                    " (compression bomb)",
                    raw,
                )
            expand_total += info.file_size
            name, problem = names.admit(raw, is_dir=is_dir, size=info.file_size)
            if problem:
                refuse(problem, raw)
            if name is None:
                continue
            default = 0o755 if is_dir else 0o644
            accepted.append((info, name, (unix_mode & 0o777) or default, is_dir))
        if (
            expand_total > limits.ratio_grace_bytes
            and expand_total > limits.max_compression_ratio * max(archive_size, 1)
        ):
            refuse(
                f"entries declare {expand_total} bytes from a {archive_size}-byte archive, over"
                f" the {limits.max_compression_ratio:g}x max_compression_ratio (compression bomb)"
            )
        # Overlapping entries (several entries sharing one compressed blob) are the classic
        # non-recursive zip bomb; no legitimate writer produces them.
        by_offset = sorted(infos, key=lambda i: i.header_offset)
        for a, b in itertools.pairwise(by_offset):
            if a.header_offset + _ZIP_LOCAL_HEADER + a.compress_size > b.header_offset:
                refuse(f"overlaps entry {b.orig_filename!r}", a.orig_filename)
        if by_offset:
            last = by_offset[-1]
            if last.header_offset + _ZIP_LOCAL_HEADER + last.compress_size > archive_size:
                refuse("extends past the end of the archive", last.orig_filename)

        current: list[object | None] = [None]

        def data(token: object, info: zipfile.ZipInfo, name: str, n: int) -> Iterator[bytes]:
            read = 0
            try:
                with zf.open(info) as stream:
                    while True:
                        if token is not current[0]:
                            raise BadInputError(
                                f"{name!r}: member data can only be read while iterating over"
                                " that member"
                            )
                        chunk = stream.read(n)
                        if not chunk:
                            break
                        read += len(chunk)
                        if read > info.file_size:
                            refuse(f"holds more than its declared {info.file_size} bytes", name)
                        yield chunk
            except (
                zipfile.BadZipFile,
                NotImplementedError,
                RuntimeError,
                zlib.error,
                lzma.LZMAError,
                EOFError,
                OSError,
            ) as e:
                refuse(f"corrupt entry ({e})", name)
            if read != info.file_size:
                refuse(f"holds {read} bytes, not the {info.file_size} declared", name)

        for info, name, mode, is_dir in accepted:
            token = object()
            current[0] = token
            yield Member(
                name,
                size=info.file_size,
                mode=mode,
                is_dir=is_dir,
                open_data=partial(data, token, info, name),
            )
            current[0] = None


# ---------------------------------------------------------------------------------------------
# entry points


def _sniff(head: bytes) -> ArchiveFormat | None:
    if head.startswith(_MAGIC_ZSTD):
        return "zstd"
    if head.startswith(_MAGIC_GZIP):
        return "gzip"
    if head.startswith(_MAGIC_XZ):
        return "xz"
    if head.startswith(_MAGIC_BZ2) and len(head) > 3 and head[3] in b"123456789":
        return "bzip2"
    if head.startswith(_MAGIC_ZIP):
        return "zip"
    if len(head) >= _BLOCK and (head[257:262] == b"ustar" or head[:_BLOCK] == _ZERO_BLOCK):
        return "tar"
    return None


def iter_members(
    archive: str | os.PathLike[str] | BinaryIO,
    limits: Limits | None = None,
    *,
    formats: Collection[ArchiveFormat] | None = None,
    pax_keys: Collection[str] | None = None,
) -> Iterator[Member]:
    """Stream the members of a tar (plain, gzip, zstd, xz, bzip2) or zip archive, safely.

    The format is found from magic bytes, not the file name. Members come in archive order;
    each one's data is readable only until the next one is requested. The last checks (the
    end of a tar, zstd frame integrity) run when the iteration reaches the end: a caller that
    stops early has not verified the whole archive. Zip needs a seekable file.

    A caller that knows what it expects can narrow what is accepted: ``formats`` lists the
    only formats accepted (e.g. ``{"gzip"}`` for a ``.tgz``); ``pax_keys`` lists the only PAX
    record keys accepted besides ``path`` and ``size`` (which the reader interprets). Keys the
    reader does not interpret are otherwise ignored, which is safe here but not for the next
    tool that extracts the same archive (``mtime``, ownership, ``SCHILY.xattr.*`` ...).

    Raises:
        UnsafeArchiveError: the archive is hostile, corrupt, over a limit, not an archive or
            not of an accepted format; the message names the member (or header) and the reason.
        BadInputError: bad limits or formats, or member data read out of turn.
        OSError: the archive file cannot be read.
    """
    lim = limits or Limits()
    accepted = None if formats is None else frozenset(formats)
    if accepted is not None and (not accepted or not accepted <= set(get_args(ArchiveFormat))):
        raise BadInputError(f"formats {sorted(accepted)!r}: choose from {get_args(ArchiveFormat)}")
    keys = None if pax_keys is None else frozenset(pax_keys)
    if isinstance(archive, str | os.PathLike):
        label = os.fspath(archive)
        with Path(archive).open("rb") as f:
            yield from _iter_file(f, lim, label, accepted, keys)
    else:
        yield from _iter_file(archive, lim, getattr(archive, "name", "<stream>"), accepted, keys)


def _iter_file(
    f: BinaryIO,
    limits: Limits,
    label: str,
    formats: frozenset[ArchiveFormat] | None,
    pax_keys: frozenset[str] | None,
) -> Iterator[Member]:
    label = str(label)
    head = f.read(_BLOCK)
    fmt = _sniff(head)
    if formats is not None and fmt not in formats:
        wanted = " or ".join(_FORMAT_NAMES[name] for name in sorted(formats))
        found = "unrecognized data" if fmt is None else f"a {_FORMAT_NAMES[fmt]}"
        raise UnsafeArchiveError(f"{label}: not a {wanted} archive (found {found})")
    if fmt is None:
        raise UnsafeArchiveError(
            f"{label}: not a tar (plain, gzip, zstd, xz or bzip2) or zip archive"
        )
    if fmt == "zip":
        if not f.seekable():
            raise BadInputError(f"{label}: a zip archive must be read from a seekable file")
        f.seek(-len(head), os.SEEK_CUR)
        yield from _zip_members(f, limits, label)
        return
    raw = _Raw(f, head)
    if fmt == "tar":
        stream = _Metered(raw, raw, limits, compressed=False)
        yield from _TarReader(stream, limits, label, pax_keys).members()
        return
    ahead = _ReadAhead(_Zstd(raw, limits) if fmt == "zstd" else _Decompressing(raw, fmt))
    try:
        stream = _Metered(ahead, raw, limits, compressed=True)
        yield from _TarReader(stream, limits, label, pax_keys).members()
    finally:
        ahead.close()


def safe_extract(
    archive: str | os.PathLike[str] | BinaryIO,
    dest_dir: str | os.PathLike[str],
    limits: Limits | None = None,
    allowed: Collection[str] | None = None,
) -> list[str]:
    """Extract ``archive`` into ``dest_dir``, all or nothing; return the files written.

    ``dest_dir`` must not exist (or be an empty directory). Members are written into a fresh
    private directory next to it, with every path resolved relative to directory file
    descriptors opened ``O_NOFOLLOW`` and files created ``O_EXCL``, so nothing can be steered
    outside, even by a symlink planted meanwhile. Only when the whole archive has passed is
    that directory renamed to ``dest_dir``; a refused archive leaves nothing behind. Files get
    mode 0644 (0755 when the archive marks them executable), directories 0755.

    ``allowed``, when given, lists the only file paths accepted (e.g. those a signed manifest
    names); directories are accepted when they lead to an allowed path. Allowed paths missing
    from the archive are not an error here: compare the returned list.

    Raises:
        UnsafeArchiveError: see :func:`iter_members`; also a path not in ``allowed``.
        BadInputError: ``dest_dir`` exists and is not an empty directory, or a bad ``allowed``.
        OSError: the file system refused a write.
    """
    dest = Path(dest_dir).absolute()
    allowed_files, allowed_dirs = _allowed_sets(allowed)
    try:
        st = dest.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISDIR(st.st_mode) or any(dest.iterdir()):
            raise BadInputError(f"{dest}: destination exists and is not an empty directory")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    written: list[str] = []
    try:
        root = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            label = os.fspath(archive) if isinstance(archive, str | os.PathLike) else "archive"
            for member in iter_members(archive, limits):
                if allowed_files is not None:
                    ok = (
                        member.name in allowed_dirs
                        if member.is_dir
                        else (member.name in allowed_files)
                    )
                    if not ok:
                        raise UnsafeArchiveError(
                            f"{label}: member {member.name!r}: not a path the manifest lists",
                            hint="only the files a signed manifest names are extracted",
                        )
                _extract_member(root, member)
                if not member.is_dir:
                    written.append(member.name)
            os.fchmod(root, 0o755)
        finally:
            os.close(root)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if staging.exists():
            log.warning("could not remove the partial extraction %s", staging)
        raise
    return written


def _allowed_sets(allowed: Collection[str] | None) -> tuple[set[str] | None, set[str]]:
    if allowed is None:
        return None, set()
    files: set[str] = set()
    dirs: set[str] = set()
    for path in allowed:
        problem = name_problem(path)
        if problem:
            raise BadInputError(f"allowed path {path!r}: {problem}")
        files.add(path)
        dirs.update(parents(path))
    return files, dirs


def _open_dir(parent_fd: int, name: str, *, create: bool) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent_fd)
    fd = os.open(
        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
    )
    os.fchmod(fd, 0o755)
    return fd


def _extract_member(root: int, member: Member) -> None:
    parts = member.name.split("/")
    dirs = parts if member.is_dir else parts[:-1]
    fd = os.dup(root)
    try:
        for part in dirs:
            child = _open_dir(fd, part, create=True)
            os.close(fd)
            fd = child
        if member.is_dir:
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(parts[-1], flags, 0o600, dir_fd=fd)
        with os.fdopen(out, "wb") as f:
            for chunk in member.chunks():
                f.write(chunk)
            os.fchmod(f.fileno(), 0o755 if member.mode & 0o100 else 0o644)
    finally:
        os.close(fd)
