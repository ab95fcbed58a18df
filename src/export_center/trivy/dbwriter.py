"""Build Trivy's vulnerability database: ``trivy.db``, ``metadata.json`` and ``db.tar.gz``.

Advisories arrive one at a time, in any order; bbolt wants every bucket's keys in order. The
writer sorts externally, in two steps:

1. **map**: advisories are mapped (:func:`~export_center.trivy.mapping.map_record`) in batches;
   each batch's rows are sorted in memory and spilled to a *run* file. Large inputs are mapped in
   worker processes (one per core by default) fed through a bounded queue, so memory stays flat
   and mapping uses every core; a small input never starts a process.
2. **merge**: each root bucket is one ordered pass over its rows in the runs (``heapq.merge``; a run
   records where each root's rows are), streamed into
   :class:`~export_center.trivy.bbolt.BoltWriter`. When the input was large enough to be mapped in
   workers, the root buckets are merged and encoded in as many processes
   (:func:`~export_center.trivy.bbolt.encode_bucket`; the largest first, then in root order) and
   this process places each in root order as it is done
   (:meth:`~export_center.trivy.bbolt.BoltWriter.put_encoded` moves its page ids): the same bytes as
   writing them here one after another, without a serial merge of everything (that was a third of a
   1M-advisory build).

A row is root bucket, package, vulnerability id, feed id, advisory id and value JSON joined by
NUL bytes (which no name may contain, and JSON escapes), so the one bytewise order of the rows is
the order of those fields. Because every row is ordered by its full content, the database
is the same bytes whatever the input order, the batch size or the number of workers.

Merge rule. Two advisories can land on the same key: two feeds writing one OS bucket
(``debian 12``), or one feed holding two records of the same CVE (a PYSEC and a GHSA record,
both keyed by their single CVE). Their values are combined in the order (feed id, advisory id,
value bytes), so the result never depends on input order:

- advisory buckets: :func:`~export_center.trivy.mapping.merge_advisory_values` (version lists and
  VendorIDs unioned; FixedVersion/Status/Severity from the first, an unfixed record winning);
- ``vulnerability``: :func:`~export_center.trivy.mapping.merge_vulnerability_values` (per-feed
  severity and CVSS merged, references and CWEs unioned, text fields from the first);
- ``data-source`` of a bucket shared by several feeds: the feed with the smallest id.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from export_center.archive.writer import FileSource, write_tree
from export_center.errors import BadInputError, ExportCenterError
from export_center.model import Advisory, to_json_dict
from export_center.trivy.bbolt import BoltWriter, BucketWriter, encode_bucket
from export_center.trivy.mapping import (
    DATA_SOURCE_BUCKET,
    VULNERABILITY_BUCKET,
    DataSource,
    data_source_for,
    data_source_value,
    map_record,
    merge_advisory_values,
    merge_vulnerability_values,
)
from export_center.trivy.scratch import release

__all__ = [
    "DB_SCHEMA_VERSION",
    "AdvisoryInput",
    "TrivyDbReport",
    "metadata_json",
    "write_db_archive",
    "write_trivy_db",
]

log = logging.getLogger(__name__)

#: trivy.db schema version Trivy v0.76 requires (metadata.json "Version").
DB_SCHEMA_VERSION = 2

#: An advisory as the writer takes it: the model, its normalized JSON as a dict (the store's
#: form, ``to_json_dict``), or those JSON bytes (what the store hands out; cheapest to ship to
#: a worker process).
AdvisoryInput = Advisory | Mapping[str, Any] | bytes

#: Advisories per task handed to a worker process (the bounded queue holds a few per worker).
BATCH = 1024
#: Row bytes a mapper holds before it sorts them and spills a run file. A million advisories
#: make about a hundred runs (the merge holds one block of each), and each process stays under
#: 100 MB (measured: 70 MB main, 80 MB per worker on 100,000 synthetic advisories; 24 MB gave
#: 97 and 109).
RUN_BUDGET = 12 << 20
#: Rows per pickled block of a run file: the merge holds one block per run in memory.
_BLOCK = 256
#: Tasks waiting per worker in the queue between the reader and the workers.
_IN_FLIGHT = 2
#: Bytes of a run read before their pages are released (``scratch.release``).
_RELEASE_EVERY = 1 << 20
#: Overhead of one row in memory besides its bytes (the object header and the list slot).
_ROW_OVERHEAD = 48

_SEP = b"\x00"
_VULN_ROOT = VULNERABILITY_BUCKET.encode()
_DS_ROOT = DATA_SOURCE_BUCKET.encode()

#: A row: sort key, NUL, value JSON. One exact-size bytes object: orjson's output buffers are
#: larger than their content, and a row that kept one would hold ten times its size.
Row = bytes


@dataclass(frozen=True)
class _Run:
    """One sorted run file: the byte range of each root bucket's rows in it (a root's rows are
    contiguous in a sorted run, and its pickled blocks never hold another root's rows)."""

    path: Path
    roots: dict[bytes, tuple[int, int]]


