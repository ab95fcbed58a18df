"""The staging area of one run: where a profile's files are spooled before they are archived.

Adapters write through :class:`Staging`, which hashes and counts as it writes, so the bundle
writer knows every file's digest, size and record count without reading it again. Paths are
bundle paths ('/'-separated, relative); a path that could escape the bundle, or one written
twice, is refused here rather than in every adapter.

When the bundle will be a zstd archive, a file that grows to
:data:`~export_center.archive.writer.FRAME_THRESHOLD` bytes is compressed *as it is written*
into the zstd frame the archive carries it in
(:class:`~export_center.archive.writer.ZstdFrameWriter`): the compressor's threads work while
the adapter is still reading the store, and the file is never written out uncompressed. The
archive's bytes are the same either way.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from export_center.archive.writer import FRAME_THRESHOLD, FileSource, ZstdFrame, ZstdFrameWriter
from export_center.errors import BadInputError

__all__ = ["StagedFile", "StagedWriter", "Staging"]

# Bytes collected before they are hashed and handed on: one hash update and one write per
# few MiB instead of per line. At least the frame threshold, so a file's first hand-over
# already knows whether the file gets a frame of its own.
_FLUSH = max(FRAME_THRESHOLD, 4 << 20)


class _FramePipe:
    """Feeds a :class:`ZstdFrameWriter` from a thread of its own, so that hashing and handing
    data to the compressor (both release the GIL) overlap with the adapter producing the next
    chunk. Chunks are large: each hand-over costs a GIL round trip. The queue is short, so
    the adapter waits (backpressure) when the compressor is behind."""

    def __init__(self, frame: ZstdFrameWriter) -> None:
        self._frame = frame
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stella-zstd-frame", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._frame.write(item)
            except BaseException as e:  # re-raised in the adapter's thread
                self._error = e
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> None:
        self._raise()
        self._queue.put(data)

    def drain(self) -> None:
        """Wait until everything written so far is in the frame."""
        self._queue.join()
        self._raise()

    def hexdigest(self) -> str:
        self.drain()
        return self._frame.hexdigest

    def close(self) -> ZstdFrame:
        self._queue.put(None)
        self._thread.join()
        self._raise()
        return self._frame.finish()

    def abort(self) -> None:
        self._error = self._error or RuntimeError("aborted")
        self._queue.put(None)
        self._thread.join()
        self._frame.abort()


@dataclass(frozen=True)
class StagedFile:
    path: str  # path inside the bundle, '/'-separated
    local: Path  # the uncompressed file; absent (never written) when ``frame`` holds the data
    sha256: str  # hex
    size: int
    records: int | None
    content_type: str
    frame: ZstdFrame | None = None

    def source(self) -> FileSource | ZstdFrame:
        """The data, as the archive writer takes it."""
        if self.frame is not None:
            return self.frame
        return FileSource.from_path(self.local, size=self.size)


class StagedWriter:
    """A file being staged: write bytes, count records; digest and size come for free.

    Writes are collected and handed on a few MiB at a time; :meth:`close` (which
    :meth:`Staging.open` calls) hands on the rest. ``frames``, when given, makes the zstd
    frame writer a file is compressed into once it reaches the frame threshold.
    """

    def __init__(
        self, fh: BinaryIO, *, frames: Callable[[], ZstdFrameWriter] | None = None
    ) -> None:
        self._fh = fh
        self._frames = frames
        self._frame: _FramePipe | None = None
        self._plain = 0  # bytes already written to ``fh``
        self._pending: list[bytes] = []  # written, not handed on yet
        self._pending_size = 0
        self._hash = hashlib.sha256()
        self.size = 0
        self.records = 0

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:
            data = bytes(data)  # a caller may reuse its buffer; we keep ours until the flush
        self._pending.append(data)
        self._pending_size += len(data)
        self.size += len(data)
        if self._pending_size >= _FLUSH:
            self._flush()

    def write_record(self, line: bytes) -> None:
        """One JSONL record (``line`` without its newline)."""
        self.write(line + b"\n")
        self.records += 1

    def write_records(self, lines: Sequence[bytes]) -> None:
        """JSONL records (each line without its newline); cheaper than one call per line."""
        if lines:
            self.write(b"\n".join([*lines, b""]))
            self.records += len(lines)

    def _flush(self) -> None:
        if not self._pending:
            return
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending, self._pending_size = [], 0
        # Only from the first byte: a file's frame holds all of its data or none of it.
        starts_frame = self._frames is not None and self._frame is None and not self._plain
        if starts_frame and self.size >= FRAME_THRESHOLD:
            assert self._frames is not None
            self._frame = _FramePipe(self._frames())
        if self._frame is not None:
            self._frame.write(data)  # hashed and compressed in the pipe's thread
        else:
            self._hash.update(data)
            self._fh.write(data)
            self._plain += len(data)

    @property
    def hexdigest(self) -> str:
        self._flush()
        return self._frame.hexdigest() if self._frame is not None else self._hash.hexdigest()

    def close(self) -> ZstdFrame | None:
        """Hand on what is left; the frame the data went into, if it went into one."""
        self._flush()
        return self._frame.close() if self._frame is not None else None

    def abort(self) -> None:
        if self._frame is not None:
            self._frame.abort()


class Staging:
    """A private directory where a run's files are spooled before they are archived.

    ``zstd_level``, when given, is the level of the zstd archive the files will go into:
    large files are then compressed while they are written (module docstring), by
    ``threads`` zstd workers each. The default is half the CPUs (1 to 4): adapters write two
    large files at once (json:raw's raw and normalized shards), and each worker holds tens of
    MiB at level 10. The worker count never changes the bytes.
    """

    def __init__(
        self, root: Path, *, zstd_level: int | None = None, threads: int | None = None
    ) -> None:
        self.root = root
        self._files: dict[str, StagedFile] = {}
        self._level = zstd_level
        self._threads = threads or max(1, min(4, (os.cpu_count() or 1) // 2))
        self._frames = 0

    @staticmethod
    def _check(path: str) -> None:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in {"", ".", ".."} for p in parts):
            raise BadInputError(f"adapter produced an invalid bundle path {path!r}")

    def _frame_writer(self) -> ZstdFrameWriter:
        assert self._level is not None
        folder = self.root / "frames"
        folder.mkdir(exist_ok=True)
        self._frames += 1
        return ZstdFrameWriter(
            folder / f"{self._frames}.zst", level=self._level, threads=self._threads
        )

    @contextmanager
    def open(
        self, path: str, content_type: str, *, count_records: bool = False
    ) -> Iterator[StagedWriter]:
        """Stage the file ``path``; its digest and size are recorded when the block ends.

        Raises:
            BadInputError: an invalid bundle path, or one staged already.
        """
        self._check(path)
        if path in self._files:
            raise BadInputError(f"bundle path {path!r} written twice")
        local = self.root / "files" / path
        local.parent.mkdir(parents=True, exist_ok=True)
        frames = self._frame_writer if self._level is not None else None
        with local.open("wb") as fh:
            w = StagedWriter(fh, frames=frames)
            try:
                yield w
                frame = w.close()
            except BaseException:
                w.abort()
                raise
        if frame is not None:
            local.unlink()  # empty: the data is in the frame
        self._files[path] = StagedFile(
            path,
            local,
            w.hexdigest,
            w.size,
            w.records if count_records else None,
            content_type,
            frame,
        )

    def add_bytes(
        self, path: str, data: bytes, content_type: str, records: int | None = None
    ) -> StagedFile:
        with self.open(path, content_type) as w:
            w.write(data)
        staged = self._files[path]
        if records is not None:
            staged = replace(staged, records=records)
            self._files[path] = staged
        return staged

    def files(self) -> list[StagedFile]:
        """Every staged file, sorted by path (bytewise: the order of the archive)."""
        return [self._files[p] for p in sorted(self._files, key=lambda s: s.encode())]
