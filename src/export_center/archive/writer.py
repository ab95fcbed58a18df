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
- zstd: python-zstandard with checksum and content-size flags, always the multi-threaded
  mode. Its output is identical for any worker count ≥ 1 and for any way the input is cut
  into writes, but differs from the single-threaded mode (``threads=0``), which is refused.
  The content size must sit in the frame header, before the data; libzstd writes it only
  when the size is pledged up front. :func:`write_tree` knows every entry before writing,
  computes the exact tar size and streams in one pass. :class:`DeterministicTarWriter`
  used on its own does not know the size: unless ``tar_size`` is given, it spools the
  uncompressed tar to an unnamed temporary file and compresses it at :meth:`close`
  (memory stays flat; the disk holds the uncompressed tar meanwhile). Both routes give the
  same bytes. The bytes depend on the zstandard release (it bundles libzstd), as gzip's
  depend on the system zlib: pin them where byte-identity across machines matters.

The output goes through a SHA-256 hashing wrapper, so the caller gets the archive digest
without reading the archive again.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Mapping
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
    "Compression",
    "DeterministicTarWriter",
    "FileSource",
    "SourceChangedError",
    "TreeEntry",
    "WriteResult",
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


class _ZstdStage:
    """Multi-threaded zstd with content size (pledged up front) and checksum."""

    def __init__(self, sink: _Hasher, *, level: int, threads: int, size: int) -> None:
        self._sink = sink
        cctx = zstandard.ZstdCompressor(
            level=level, threads=threads, write_checksum=True, write_content_size=True
        )
        self._writer = cctx.stream_writer(
            cast(BinaryIO, sink), size=size, closefd=False, write_return_read=True
        )

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._writer.write(data)
        return len(data)

    def finish(self) -> None:
        # Ends the frame; closefd=False leaves ``sink`` open. (Untyped in zstandard's stub.)
        self._writer.close()  # type: ignore[no-untyped-call]
        self._sink.finish()


class _SpoolStage:
    """Holds the uncompressed tar in an unnamed temporary file until its size is known."""

    def __init__(self, sink: _Hasher, *, level: int, threads: int, spool_dir: Path | None) -> None:
        self._sink = sink
        self._level = level
        self._threads = threads
        self._spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - closed in finish/abort
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._spool.write(data)
        self._size += len(data)
        return len(data)

    def finish(self) -> None:
        try:
            self._spool.seek(0)
            stage = _ZstdStage(
                self._sink, level=self._level, threads=self._threads, size=self._size
            )
            while chunk := self._spool.read(_CHUNK):
                stage.write(chunk)
            stage.finish()
        finally:
            self._spool.close()

    def abort(self) -> None:
        self._spool.close()


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
    ``tar_size``, when given, is the exact uncompressed tar size: zstd then streams straight
    to ``out`` instead of spooling to a temporary file in ``spool_dir``. Use as a context
    manager, or call :meth:`close`; an exception inside the ``with`` block abandons the archive
    (``out`` then holds an incomplete archive: write to a temporary file and rename it).
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
        # Capped: each zstd worker needs ~50-70 MiB at level 10; the bytes do not depend on it.
        workers = min(os.cpu_count() or 1, 8) if threads is None else threads
        if workers < 1:
            raise BadInputError(
                f"zstd threads must be 1 or more, not {workers}",
                hint="single-threaded zstd (0) writes different bytes than the multi-threaded"
                " mode every bundle uses",
            )
        self._mtime = source_date_epoch() if mtime is None else mtime
        if not 0 <= self._mtime <= _MAX_OCTAL_11:
            raise BadInputError(f"mtime {self._mtime} is out of range for a tar header")
        if tar_size is not None and (tar_size < 2 * BLOCK or tar_size % RECORD):
            raise BadInputError(f"tar_size {tar_size} cannot be the size of a tar stream")
        self._pledged = tar_size
        self._hasher = _Hasher(out)
        self._stage: _Stage
        if compression == "zstd":
            if tar_size is None:
                self._stage = _SpoolStage(
                    self._hasher, level=self._level, threads=workers, spool_dir=spool_dir
                )
            else:
                self._stage = _ZstdStage(
                    self._hasher, level=self._level, threads=workers, size=tar_size
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
            self._emit(data)
        else:
            self._copy(path, data, size, sha256)
        self._emit(bytes(_padding(size)))

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
        if isinstance(self._stage, _SpoolStage):
            self._stage.abort()

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

    def _copy(self, path: str, stream: BinaryIO, size: int, sha256: str | None) -> None:
        digest = hashlib.sha256()
        remaining = size
        while remaining:
            chunk = self._guard(partial(stream.read, min(_CHUNK, remaining)))
            if not chunk:
                self.abort()
                raise SourceChangedError(
                    f"{path!r}: stream ended after {size - remaining} of {size} bytes"
                )
            self._emit(chunk)
            if sha256 is not None:
                digest.update(chunk)
            remaining -= len(chunk)
        if self._guard(lambda: stream.read(1)):
            self.abort()
            raise SourceChangedError(f"{path!r}: stream is longer than its declared {size} bytes")
        if sha256 is not None and digest.hexdigest() != sha256:
            # The bytes are already in the output; abort() makes close() refuse the archive.
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
    data: bytes | FileSource | None
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
        return self.data.size if isinstance(self.data, FileSource) else len(self.data)


def write_tree(
    out: BinaryIO,
    entries: Iterable[TreeEntry | tuple[str, bytes | FileSource]],
    *,
    compression: Compression = "zstd",
    level: int | None = None,
    threads: int | None = None,
    mtime: int | None = None,
) -> WriteResult:
    """Write ``entries`` as one deterministic archive: sorted bytewise by archive name, parent
    directories added, zstd content size computed up front (one pass, no spool).

    ``entries`` may come in any order; ``(path, data)`` tuples are files with mode 0o644.

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
    ) as writer:
        for entry in ordered:
            if entry.data is None:
                writer.add_dir(entry.path)
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
