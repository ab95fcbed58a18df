"""Ingestion: walk files, folders and archives, detect formats, store records in batches.

Every input is accounted for. Each file is read (its records stored, revised, unchanged or
refused), refused whole (with the reason), or skipped (not evidence, or a format we do not read,
with the reason); each record is inserted, a new revision, a withdrawal, unchanged or refused.
Documents that share an upstream id but are about different subjects are kept apart and
reported as collisions (store/identity.py).

Records go to the store in batches, each batch one transaction with the tenant locked
(store/writer.py): a batch the database refuses is retried record by record, so one bad record
is refused and its neighbours stored. Progress is reported in bytes as batches commit, so a
single large file moves the bar too. A cancel request (Ctrl-C in the CLI) is honoured between
records: the records read so far are written, nothing is left half-written, and a re-run
completes the rest (stored records are unchanged no-ops).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import signal
import stat
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from export_center.errors import BadInputError, DocumentRefused, UnsafeArchiveError
from export_center.ingest.detect import detect, not_evidence, parse_document, unread_format
from export_center.ingest.interface import RecordRefused, Skipped
from export_center.model import ParsedRecord
from export_center.store.repository import EvidenceStore, check_source, check_tenant
from export_center.store.writer import (
    IngestOutcome,
    IngestWriter,
    PreparedRecord,
    StoreRefusal,
    prepare,
)

log = logging.getLogger(__name__)

EVIDENCE_SUFFIXES = (".json", ".yaml", ".yml")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2")
#: A batch is written when it holds this many records or this many bytes of content.
BATCH_RECORDS = 500
BATCH_BYTES = 16 << 20


@dataclass(frozen=True)
class Collision:
    """A document stored apart from another that carries the same upstream id, or a document
    that two inputs of one ingest carried with different bytes."""

    where: str
    upstream_id: str
    stored_as: str  # the observation id it was stored (or found unchanged) under
    other: str | None  # the observation id of the document holding the plain id
    kind: str  # "kept-apart" | "revised-twice"


@dataclass
class IngestReport:
    """What one ingest did with every file and record it was given.

    Files: ``files == files_read + files_refused + len(skipped)`` (plus the files not reached
    when ``interrupted``). Records: ``inserted + revisions + withdrawals + unchanged`` plus the
    record refusals.
    """

    files: int = 0
    files_read: int = 0
    files_refused: int = 0
    bytes: int = 0
    inserted: int = 0
    revisions: int = 0
    withdrawals: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    refused: list[RecordRefused] = field(default_factory=list)
    collisions: list[Collision] = field(default_factory=list)
    batches: int = 0
    interrupted: bool = False

    @property
    def stored(self) -> int:
        return self.inserted + self.revisions + self.withdrawals

    @property
    def skipped_files(self) -> int:
        return len(self.skipped)


@dataclass(frozen=True)
class InputDocument:
    where: str
    content: bytes


@dataclass(frozen=True)
class FileDone:
    """End of one input file: ``size`` is its length on disk (for progress by bytes)."""

    where: str
    size: int


#: Progress: (bytes done since the last call, where). Called as batches commit.
ProgressFn = Callable[[int, str], None]


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_evidence(name: str) -> bool:
    return name.lower().endswith(EVIDENCE_SUFFIXES)


def walk(paths: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """Every file under ``paths``, sorted within each folder, with whether it was named
    directly (a named file is always tried; inside folders only evidence and archives are
    read, every other file is reported as skipped)."""
    for p in paths:
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name, False
        else:
            yield p, True


def discover(paths: Iterable[Path]) -> Iterator[Path]:
    """The files under ``paths`` that ingest reads: files named directly, and evidence and
    archives found under folders, sorted."""
    for path, named in walk(paths):
        if named or _is_evidence(path.name) or _is_archive(path.name):
            yield path


def survey(paths: Iterable[Path]) -> tuple[int, int]:
    """(files, bytes) under ``paths``: the totals a progress display counts towards."""
    files = size = 0
    for path, _named in walk(paths):
        files += 1
        # A file that cannot be stat'ed is refused when it is read; it adds nothing here.
        with contextlib.suppress(OSError):
            size += path.stat().st_size
    return files, size


def iter_documents(
    paths: Iterable[Path], *, max_bytes: int
) -> Iterator[InputDocument | RecordRefused | Skipped | FileDone]:
    """Each input file's bytes, or why it was refused or skipped; archives opened member by
    member through the safe reader (each member a file). A :class:`FileDone` follows each
    file on disk (after all members of an archive)."""
    for path, named in walk(paths):
        yield from _documents_of(path, named, max_bytes)


def _documents_of(
    path: Path, named: bool, max_bytes: int
) -> Iterator[InputDocument | RecordRefused | Skipped | FileDone]:
    where = str(path)
    if not named and not _is_evidence(path.name) and not _is_archive(path.name):
        yield Skipped(where, unread_format(path.name))
        yield FileDone(where, _size(path))
    elif _is_archive(path.name):
        yield from _archive_members(path, max_bytes)
        yield FileDone(where, _size(path))
    else:
        doc = _read_file(path, max_bytes)
        yield doc
        yield FileDone(where, len(doc.content) if isinstance(doc, InputDocument) else 0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_file(path: Path, max_bytes: int) -> InputDocument | RecordRefused:
    where = str(path)
    try:
        st = path.stat()  # before opening: opening a FIFO or a device could block
        if not stat.S_ISREG(st.st_mode):
            return RecordRefused(where, "not a regular file")
        if st.st_size > max_bytes:
            return RecordRefused(
                where, f"document is {st.st_size} bytes, over the {max_bytes}-byte limit"
            )
        return InputDocument(where, path.read_bytes())
    except FileNotFoundError:
        return RecordRefused(where, "no such file")
    except OSError as e:
        return RecordRefused(where, f"cannot read: {e.strerror or e}")


def _archive_members(
    path: Path, max_bytes: int
) -> Iterator[InputDocument | RecordRefused | Skipped]:
    from export_center.archive.reader import Limits, iter_members

    where = str(path)
    limits = Limits(max_member_bytes=max_bytes)
    try:
        for member in iter_members(path, limits):
            if member.is_dir:
                continue
            inner = f"{where}!{member.name}"
            if _is_archive(member.name):
                yield RecordRefused(inner, "nested archives are not opened")
            elif not _is_evidence(member.name):
                yield Skipped(inner, unread_format(member.name))
            else:
                yield InputDocument(inner, member.read())
    except UnsafeArchiveError as e:
        yield RecordRefused(where, f"unsafe archive: {e.message}")
    except BadInputError as e:
        yield RecordRefused(where, f"cannot read archive: {e.message}")
    except OSError as e:
        yield RecordRefused(where, f"cannot read archive: {e}")


def parse_records(doc: InputDocument) -> Iterator[ParsedRecord | RecordRefused | Skipped]:
    """Detect the format of one document and read its records; refusals (and known files that
    are not evidence, such as a VEX repository's index) are values."""
    try:
        parsed = parse_document(doc.content, doc.where)
        try:
            reader = detect(parsed, doc.where)
        except DocumentRefused:
            reason = not_evidence(parsed, doc.where)
            if reason is None:
                raise
            yield Skipped(doc.where, reason)
            return
        yield from reader.read(parsed, doc.content, doc.where)
    except DocumentRefused as e:
        yield RecordRefused(e.where, e.reason)


@dataclass(frozen=True)
class ReadDocument:
    """One document read and parsed: its records, refusals and skips, in document order."""

    where: str
    size: int  # bytes of the document
    records: Iterable[ParsedRecord | PreparedRecord | RecordRefused | Skipped]


_Item = ReadDocument | RecordRefused | Skipped | FileDone

#: Files handed to a reading process at a time, and chunks in flight per process: enough to
#: keep the processes busy, few enough that memory stays bounded whatever the input's size.
READ_CHUNK_FILES = 64
READ_CHUNKS_IN_FLIGHT = 4
#: Below this many files, reading processes cost more to start than they save.
PARALLEL_MIN_FILES = 2 * READ_CHUNK_FILES


def reading_processes() -> int:
    """How many processes read and parse the input by default: the machine's cores (at most
    4; the single writer is the limit beyond), where processes can be forked (Linux)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _read_chunk(files: list[tuple[Path, bool]], max_bytes: int) -> list[_Item]:
    """Read and parse some files (in a reading process): everything the writer needs,
    records prepared for it (digest, normalized JSON)."""
    out: list[_Item] = []
    for path, named in files:
        for item in _documents_of(path, named, max_bytes):
            if isinstance(item, InputDocument):
                records = [_prepared(r) for r in parse_records(item)]
                out.append(ReadDocument(item.where, len(item.content), records))
            else:
                out.append(item)
    return out


def _prepared(
    rec: ParsedRecord | RecordRefused | Skipped,
) -> ParsedRecord | PreparedRecord | RecordRefused | Skipped:
    if not isinstance(rec, ParsedRecord):
        return rec
    try:
        return prepare(rec)
    except (TypeError, ValueError):
        return rec  # the writer refuses it, with the reason


def _read_in_processes(
    paths: Iterable[Path], max_bytes: int, processes: int
) -> Generator[_Item, None, None]:
    """Every input file's documents read and parsed (or why one was refused or skipped), by
    ``processes`` forked processes, in input order (sequence numbers follow it), with a
    bounded number of chunks in flight.

    Small inputs are read here: forking costs more than it saves. Reading processes only read
    files and parse them; every database call stays in this process.
    """
    files = walk(paths)
    first = list(itertools.islice(files, PARALLEL_MIN_FILES))
    if len(first) < PARALLEL_MIN_FILES or processes <= 1:
        for path, named in itertools.chain(first, files):
            for item in _documents_of(path, named, max_bytes):
                if isinstance(item, InputDocument):
                    yield ReadDocument(item.where, len(item.content), parse_records(item))
                else:
                    yield item
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = _chunked(itertools.chain(first, files), READ_CHUNK_FILES)
    # fork: the reading processes start at once, with this process's modules imported (a
    # spawned one would import the readers again: ~0.3 s of each run).
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_reading_process)
    try:
        pending: collections.deque[Future[list[_Item]]] = collections.deque()
        for chunk in itertools.islice(chunks, processes * READ_CHUNKS_IN_FLIGHT):
            pending.append(pool.submit(_read_chunk, chunk, max_bytes))
        while pending:
            done = pending.popleft().result()
            chunk = next(chunks, [])
            if chunk:
                pending.append(pool.submit(_read_chunk, chunk, max_bytes))
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _reading_process() -> None:
    # Ctrl-C reaches the whole process group: stopping is the ingesting process's to decide
    # (the CLI's first one stops it between records, and the reading processes are shut
    # down after their chunk). A reading process must not die of it and break the pool,
    # whatever handler it inherited.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _chunked(items: Iterator[tuple[Path, bool]], size: int) -> Iterator[list[tuple[Path, bool]]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


class _Batcher:
    """Pending records and the bytes of progress they complete, written in batches.

    A batch is written by one background thread while the next one is read and parsed: the
    database's work (SQLite's inserts and commit, PostgreSQL's round trips) runs without the
    GIL, so reading and writing share the two cores. At most one batch is in flight, results
    are counted in input order, and every database call happens on that one thread.
    """

    def __init__(
        self, writer: IngestWriter, report: IngestReport, progress: ProgressFn | None
    ) -> None:
        self.writer = writer
        self.report = report
        self.progress = progress
        self.records: list[ParsedRecord | PreparedRecord] = []
        self.wheres: list[str] = []
        self.size = 0
        self.credit = 0  # bytes of input that are done once the pending records are written
        self.last_where = ""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._inflight: (
            tuple[
                Future[list[IngestOutcome | StoreRefusal]],
                list[ParsedRecord | PreparedRecord],
                list[str],
                int,
            ]
            | None
        ) = None

    def add(self, rec: ParsedRecord | PreparedRecord, where: str, credit: int) -> None:
        self.records.append(rec)
        self.wheres.append(where)
        self.size += len(rec.content)
        self.credit += credit
        self.last_where = where
        if len(self.records) >= BATCH_RECORDS or self.size >= BATCH_BYTES:
            self.flush()

    def done(self, where: str, credit: int) -> None:
        """Input that needs no write is done (a refused or skipped file, the rest of a file
        whose records are pending): reported with the next write, or now if none is pending."""
        self.credit += credit
        self.last_where = where
        if not self.records and self._inflight is None:
            self._advance(self.credit)
            self.credit = 0

    def _advance(self, credit: int) -> None:
        if self.progress is not None and credit:
            self.progress(credit, self.last_where)

    def flush(self) -> None:
        """Hand the pending records to the writer thread (after the batch before them)."""
        if not self.records:
            return
        self._collect()
        future = self._pool.submit(self.writer.write, self.records)
        self._inflight = (future, self.records, self.wheres, self.credit)
        self.records, self.wheres, self.size, self.credit = [], [], 0, 0

    def finish(self) -> None:
        """Write what is pending and wait for it."""
        self.flush()
        self._collect()
        self._advance(self.credit)
        self.credit = 0

    def close(self) -> None:
        """Wait for the batch in flight (it commits or rolls back whole) and stop the thread;
        on an error or interrupt its results are not counted."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            with contextlib.suppress(Exception):
                inflight[0].result()
        self._pool.shutdown(wait=True)

    def _collect(self) -> None:
        if self._inflight is None:
            return
        future, records, wheres, credit = self._inflight
        results = future.result()
        self._inflight = None
        self.report.batches = self.writer.batches
        for rec, where, result in zip(records, wheres, results, strict=True):
            self._count(rec, where, result)
        self._advance(credit)

    def _count(
        self, rec: ParsedRecord | PreparedRecord, where: str, result: IngestOutcome | StoreRefusal
    ) -> None:
        report = self.report
        if isinstance(result, StoreRefusal):
            report.refused.append(RecordRefused(where, result.reason))
            return
        if result.outcome == "inserted":
            report.inserted += 1
        elif result.outcome == "revision":
            report.revisions += 1
        elif result.outcome == "withdrawal":
            report.withdrawals += 1
        else:
            report.unchanged += 1
        if result.shares_id_with is not None:
            report.collisions.append(
                Collision(
                    where,
                    rec.upstream_id,
                    result.observation_id,
                    result.shares_id_with,
                    "kept-apart",
                )
            )
        if result.revised_in_run:
            report.collisions.append(
                Collision(where, rec.upstream_id, result.observation_id, None, "revised-twice")
            )


def _read_all(
    items: Iterable[_Item],
    report: IngestReport,
    batch: _Batcher,
    cancelled: Callable[[], bool] | None,
) -> None:
    credited = 0  # bytes of the current file already credited to its records
    for item in items:
        if isinstance(item, FileDone):
            report.bytes += item.size
            batch.done(item.where, max(item.size - credited, 0))
            credited = 0
            if cancelled is not None and cancelled():
                report.interrupted = True
                break
            continue
        report.files += 1
        if isinstance(item, Skipped):
            report.skipped.append(item)
            continue
        if isinstance(item, RecordRefused):
            report.files_refused += 1
            report.refused.append(item)
            continue
        file_records = file_refusals = 0
        skipped = False
        for rec in item.records:
            if isinstance(rec, Skipped):
                report.skipped.append(rec)
                skipped = True
            elif isinstance(rec, RecordRefused):
                file_refusals += 1
                report.refused.append(rec)
            else:
                file_records += 1
                # A record completes its share of the file: its own bytes, at most what is
                # left of the file (bundle entries are re-encoded, and may be longer).
                share = min(len(rec.content), max(item.size - credited, 0))
                credited += share
                batch.add(rec, item.where, share)
            if cancelled is not None and cancelled():
                report.interrupted = True
                break
        if file_records:
            report.files_read += 1
        elif file_refusals:
            report.files_refused += 1
        elif not skipped and not report.interrupted:
            report.files_refused += 1
            report.refused.append(RecordRefused(item.where, "the document holds no records"))
        if report.interrupted:
            break


def ingest_paths(
    store: EvidenceStore,
    paths: Iterable[Path],
    *,
    source: str,
    tenant: str,
    max_bytes: int,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
    processes: int = 1,
) -> IngestReport:
    """Ingest every document under ``paths`` into ``tenant`` as ``source``.

    ``processes``: how many processes read and parse the files (:func:`reading_processes`
    gives the machine's default); the records are written by this one, in input order, so
    the result is the same whatever the number.

    ``progress`` is told the input bytes done as batches commit; ``cancelled`` is asked
    between records: when it answers true, what was read is written and the ingest stops with
    ``report.interrupted`` set.

    Raises:
        BadInputError: the tenant or source name is invalid (nothing is read then).
        OperationalError: the database failed (locked beyond its timeout, gone, full); the
            batches committed before stay, the one in flight is rolled back.
    """
    check_tenant(tenant)
    check_source(source)
    report = IngestReport()
    with store.writer(tenant, source) as writer:
        batch = _Batcher(writer, report, progress)
        try:
            items = _read_in_processes(paths, max_bytes, processes)
            try:
                _read_all(items, report, batch, cancelled)
            finally:
                items.close()  # stops the reading processes when the ingest stops early
            batch.finish()
        finally:
            batch.close()
    log.info(
        "ingested %d files: %d new, %d revisions, %d withdrawals, %d unchanged, %d refused, "
        "%d skipped, %d collisions%s",
        report.files,
        report.inserted,
        report.revisions,
        report.withdrawals,
        report.unchanged,
        len(report.refused),
        len(report.skipped),
        len(report.collisions),
        " (interrupted)" if report.interrupted else "",
    )
    return report