@dataclass(frozen=True)
class TrivyDbReport:
    """What :func:`write_trivy_db` wrote, and what it left out and why."""

    advisories: int  # advisories read
    mapped: int  # advisories that gave at least one entry
    entries: int  # keys written to advisory buckets (after merging)
    merged_entries: int  # of those, keys that combined several advisories
    vulnerabilities: int  # keys of the "vulnerability" bucket
    buckets: tuple[str, ...]  # advisory buckets, sorted
    skipped: tuple[tuple[str, int], ...]  # (reason, how many), sorted by reason
    # clauses Trivy could not read, left out of entries that were written: (reason, how many)
    dropped: tuple[tuple[str, int], ...] = ()


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


# ---- map: advisories → sorted runs ------------------------------------------------------------


@dataclass
class _BatchResult:
    """What one batch contributed (sums and minimums: independent of how input was split)."""

    read: int = 0
    mapped: int = 0
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    bucket_sources: dict[str, DataSource] = field(default_factory=dict)

    def add(self, other: _BatchResult) -> None:
        self.read += other.read
        self.mapped += other.mapped
        self.rows += other.rows
        self.skipped.update(other.skipped)
        self.dropped.update(other.dropped)
        for bucket, source in other.bucket_sources.items():
            held = self.bucket_sources.get(bucket)
            if held is None or source.id < held.id:
                self.bucket_sources[bucket] = source


