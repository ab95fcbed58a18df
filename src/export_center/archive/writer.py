"""The one deterministic archive writer: PAX tar, optionally gzip- or zstd-compressed, streamed.

Same entries in, same bytes out, on any host (docs/bundle-format.md, "Reproducible by design"). To
get there we encode the tar headers ourselves instead of going through :mod:`tarfile`: its output
has changed between Python patch releases (3.11.x stopped writing ``devmajor``/``devminor`` digits
for regular files), it fills ``uname``/``gname``/ids from the host when asked for ``gettarinfo``,
turns float mtimes into PAX ``mtime`` records and re-encodes names with the locale's file system
encoding. Here every header field is a constant except the name, size and mode:

- ustar header with POSIX magic, mode 0644 or 0755 (0755 for directories), uid/gid 0, empty
  uname/gname, empty device fields, mtime fixed (``SOURCE_DATE_EPOCH``, default 2025-01-01);
- a PAX ``x`` header only when needed, carrying ``path`` (name longer than 100 bytes or not
  ASCII) and/or ``size`` (≥ 8 GiB) and nothing else: no ``atime``/``ctime``/``mtime`` records,
  no ``hdrcharset``; its own header is named ``././@PaxHeader`` (no PID, unlike GNU tar's
  ``%d/PaxHeaders.%p``);
- entries in bytewise order of their archive names (a directory's name ends with ``/``, so it
  sorts right before its children and ``tar -t | LC_ALL=C sort -c`` holds), every parent
  directory present as its own entry; two zero blocks, then zero padding to a 10240-byte
  record like GNU tar and :mod:`tarfile`.

Compression:

- gzip: header written by hand (mtime 0, no name, OS byte 255 "unknown", XFL from the level),
  raw deflate from :mod:`zlib`, CRC-32 and size trailer.
- zstd: python-zstandard, always the multi-threaded mode, every frame with its content size
  and a checksum. Multi-threaded output is identical for any worker count ≥ 1 and for any way
  the input is cut into writes, but differs from the single-threaded mode (``threads=0``),
  which is refused. The archive is a sequence of frames (RFC 8878 §3.1: a decoder joins them;
  ``zstd -d``, ``tar --zstd`` and python-zstandard with ``read_across_frames`` all do):

  - the data of every regular file of at least :data:`FRAME_THRESHOLD` bytes is a frame of
    its own, exactly the file's bytes (its tar header and padding are not in it). It is
    compressed as a stream whose size is not known in advance, and its content size is then
    written into the frame header (:class:`ZstdFrameWriter`). That is what lets the bundle
    writer compress a data file *while* it is produced, before its size (which its tar header
    and every byte after it depend on) is known. libzstd writes the same blocks whether or
    not a size was pledged, so for files larger than the zstd window this frame is
    byte-identical to one compressed with the size pledged up front;
  - everything else (tar headers, directories, smaller files, padding, the end-of-archive
    blocks) between two such frames is one frame compressed with its size pledged. An
    archive without large files is therefore one frame, as before this rule existed.

  Where a frame starts depends only on the tar stream, so the same entries give the same
  bytes, whichever route the data took (bytes, a file, or a frame compressed while the data
  was produced). The bytes depend on the zstandard release (it bundles libzstd), as gzip's
  depend on the system zlib: pin them where byte-identity across machines matters.

The output goes through a SHA-256 hashing wrapper, so the caller gets the archive digest
without reading the archive again.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, TypeVar, cast

import zstandard

from export_center.archive._names import collision_key, name_problem, parents
from export_center.errors import BadInputError

__all__ = [
    "DEFAULT_GZIP_LEVEL",
    "DEFAULT_MTIME",
    "DEFAULT_ZSTD_LEVEL",
    "FRAME_THRESHOLD",
    "Compression",
    "DeterministicTarWriter",
    "FileSource",
    "SourceChangedError",
    "TreeEntry",
    "WriteResult",
    "ZstdFrame",
    "ZstdFrameWriter",
    "source_date_epoch",
    "write_tree",
]

#: 2025-01-01T00:00:00Z, the mtime of every entry unless ``SOURCE_DATE_EPOCH`` says otherwise.
DEFAULT_MTIME = 1735689600
DEFAULT_ZSTD_LEVEL = 10
DEFAULT_GZIP_LEVEL = 6

Compression = Literal["zstd", "gzip", "none"]

FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755

BLOCK = 512
RECORD = 20 * BLOCK
_CHUNK = 1 << 20
#: In a zstd archive, the data of a regular file of at least this size is a frame of its own.
FRAME_THRESHOLD = 1 << 20
_GLUE_IN_MEMORY = 8 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Frame header descriptor of a stream of unknown size: checksum flag only (RFC 8878 3.1.1.1.1).
_FHD_UNKNOWN_SIZE = 0x04
_USTAR_MAGIC = b"ustar\x0000"  # magic "ustar\0" + version "00": POSIX, not GNU's "ustar  \0"
_PAX_HEADER_NAME = b"././@PaxHeader"
_MAX_OCTAL_11 = 8**11 - 1  # largest value of a 12-byte numeric field (11 digits + NUL)
_DIGITS = re.compile(r"[0-9]+")
_T = TypeVar("_T")


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int:
    """The entry mtime: ``SOURCE_DATE_EPOCH`` when set (reproducible-builds.org), else
    :data:`DEFAULT_MTIME`.

    Raises:
        BadInputError: the variable is set but is not a whole number of seconds in range.
    """
    env = os.environ if environ is None else environ
    raw = env.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return DEFAULT_MTIME
    if not _DIGITS.fullmatch(raw) or int(raw) > _MAX_OCTAL_11:
        raise BadInputError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds since 1970",
            hint="unset it, or set it to e.g. 1735689600",
        )
    return int(raw)


class SourceChangedError(BadInputError):
    """A file's bytes differ from the size or SHA-256 declared for it: it changed after it was
    listed (and hashed for a manifest), so the archive would not match what it claims."""


@dataclass(frozen=True)
class WriteResult:
    """What :meth:`DeterministicTarWriter.close` reports about the archive it wrote."""

    sha256: str  # lowercase hex of the bytes written to ``out``
    size: int  # bytes written to ``out``
    tar_size: int  # bytes of the uncompressed tar stream

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"


# ---------------------------------------------------------------------------------------------
# tar header encoding


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode("ascii") + b"\x00"


def _ustar_block(name: bytes, *, mode: int, size: int, mtime: int, typeflag: bytes) -> bytes:
    block = b"".join(
        (
            name.ljust(100, b"\x00"),
            _octal(mode, 8),
            _octal(0, 8),  # uid
            _octal(0, 8),  # gid
            _octal(size, 12),
            _octal(mtime, 12),
            b" " * 8,  # checksum, counted as spaces
            typeflag,
            bytes(100),  # linkname
            _USTAR_MAGIC,
            bytes(32),  # uname: empty, numeric ids only
            bytes(32),  # gname
            bytes(8),  # devmajor: only meaningful for devices
            bytes(8),  # devminor
            bytes(155),  # prefix: unused, long names go in a PAX record
        )
    ).ljust(BLOCK, b"\x00")
    checksum = sum(block)
    return block[:148] + f"{checksum:06o}".encode("ascii") + b"\x00 " + block[156:]


def _pax_record(key: bytes, value: bytes) -> bytes:
    # "%d %s=%s\n" where the decimal length counts itself (POSIX pax, "pax Extended Header").
    rest = len(key) + len(value) + 3
    length = rest
    while rest + len(str(length)) != length:
        length = rest + len(str(length))
    return b"%d %s=%s\n" % (length, key, value)


def _padding(size: int) -> int:
    return -size % BLOCK


def _entry_header(arcname: bytes, *, is_dir: bool, size: int, mode: int, mtime: int) -> bytes:
    pax: list[bytes] = []
    name_field = arcname
    if len(arcname) > 100 or not arcname.isascii():
        pax.append(_pax_record(b"path", arcname))
        # The ustar name is ignored by PAX readers; keep an ASCII stand-in for old ones.
        name_field = bytes(b if b < 0x80 else 0x3F for b in arcname)[:100]
    size_field = size
    if size > _MAX_OCTAL_11:
        pax.append(_pax_record(b"size", b"%d" % size))
        size_field = 0
    header = _ustar_block(
        name_field, mode=mode, size=size_field, mtime=mtime, typeflag=b"5" if is_dir else b"0"
    )
    if not pax:
        return header
    records = b"".join(pax)
    pax_header = _ustar_block(
        _PAX_HEADER_NAME, mode=FILE_MODE, size=len(records), mtime=mtime, typeflag=b"x"
    )
    return pax_header + records + bytes(_padding(len(records))) + header


def _entry_length(arcname: bytes, *, is_dir: bool, size: int) -> int:
    header = _entry_header(arcname, is_dir=is_dir, size=size, mode=FILE_MODE, mtime=0)
    return len(header) + size + _padding(size)


def _archive_length(body: int) -> int:
    total = body + 2 * BLOCK
    return total + (-total % RECORD)


# ---------------------------------------------------------------------------------------------
# output stages: tar bytes → [compression] → hashing → out


class _Stage(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def finish(self) -> None: ...


class _Hasher:
    """Writes everything to ``out`` while hashing it: the archive digest without a re-read."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self.size += len(view)
        while view:
            written = self._out.write(view)
            if not written:
                raise BadInputError("the archive output accepted no bytes (non-blocking stream?)")
            view = view[written:]
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        self._out.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _GzipStage:
    """RFC 1952 by hand: header fields constant (mtime 0, no name, OS 255), raw deflate."""

    def __init__(self, sink: _Hasher, level: int) -> None:
        self._sink = sink
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL)
        self._crc = 0
        self._size = 0
        xfl = 2 if level == 9 else 4 if level == 1 else 0  # RFC 1952: slowest / fastest
        sink.write(b"\x1f\x8b\x08\x00" + bytes(4) + bytes((xfl, 255)))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        out = self._deflate.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def finish(self) -> None:
        self._sink.write(self._deflate.flush())
        self._sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._sink.finish()