def _decoded(advisory: AdvisoryInput) -> Mapping[str, Any]:
    """The advisory as its normalized JSON dict.

    Raises:
        BadInputError: bytes that are not a JSON object.
    """
    if isinstance(advisory, bytes):
        try:
            doc = orjson.loads(advisory)
        except orjson.JSONDecodeError as e:
            raise BadInputError(f"advisory input is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise BadInputError(f"advisory input is a JSON {type(doc).__name__}, not an object")
        return doc
    if isinstance(advisory, Advisory):
        return to_json_dict(advisory)  # type: ignore[no-any-return]
    return advisory


class _Mapper:
    """Maps batches into rows, sorts them and spills a run file whenever ``budget`` row bytes
    are held; ``runs`` are the files written (each sorted)."""

    def __init__(self, scratch: Path, prefix: str, budget: int) -> None:
        self.scratch = scratch
        self.prefix = prefix
        self.budget = budget
        self.runs: list[_Run] = []
        self.result = _BatchResult()
        self._rows: list[Row] = []
        self._held = 0

    def map_batch(self, items: Iterable[tuple[DataSource, AdvisoryInput]]) -> None:
        result, rows = self.result, self._rows
        for source, advisory in items:
            result.read += 1
            doc = _decoded(advisory)
            mapped = map_record(doc, source)
            if mapped.skipped:
                result.skipped.update(mapped.skipped)
            if mapped.dropped:
                result.dropped.update(mapped.dropped)
            if not mapped.entries or mapped.vulnerability is None:
                continue
            aid = doc["id"].encode()
            keys = [k.encode() for k in mapped.vuln_ids]
            if _SEP in aid or any(_SEP in k for k in keys):
                result.skipped["NUL byte in an id"] += 1
                continue
            result.mapped += 1
            feed = source.id.encode()
            held, first_row = 0, len(rows)
            for bucket_name, package_name, vuln_id, entry_value in mapped.entries:
                bucket, package = bucket_name.encode(), package_name.encode()
                if _SEP in package or _SEP in bucket:
                    result.skipped["NUL byte in a package name"] += 1
                    continue
                first = result.bucket_sources.get(bucket_name)
                if first is None or source.id < first.id:
                    result.bucket_sources[bucket_name] = source
                row = _SEP.join((bucket, package, vuln_id.encode(), feed, aid, _dumps(entry_value)))
                rows.append(row)
                held += len(row)
            value = _dumps(mapped.vulnerability)
            for key in keys:
                row = _SEP.join((_VULN_ROOT, b"", key, feed, aid, value))
                rows.append(row)
                held += len(row)
            self._held += held + _ROW_OVERHEAD * (len(rows) - first_row)
            if self._held >= self.budget:
                self.spill()

    def spill(self) -> None:
        """Sort the held rows and write them as one run file."""
        if not self._rows:
            return
        rows = self._rows
        rows.sort()
        path = self.scratch / f"{self.prefix}-{len(self.runs):05d}"
        roots: dict[bytes, tuple[int, int]] = {}
        with path.open("wb") as fh:
            first = 0
            while first < len(rows):
                root = rows[first][: rows[first].index(_SEP)]
                # The first row of the next root: every row of this one sorts below it.
                end = bisect.bisect_left(rows, root + b"\x01", first)
                start = fh.tell()
                for block in range(first, end, _BLOCK):
                    pickle.dump(
                        rows[block : min(block + _BLOCK, end)], fh, protocol=pickle.HIGHEST_PROTOCOL
                    )
                roots[root] = (start, fh.tell())
                first = end
        self.result.rows += len(rows)
        self.runs.append(_Run(path, roots))
        rows.clear()  # in place: map_batch holds this list
        self._held = 0


def _worker(tasks: Any, results: Any, scratch: str, prefix: str, budget: int) -> None:
    """A mapping process: batches from ``tasks`` until None, then ``("done", result, runs)``
    on ``results``, or ``("error", error class, message)``."""
    try:
        mapper = _Mapper(Path(scratch), prefix, budget)
        while (batch := tasks.get()) is not None:
            mapper.map_batch(batch)
        mapper.spill()
        results.put(("done", mapper.result, mapper.runs))
    except ExportCenterError as e:  # our own errors keep their class (and exit code)
        results.put(("error", type(e), e.message))
    except BaseException:
        trace = traceback.format_exc()
        results.put(("error", ExportCenterError, f"trivy.db mapping process failed:\n{trace}"))


def _read_run(path: Path, start: int, end: int) -> Iterator[Row]:
    """The rows of ``path`` between the byte offsets ``start`` and ``end`` (one root's)."""
    # Our own run files, written by _Mapper in this same run: pickle is safe here.
    # Opened for writing too: only a writable file's pages can be released.
    with path.open("r+b") as fh:
        fh.seek(start)
        held = start  # read, not released yet: from here to the file position
        while (pos := fh.tell()) < end:
            if pos - held >= _RELEASE_EVERY:
                # Read once and deleted after the merge: its memory can serve the next write.
                held = release(fh.fileno(), held, pos)
            block: list[Row] = pickle.load(fh)  # noqa: S301
            yield from block
        release(fh.fileno(), held, end)


def _batches(
    advisories: Iterable[tuple[str, AdvisoryInput]], source_of: Callable[[str], DataSource]
) -> Iterator[list[tuple[DataSource, AdvisoryInput]]]:
    it = iter(advisories)
    while True:
        batch = [(source_of(name), adv) for name, adv in itertools.islice(it, BATCH)]
        if not batch:
            return
        yield batch


def _shippable(
    batch: list[tuple[DataSource, AdvisoryInput]],
) -> list[tuple[DataSource, AdvisoryInput]]:
    # Worker processes get bytes: the model and dicts are serialized once here.
    return [
        (source, adv if isinstance(adv, bytes) else orjson.dumps(_decoded(adv)))
        for source, adv in batch
    ]


def _map_all(
    batches: Iterator[list[tuple[DataSource, AdvisoryInput]]], scratch: Path, workers: int
) -> tuple[_BatchResult, list[_Run]]:
    """Every batch mapped into sorted run files. Up to one run's worth of input is mapped in
    this process; beyond that, ``workers`` processes (when more than one) take the rest."""
    mapper = _Mapper(scratch, "main", RUN_BUDGET)
    for batch in batches:
        mapper.map_batch(batch)
        if mapper.runs and workers > 1:
            # A large input: hand the rest to worker processes.
            mapper.spill()
            total, runs = _map_in_workers(batches, scratch, workers)
            total.add(mapper.result)
            return total, [*mapper.runs, *runs]
    mapper.spill()
    return mapper.result, mapper.runs


def _reported(got: tuple[Any, ...]) -> ExportCenterError:
    _kind, cls, message = got
    return cls.reported(message)  # type: ignore[no-any-return]


def _map_in_workers(
    batches: Iterator[list[tuple[DataSource, AdvisoryInput]]], scratch: Path, workers: int
) -> tuple[_BatchResult, list[_Run]]:
    """Raises:
    ExportCenterError: a worker failed (its error, with its class when it is one of ours) or
        died; every worker is stopped and nothing is left waiting on a queue.
    """
    # "spawn": a clean interpreter per worker, safe whatever threads the caller runs.
    context = multiprocessing.get_context("spawn")
    tasks = context.Queue(maxsize=workers * _IN_FLIGHT)
    results = context.Queue()
    procs = [
        context.Process(
            target=_worker,
            args=(tasks, results, str(scratch), f"w{i}", RUN_BUDGET),
            daemon=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    finished = False
    done: list[tuple[Any, ...]] = []

    def failure() -> ExportCenterError | None:
        # A worker reported an error, or one is gone without reporting anything.
        while True:
            try:
                got = results.get_nowait()
            except queue.Empty:
                break
            if got[0] == "error":
                return _reported(got)
            done.append(got)
        dead = [p for p in procs if not p.is_alive() and p.exitcode != 0]
        if dead:
            return ExportCenterError(
                f"a trivy.db mapping process died (exit code {dead[0].exitcode})"
            )
        return None

    try:
        for batch in itertools.chain(batches, [None] * workers):  # None: no more work
            item = None if batch is None else _shippable(batch)
            while True:
                try:
                    tasks.put(item, timeout=1.0)
                    break
                except queue.Full:
                    if (error := failure()) is not None:
                        raise error from None
        while len(done) < workers:
            try:
                got = results.get(timeout=1.0)
            except queue.Empty:
                if (error := failure()) is not None:
                    raise error from None
                if not any(p.is_alive() for p in procs) and results.empty():
                    raise ExportCenterError(
                        "trivy.db mapping processes ended without a result"
                    ) from None
                continue
            if got[0] == "error":
                raise _reported(got) from None
            done.append(got)
        for proc in procs:
            proc.join()
        finished = True
    finally:
        if not finished:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                proc.join()
            # Items still buffered for dead readers: do not wait at exit to flush them.
            tasks.cancel_join_thread()
            results.cancel_join_thread()
        tasks.close()
        results.close()
    total = _BatchResult()
    runs: list[_Run] = []
    for _kind, result, worker_runs in done:
        total.add(result)
        runs.extend(worker_runs)
    return total, sorted(runs, key=lambda r: r.path)


# ---- merge: sorted runs → trivy.db ---------------------------------------------------------


def _grouped(rows: Iterator[Row]) -> Iterator[tuple[bytes, bytes, list[bytes]]]:
    """Consecutive rows (of one root bucket) sharing package and vulnerability id: (package,
    id, values in feed id, advisory id, value order)."""
    current: tuple[bytes, bytes] | None = None
    values: list[bytes] = []
    for row in rows:
        _root, package, vuln_id, _src, _aid, value = row.split(_SEP, 5)
        head = (package, vuln_id)
        if head != current:
            if current is not None:
                yield (*current, values)
            current, values = head, []
        values.append(value)
    if current is not None:
        yield (*current, values)


def _merged(values: list[bytes], merge: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> bytes:
    if len(values) == 1:
        return values[0]
    return _dumps(merge([orjson.loads(v) for v in values]))


#: Where one root bucket's rows are: (run file, start, end) of each run holding some.
_Segments = list[tuple[Path, int, int]]


def _segments(runs: list[_Run], root: bytes) -> _Segments:
    return [(run.path, *run.roots[root]) for run in runs if root in run.roots]


def _fill_root(bucket: BucketWriter, segments: _Segments) -> tuple[int, int, int]:
    """Write one root bucket from its rows: (entries, merged entries, vulnerabilities)."""
    groups = _grouped(heapq.merge(*(_read_run(*segment) for segment in segments)))
    if bucket.name == _VULN_ROOT:
        vulns = bucket.put_all(
            (vuln_id, _merged(values, merge_vulnerability_values))
            for _pkg, vuln_id, values in groups
        )
        return 0, 0, vulns
    entries = merged = 0
    pkg: bytes | None = None
    items: list[tuple[bytes, bytes]] = []
    for package, vuln_id, values in groups:
        if package != pkg:
            if pkg is not None:
                bucket.put_bucket(pkg, items)
            pkg, items = package, []
        items.append((vuln_id, _merged(values, merge_advisory_values)))
        entries += 1
        merged += len(values) > 1
    if pkg is not None:
        bucket.put_bucket(pkg, items)
    return entries, merged, 0


def _encode_root(path: str, root: bytes, segments: _Segments) -> tuple[Any, ...]:
    """In a merging process: one root bucket encoded apart (:func:`encode_bucket`), as
    ``("done", EncodedBucket, counts)`` or ``("error", error class, message)``."""
    try:
        counts = (0, 0, 0)

        def fill(bucket: BucketWriter) -> None:
            nonlocal counts
            counts = _fill_root(bucket, segments)

        return ("done", encode_bucket(Path(path), root, fill), counts)
    except ExportCenterError as e:  # our own errors keep their class (and exit code)
        return ("error", type(e), e.message)
    except BaseException:
        trace = traceback.format_exc()
        return ("error", ExportCenterError, f"trivy.db merging process failed:\n{trace}")


def _merge_order(tasks: dict[bytes, _Segments], processes: int) -> list[tuple[int, bytes]]:
    """(index, root) in the order they are handed to ``processes`` merging processes: the
    largest roots first, one for each process but one (the longest tasks must start first),
    then the others in root order, so that those are done, and placed, in the order they are
    placed in rather than all at the end behind the first one still running."""
    sizes = {root: sum(end - start for _p, start, end in segs) for root, segs in tasks.items()}
    indexed = list(enumerate(tasks))
    first = sorted(indexed, key=lambda item: -sizes[item[1]])[: processes - 1]
    return first + [item for item in indexed if item not in first]


def _write_roots_in_processes(
    db: BoltWriter,
    roots: list[bytes],
    runs: list[_Run],
    write_here: Callable[[BucketWriter], None],
    scratch: Path,
    workers: int,
) -> tuple[int, int, int]:
    """Every root bucket but ``data-source`` (which ``write_here`` fills) merged and encoded in
    ``workers`` processes (:func:`_merge_order`); this process places each in root order as
    soon as it is done (:meth:`BoltWriter.put_encoded`): the bytes of writing them here, one
    after another.

    Raises:
        ExportCenterError: a merging process failed (its error, with its class when it is one
            of ours) or died; the others are stopped.
    """
    tasks = {root: _segments(runs, root) for root in roots if root != _DS_ROOT}
    n_procs = min(workers, len(tasks))
    entries = merged = vulns = 0
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=n_procs, mp_context=context)
    try:
        futures = {
            root: pool.submit(_encode_root, str(scratch / f"bucket-{i:04d}"), root, tasks[root])
            for i, root in _merge_order(tasks, n_procs)
        }
        for root in roots:
            if root == _DS_ROOT:
                with db.bucket(root) as bucket:
                    write_here(bucket)
                continue
            try:
                got = futures[root].result()
            except BrokenProcessPool:
                raise ExportCenterError("a trivy.db merging process died") from None
            if got[0] == "error":
                raise _reported(got)
            _kind, encoded, (e, m, v) = got
            db.put_encoded(encoded)
            if encoded.path is not None:
                encoded.path.unlink()
            entries, merged, vulns = entries + e, merged + m, vulns + v
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return entries, merged, vulns


def _default_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 8))


def write_trivy_db(
    advisories: Iterable[tuple[str, AdvisoryInput]],
    out: Path,
    *,
    sources: Mapping[str, DataSource] | None = None,
    work_dir: Path | None = None,
    workers: int | None = None,
    durable: bool = True,
) -> TrivyDbReport:
    """Write ``trivy.db`` at ``out`` (atomically) from ``(feed name, advisory)`` pairs.

    ``sources`` gives the :class:`DataSource` (id, name, URL) of feed names; other feeds get
    :func:`~export_center.trivy.mapping.data_source_for`. Language advisories go to
    ``<ecosystem>::<DataSource.name>``. ``work_dir`` holds the temporary run files (default:
    next to ``out``). ``workers`` is the number of mapping processes for inputs of more than one
    batch (default: the usable CPUs, at most 8); the bytes do not depend on it. ``durable=False``
    skips the fsync of ``out`` (for an intermediate file). The ``vulnerability`` bucket is always
    written, even empty: Trivy fails on a finding when it is missing.

    Raises:
        BadInputError: two feeds map to the same data source id, an advisory given as bytes is
            not a JSON object, or the bbolt writer refused a key (a bug: the sort guarantees
            the order).
        ExportCenterError: a mapping process failed or died (its error, with its class when it
            is one of ours); ``out`` is then not written and the run files are removed.
    """
    ids: dict[str, str] = {}
    for name, source in (sources or {}).items():
        if ids.setdefault(source.id, name) != name:
            raise BadInputError(
                f"feeds {ids[source.id]!r} and {name!r} share the data source id {source.id!r}"
            )
    known: dict[str, DataSource] = dict(sources or {})

    def source_of(name: str) -> DataSource:
        source = known.get(name)
        if source is None:
            source = known[name] = data_source_for(name)
        return source

    scratch_parent = work_dir if work_dir is not None else out.parent
    with tempfile.TemporaryDirectory(prefix=".trivy-db-", dir=scratch_parent) as scratch:
        n_workers = workers if workers is not None else _default_workers()
        total, runs = _map_all(_batches(advisories, source_of), Path(scratch), n_workers)
        log.info(
            "mapped %d advisories (%d with entries) into %d runs",
            total.read,
            total.mapped,
            len(runs),
        )
        bucket_sources = total.bucket_sources
        roots = sorted({*(b.encode() for b in bucket_sources), _DS_ROOT, _VULN_ROOT})
        # Every row belongs to one of ``roots``.
        assert {r for run in runs for r in run.roots} <= set(roots), "a row outside the roots"

        def write_data_sources(bucket: BucketWriter) -> None:
            for name in sorted(bucket_sources, key=str.encode):
                bucket.put(name.encode(), _dumps(data_source_value(bucket_sources[name])))

        entries = merged = vulns = 0
        with BoltWriter(out, durable=durable) as db:
            if len(runs) > 1 and n_workers > 1:
                # A large input: the serial merge was most of the time left (issue 16).
                entries, merged, vulns = _write_roots_in_processes(
                    db, roots, runs, write_data_sources, Path(scratch), n_workers
                )
            else:
                for root in roots:
                    with db.bucket(root) as bucket:
                        if root == _DS_ROOT:
                            write_data_sources(bucket)
                            continue
                        e, m, v = _fill_root(bucket, _segments(runs, root))
                        entries, merged, vulns = entries + e, merged + m, vulns + v
    return TrivyDbReport(
        advisories=total.read,
        mapped=total.mapped,
        entries=entries,
        merged_entries=merged,
        vulnerabilities=vulns,
        buckets=tuple(sorted(bucket_sources, key=str.encode)),
        skipped=tuple(sorted(total.skipped.items())),
        dropped=tuple(sorted(total.dropped.items())),
    )


# --------------------------------------------------------------------------------------------
# metadata.json and the archive


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise BadInputError(f"{moment!r} has no time zone", hint="pass an aware UTC datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata_json(
    as_of: datetime, validity: timedelta, *, version: int = DB_SCHEMA_VERSION
) -> bytes:
    """Trivy's ``metadata.json``: ``UpdatedAt`` and ``DownloadedAt`` are the as-of time,
    ``NextUpdate`` is as-of + ``validity``. Trivy skips re-downloading until NextUpdate.

    Raises:
        BadInputError: ``as_of`` is naive, or ``validity`` is negative.
    """
    if validity < timedelta(0):
        raise BadInputError(f"validity {validity} is negative")
    updated = _rfc3339(as_of)
    doc = {
        "Version": version,
        "NextUpdate": _rfc3339(as_of + validity),
        "UpdatedAt": updated,
        "DownloadedAt": updated,
    }
    # Trivy's own field order; no trailing newline, as Trivy writes it.
    return orjson.dumps(doc)


def write_db_archive(
    out: Path,
    db_file: Path,
    metadata: bytes,
    *,
    db_name: str = "trivy.db",
    mtime: int | None = None,
) -> str:
    """Write Trivy's OCI layer archive at ``out`` (atomically): a gzip tar holding ``db_name``
    and ``metadata.json`` at top level, deterministic (sorted names, uid/gid 0, fixed mtime,
    gzip header without name or time; see :mod:`export_center.archive.writer`).

    Returns the archive's ``sha256:`` digest.

    Raises:
        BadInputError: from the archive writer (bad names or sizes).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            result = write_tree(
                fh,
                [("metadata.json", metadata), (db_name, FileSource.from_path(db_file))],
                compression="gzip",
                mtime=mtime,
            )
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result.digest