class _Counted:
    """Counts what a zstd stream writer hands to ``out``: the compressed size of a frame."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = self._out.write(data)
        self.size += len(data) if n is None else n
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _compressor(level: int, threads: int) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(
        level=level, threads=threads, write_checksum=True, write_content_size=True
    )


def _check_threads(threads: int | None) -> int:
    # Capped: each zstd worker needs ~50-70 MiB at level 10; the bytes do not depend on it.
    workers = min(os.cpu_count() or 1, 8) if threads is None else threads
    if workers < 1:
        raise BadInputError(
            f"zstd threads must be 1 or more, not {workers}",
            hint="single-threaded zstd (0) writes different bytes than the multi-threaded"
            " mode every bundle uses",
        )
    return workers


@dataclass(frozen=True)
class ZstdFrame:
    """One file's data compressed into a zstd frame of its own (see the module docstring),
    spooled in ``spool`` without its content size; :meth:`write_to` emits the finished frame.

    ``size`` and ``sha256`` (hex) describe the uncompressed data, ``level`` the compression
    level it was compressed at (a writer with another level decompresses and recompresses).
    """

    spool: Path
    compressed_size: int
    size: int
    sha256: str
    level: int

    def header(self) -> bytes:
        """The frame header with the content size in it (RFC 8878 §3.1.1.1).

        libzstd writes a stream of unknown size with a 2-byte header after the magic: the
        descriptor (no content size, no single segment, no dictionary, checksum on) and the
        window descriptor. The content size field goes after them; its width follows the same
        rule as libzstd's for a pledged size, so the frame is what a pledged compression of
        these bytes writes.

        Raises:
            BadInputError: the spooled frame does not start as described (not ours).
        """
        with self.spool.open("rb") as fh:
            head = fh.read(6)
        if len(head) != 6 or head[:4] != _ZSTD_MAGIC or head[4] != _FHD_UNKNOWN_SIZE:
            raise BadInputError(f"{self.spool}: not a zstd frame of unknown size")
        size = self.size
        if size < 256:
            raise BadInputError(f"{self.spool}: a frame of its own needs at least 256 bytes")
        if size < 65536 + 256:
            code, field = 1, (size - 256).to_bytes(2, "little")
        elif size <= 0xFFFFFFFF - 1:
            code, field = 2, size.to_bytes(4, "little")
        else:
            code, field = 3, size.to_bytes(8, "little")
        return _ZSTD_MAGIC + bytes((head[4] | code << 6, head[5])) + field

    def write_to(self, out: _Hasher) -> None:
        """Write the finished frame (header with content size, then the spooled blocks)."""
        header = self.header()
        out.write(header)
        with self.spool.open("rb") as fh:
            fh.seek(6)
            while chunk := fh.read(_CHUNK):
                out.write(chunk)

    def open(self) -> BinaryIO:
        """The uncompressed data, read back from the spool."""
        fh = self.spool.open("rb")
        return cast(
            BinaryIO,
            zstandard.ZstdDecompressor().stream_reader(fh, read_size=_CHUNK, closefd=True),
        )


class ZstdFrameWriter:
    """Compresses one file's data into a :class:`ZstdFrame` as it is written, before its size
    is known: the multi-threaded compressor runs while the caller produces the data.

    The compressor's worker threads do the work; :meth:`write` only hands data over (and
    waits when they are behind). ``threads`` never changes the bytes.
    """

    def __init__(self, spool: Path, *, level: int, threads: int | None = None) -> None:
        self._level = _check_level("zstd", level)
        self._spool = spool
        self._fh = spool.open("xb")
        self._out = _Counted(self._fh)
        self._hash = hashlib.sha256()
        self.size = 0
        self._writer = _compressor(self._level, _check_threads(threads)).stream_writer(
            cast(BinaryIO, self._out), closefd=False, write_return_read=True
        )

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self._writer.write(data)
        self.size += len(data)
        return len(data)

    @property
    def hexdigest(self) -> str:
        """SHA-256 (hex) of the data written so far."""
        return self._hash.hexdigest()

    def finish(self) -> ZstdFrame:
        """End the frame.

        Raises:
            BadInputError: the compressor wrote a frame header this module does not know.
        """
        self._writer.close()  # type: ignore[no-untyped-call]
        self._fh.close()
        frame = ZstdFrame(
            spool=self._spool,
            compressed_size=self._out.size,
            size=self.size,
            sha256=self._hash.hexdigest(),
            level=self._level,
        )
        if frame.size >= FRAME_THRESHOLD:
            frame.header()  # check it now, not when the archive is half written
        return frame

    def abort(self) -> None:
        self._fh.close()
        self._spool.unlink(missing_ok=True)


class _ZstdStage:
    """The frames of a zstd archive (module docstring): the tar bytes between two large files
    are spooled and compressed as one frame with its size pledged; a large file's data is a
    :class:`ZstdFrame` of its own."""

    def __init__(self, sink: _Hasher, *, level: int, threads: int, spool_dir: Path | None) -> None:
        self._sink = sink
        self._level = level
        self._threads = threads
        self._spool_dir = spool_dir
        self._cctx = _compressor(level, threads)
        # Tar headers and small files; rolls over to disk when small files add up.
        spool = None if spool_dir is None else str(spool_dir)
        self._glue = tempfile.SpooledTemporaryFile(_GLUE_IN_MEMORY, dir=spool)  # noqa: SIM115 - closed in finish/abort
        self._glue_size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._glue.write(data)
        self._glue_size += len(data)
        return len(data)

    def _flush_glue(self) -> None:
        if not self._glue_size:
            return
        self._glue.seek(0)
        writer = self._cctx.stream_writer(
            cast(BinaryIO, self._sink), size=self._glue_size, closefd=False
        )
        while chunk := self._glue.read(_CHUNK):
            writer.write(chunk)
        writer.close()  # type: ignore[no-untyped-call]
        self._glue.seek(0)
        self._glue.truncate()
        self._glue_size = 0

    def write_frame(self, frame: ZstdFrame) -> None:
        self._flush_glue()
        frame.write_to(self._sink)

    def finish(self) -> None:
        try:
            self._flush_glue()
        finally:
            self._glue.close()
        self._sink.finish()

    def abort(self) -> None:
        self._glue.close()


# ---------------------------------------------------------------------------------------------
# the writer


def _check_level(compression: Compression, level: int | None) -> int:
    if compression == "zstd":
        chosen = DEFAULT_ZSTD_LEVEL if level is None else level
        if not 1 <= chosen <= 22:
            raise BadInputError(f"zstd level must be 1 to 22, not {chosen}")
        return chosen
    if compression == "gzip":
        chosen = DEFAULT_GZIP_LEVEL if level is None else level
        if not 1 <= chosen <= 9:
            raise BadInputError(f"gzip level must be 1 to 9, not {chosen}")
        return chosen
    if compression == "none":
        return 0
    raise BadInputError(f"unknown compression {compression!r}: use zstd, gzip or none")


class DeterministicTarWriter:
    """Streams a deterministic PAX tar (see the module docstring) into ``out``.

    Entries must come in bytewise order of their archive names (directories named with a
    trailing ``/``), each directory added before its contents; anything else is refused, not
    reordered. :func:`write_tree` sorts and adds the directories for you.

    ``threads`` is the zstd worker count (default: the CPU count); it never changes the bytes.
    ``tar_size``, when given, is the exact uncompressed tar size, checked as the archive is
    written. zstd spools in ``spool_dir`` (default: the system's temporary directory): the tar
    bytes between two large files until the next large file (or the end), and a large file's
    compressed data until its frame is complete. Use as a context manager, or call
    :meth:`close`; an exception inside the ``with`` block abandons the archive (``out`` then
    holds an incomplete archive: write to a temporary file and rename it).
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        compression: Compression = "zstd",
        level: int | None = None,
        threads: int | None = None,
        mtime: int | None = None,
        tar_size: int | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self._level = _check_level(compression, level)
        workers = _check_threads(threads)
        self._mtime = source_date_epoch() if mtime is None else mtime
        if not 0 <= self._mtime <= _MAX_OCTAL_11:
            raise BadInputError(f"mtime {self._mtime} is out of range for a tar header")
        if tar_size is not None and (tar_size < 2 * BLOCK or tar_size % RECORD):
            raise BadInputError(f"tar_size {tar_size} cannot be the size of a tar stream")
        self._pledged = tar_size
        self._hasher = _Hasher(out)
        self._stage: _Stage
        self._zstd: _ZstdStage | None = None
        self._threads = workers
        self._spool_dir = spool_dir
        if compression == "zstd":
            self._stage = self._zstd = _ZstdStage(
                self._hasher, level=self._level, threads=workers, spool_dir=spool_dir
            )
        elif compression == "gzip":
            self._stage = _GzipStage(self._hasher, self._level)
        else:
            self._stage = self._hasher
        self._tar_bytes = 0
        self._last: bytes | None = None
        self._dirs: set[str] = set()
        self._files: set[str] = set()
        self._keys: dict[str, str] = {}
        self._failed = False
        self._result: WriteResult | None = None

    # -- context manager ----------------------------------------------------------------------

    def __enter__(self) -> DeterministicTarWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- entries ------------------------------------------------------------------------------

    def add_dir(self, path: str) -> None:
        """Add directory ``path`` (mode 0755), after its parent and in order.

        Raises:
            BadInputError: bad name, out of order, duplicate, parent missing, or a file of
                the same name was added.
        """
        arcname = self._admit(path, is_dir=True)
        self._emit(_entry_header(arcname, is_dir=True, size=0, mode=DIR_MODE, mtime=self._mtime))

    def add_file(
        self,
        path: str,
        data: bytes | BinaryIO,
        *,
        size: int | None = None,
        mode: int = FILE_MODE,
        sha256: str | None = None,
    ) -> None:
        """Add regular file ``path`` with ``data``: bytes, or a binary stream of exactly
        ``size`` bytes read in 1 MiB chunks. ``mode`` is 0o644, or 0o755 for scripts.
        ``sha256`` (hex), when given, is what the data must hash to.

        Raises:
            SourceChangedError: the stream holds more or fewer than ``size`` bytes, or the
                data does not hash to ``sha256``.
            BadInputError: bad name or mode, out of order, duplicate, or parent missing.
        """
        if mode not in (FILE_MODE, EXEC_MODE):
            raise BadInputError(f"{path!r}: mode must be 0o644 or 0o755, not {mode:#o}")
        if isinstance(data, bytes | bytearray | memoryview):
            if size is not None and size != len(data):
                raise BadInputError(f"{path!r}: size {size} given for {len(data)} bytes")
            size = len(data)
        elif size is None or size < 0:
            raise BadInputError(f"{path!r}: a stream needs its exact size")
        arcname = self._admit(path, is_dir=False)
        self._emit(_entry_header(arcname, is_dir=False, size=size, mode=mode, mtime=self._mtime))
        if isinstance(data, bytes | bytearray | memoryview):
            if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
                self.abort()
                raise SourceChangedError(f"{path!r}: the data does not hash to {sha256}")
            data = io.BytesIO(data)
        if self._zstd is not None and size >= FRAME_THRESHOLD:
            self._frame_from_stream(path, data, size, sha256)
        else:
            for chunk in self._read_exactly(path, data, size, sha256):
                self._emit(chunk)
        self._emit(bytes(_padding(size)))

    def add_frame(self, path: str, frame: ZstdFrame, *, mode: int = FILE_MODE) -> None:
        """Add regular file ``path`` whose data is ``frame``, compressed while it was produced
        (:class:`ZstdFrameWriter`). The frame goes into the archive as it is when it belongs
        there by the rules of the module docstring (a zstd archive of the same level, data of
        at least :data:`FRAME_THRESHOLD` bytes); otherwise its data is read back from it.
        Either way the archive's bytes are those :meth:`add_file` gives for the same data.

        Raises:
            SourceChangedError: the frame's data does not match its size or SHA-256.
            BadInputError: bad name or mode, out of order, duplicate, or parent missing.
        """
        if self._zstd is None or frame.level != self._level or frame.size < FRAME_THRESHOLD:
            with frame.open() as stream:
                self.add_file(path, stream, size=frame.size, mode=mode, sha256=frame.sha256)
            return
        if mode not in (FILE_MODE, EXEC_MODE):
            raise BadInputError(f"{path!r}: mode must be 0o644 or 0o755, not {mode:#o}")
        arcname = self._admit(path, is_dir=False)
        self._emit(
            _entry_header(arcname, is_dir=False, size=frame.size, mode=mode, mtime=self._mtime)
        )
        self._emit_frame(frame)
        self._emit(bytes(_padding(frame.size)))

    def close(self) -> WriteResult:
        """Write the end-of-archive marker, finish compression and return the digest.

        Raises:
            BadInputError: an earlier add failed, or ``tar_size`` was not the real size.
        """
        if self._result is not None:
            return self._result
        if self._failed:
            raise BadInputError("the archive is incomplete: an earlier entry failed")
        total = _archive_length(self._tar_bytes)
        self._emit(bytes(total - self._tar_bytes))
        if self._pledged is not None and self._tar_bytes != self._pledged:
            self.abort()
            raise BadInputError(
                f"tar stream is {self._tar_bytes} bytes, not the {self._pledged} announced"
            )
        self._guard(self._stage.finish)
        self._result = WriteResult(
            sha256=self._hasher.hexdigest(), size=self._hasher.size, tar_size=self._tar_bytes
        )
        return self._result

    def abort(self) -> None:
        """Give up on the archive: drop the spool; later calls fail."""
        self._failed = True
        if self._zstd is not None:
            self._zstd.abort()

    @property
    def result(self) -> WriteResult | None:
        """The :class:`WriteResult` once closed."""
        return self._result

    # -- internals ----------------------------------------------------------------------------

    def _admit(self, path: str, *, is_dir: bool) -> bytes:
        if self._failed or self._result is not None:
            raise BadInputError("the archive writer is closed or failed")
        problem = name_problem(path)
        if problem:
            raise BadInputError(f"{path!r}: {problem}")
        arcname = (path + "/" if is_dir else path).encode("utf-8")
        if self._last is not None and arcname <= self._last:
            what = "duplicate entry" if arcname == self._last else "out of order"
            raise BadInputError(
                f"{path!r}: {what}: entries must be added in bytewise order of their names"
                f" (previous: {self._last.decode('utf-8')!r})",
                hint="write_tree() sorts entries and adds parent directories",
            )
        chain = parents(path)
        if chain and chain[-1] not in self._dirs:
            raise BadInputError(
                f"{path!r}: parent directory {chain[-1]!r} must be added first",
                hint="write_tree() sorts entries and adds parent directories",
            )
        if is_dir and path in self._files:
            raise BadInputError(f"{path!r}: a file of the same name is already in the archive")
        key = collision_key(path)
        if key in self._keys:
            raise BadInputError(
                f"{path!r}: collides with {self._keys[key]!r} on case-insensitive or"
                " normalizing file systems"
            )
        self._keys[key] = path
        (self._dirs if is_dir else self._files).add(path)
        self._last = arcname
        return arcname

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._pledged is not None and self._tar_bytes + len(data) > self._pledged:
            self.abort()
            raise BadInputError(f"tar stream grows past the {self._pledged} bytes announced")
        self._guard(lambda: self._stage.write(data))
        self._tar_bytes += len(data)

    def _emit_frame(self, frame: ZstdFrame) -> None:
        assert self._zstd is not None
        zstd = self._zstd
        if self._pledged is not None and self._tar_bytes + frame.size > self._pledged:
            self.abort()
            raise BadInputError(f"tar stream grows past the {self._pledged} bytes announced")
        self._guard(lambda: zstd.write_frame(frame))
        self._tar_bytes += frame.size

    def _frame_from_stream(
        self, path: str, stream: BinaryIO, size: int, sha256: str | None
    ) -> None:
        # The spool lives in its own directory so that no name can clash.
        folder = Path(
            self._guard(partial(tempfile.mkdtemp, prefix="zstd-frame-", dir=self._spool_dir))
        )
        try:
            writer = self._guard(
                partial(ZstdFrameWriter, folder / "frame", level=self._level, threads=self._threads)
            )
            try:
                for chunk in self._read_exactly(path, stream, size, sha256):
                    self._guard(partial(writer.write, chunk))
                frame = self._guard(writer.finish)
            except BaseException:
                writer.abort()
                raise
            self._emit_frame(frame)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _read_exactly(
        self, path: str, stream: BinaryIO, size: int, sha256: str | None
    ) -> Iterator[bytes]:
        """``stream``'s ``size`` bytes in chunks; refuses a stream of another length or digest
        (after the data went out: abort() makes close() refuse the archive)."""
        digest = hashlib.sha256()
        remaining = size
        while remaining:
            chunk = self._guard(partial(stream.read, min(_CHUNK, remaining)))
            if not chunk:
                self.abort()
                raise SourceChangedError(
                    f"{path!r}: stream ended after {size - remaining} of {size} bytes"
                )
            yield chunk
            if sha256 is not None:
                digest.update(chunk)
            remaining -= len(chunk)
        if self._guard(lambda: stream.read(1)):
            self.abort()
            raise SourceChangedError(f"{path!r}: stream is longer than its declared {size} bytes")
        if sha256 is not None and digest.hexdigest() != sha256:
            self.abort()
            raise SourceChangedError(f"{path!r}: the data does not hash to {sha256}")

    def _guard(self, op: Callable[[], _T]) -> _T:
        try:
            return op()
        except BaseException:
            self.abort()
            raise


# ---------------------------------------------------------------------------------------------
# whole trees


@dataclass(frozen=True)
class FileSource:
    """File data of known ``size`` (and, when given, SHA-256 hex), opened only when its entry
    is written. Both are checked as the bytes stream into the archive: a file that changed
    since it was listed fails the write with :class:`SourceChangedError`."""

    size: int
    opener: Callable[[], BinaryIO]
    sha256: str | None = None

    @classmethod
    def from_path(
        cls, path: Path, *, size: int | None = None, sha256: str | None = None
    ) -> FileSource:
        """The file at ``path``; ``size`` defaults to its size now."""
        return cls(
            size=path.stat().st_size if size is None else size,
            opener=lambda: path.open("rb"),
            sha256=sha256,
        )


@dataclass(frozen=True)
class TreeEntry:
    """One entry of :func:`write_tree`: a file (``data`` given) or a directory (``None``).

    ``mode`` applies to files (0o644, or 0o755 for scripts); directories are always 0o755.
    """

    path: str
    data: bytes | FileSource | ZstdFrame | None
    mode: int = FILE_MODE

    def __post_init__(self) -> None:
        problem = name_problem(self.path)
        if problem:
            raise BadInputError(f"{self.path!r}: {problem}")
        if self.mode not in (FILE_MODE, EXEC_MODE):
            raise BadInputError(f"{self.path!r}: mode must be 0o644 or 0o755")
        if isinstance(self.data, FileSource) and self.data.size < 0:
            raise BadInputError(f"{self.path!r}: negative size")

    @property
    def is_dir(self) -> bool:
        return self.data is None

    @property
    def size(self) -> int:
        if self.data is None:
            return 0
        if isinstance(self.data, FileSource | ZstdFrame):
            return self.data.size
        return len(self.data)


def write_tree(
    out: BinaryIO,
    entries: Iterable[TreeEntry | tuple[str, bytes | FileSource | ZstdFrame]],
    *,
    compression: Compression = "zstd",
    level: int | None = None,
    threads: int | None = None,
    mtime: int | None = None,
    spool_dir: Path | None = None,
) -> WriteResult:
    """Write ``entries`` as one deterministic archive: sorted bytewise by archive name, parent
    directories added, the tar size computed up front and checked.

    ``entries`` may come in any order; ``(path, data)`` tuples are files with mode 0o644. A
    :class:`ZstdFrame` (data compressed while it was produced) goes into a zstd archive as it
    is; the bytes are the same as for the same data given as bytes or a file. zstd spools in
    ``spool_dir`` (see :class:`DeterministicTarWriter`).

    Raises:
        SourceChangedError: a file's length or SHA-256 differs from the one declared.
        BadInputError: a bad or duplicate path, a path used both as a file and a directory,
            or a bad mode or level.
        OSError: a source cannot be opened or read, or ``out`` cannot be written.
    """
    tree: dict[str, TreeEntry] = {}
    for item in entries:
        entry = item if isinstance(item, TreeEntry) else TreeEntry(item[0], item[1])
        previous = tree.get(entry.path)
        if previous is not None and not (previous.is_dir and entry.is_dir):
            raise BadInputError(f"{entry.path!r}: duplicate entry")
        tree[entry.path] = entry
    for path in list(tree):
        for parent in parents(path):
            found = tree.get(parent)
            if found is None:
                tree[parent] = TreeEntry(parent, None)
            elif not found.is_dir:
                raise BadInputError(f"{path!r}: parent {parent!r} is a file")
    ordered = sorted(tree.values(), key=lambda e: _arcname(e))
    body = sum(_entry_length(_arcname(e), is_dir=e.is_dir, size=e.size) for e in ordered)
    with DeterministicTarWriter(
        out,
        compression=compression,
        level=level,
        threads=threads,
        mtime=mtime,
        tar_size=_archive_length(body),
        spool_dir=spool_dir,
    ) as writer:
        for entry in ordered:
            if entry.data is None:
                writer.add_dir(entry.path)
            elif isinstance(entry.data, ZstdFrame):
                writer.add_frame(entry.path, entry.data, mode=entry.mode)
            elif isinstance(entry.data, FileSource):
                with entry.data.opener() as stream:
                    writer.add_file(
                        entry.path,
                        stream,
                        size=entry.data.size,
                        mode=entry.mode,
                        sha256=entry.data.sha256,
                    )
            else:
                writer.add_file(entry.path, entry.data, mode=entry.mode)
        return writer.close()


def _arcname(entry: TreeEntry) -> bytes:
    return (entry.path + "/" if entry.is_dir else entry.path).encode("utf-8")
