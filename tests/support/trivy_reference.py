"""The reference trivy.db writer: the straightforward pipeline the optimized one replaced.

Each advisory is mapped in this process from the model (:func:`map_advisory`), staged in a
temporary SQLite file and read back with one ``ORDER BY`` into the bbolt writer. It is kept
here, in the tests, as the yardstick of ``export_center.trivy.dbwriter`` (worker processes,
sorted spill runs, mapping straight from JSON): both must write the same bytes
(tests/trivy/test_dbwriter_reference.py).
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from export_center.errors import BadInputError
from export_center.model import Advisory
from export_center.trivy.bbolt import BoltWriter, BucketWriter
from export_center.trivy.dbwriter import TrivyDbReport
from export_center.trivy.mapping import (
    DATA_SOURCE_BUCKET,
    VULNERABILITY_BUCKET,
    DataSource,
    data_source_for,
    data_source_value,
    map_advisory,
    merge_advisory_values,
    merge_vulnerability_values,
)

log = logging.getLogger(__name__)

_BATCH = 5000


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _open_staging(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # A scratch file: no journal, no fsync; sorts and indexes spill to disk, not memory.
    conn.executescript(
        """
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        PRAGMA temp_store = FILE;
        PRAGMA cache_size = -16384;
        CREATE TABLE adv(bucket BLOB, pkg BLOB, vkey BLOB, src BLOB, aid BLOB, value BLOB);
        CREATE TABLE vuln(vkey BLOB, src BLOB, aid BLOB, value BLOB);
        """
    )
    return conn


def _stage(
    conn: sqlite3.Connection,
    advisories: Iterable[tuple[str, Advisory]],
    sources: Mapping[str, DataSource],
) -> tuple[int, int, Counter[str], Counter[str], dict[str, DataSource]]:
    """Map every advisory into the staging tables; returns (read, mapped, skipped reasons,
    dropped-clause reasons, data source of each advisory bucket)."""
    read = mapped = 0
    skipped: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    bucket_sources: dict[str, DataSource] = {}
    known: dict[str, DataSource] = dict(sources)
    adv_rows: list[tuple[bytes, ...]] = []
    vuln_rows: list[tuple[bytes, ...]] = []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO adv VALUES (?, ?, ?, ?, ?, ?)", adv_rows)
        conn.executemany("INSERT INTO vuln VALUES (?, ?, ?, ?)", vuln_rows)
        conn.execute("COMMIT")
        adv_rows.clear()
        vuln_rows.clear()

    for source_name, advisory in advisories:
        read += 1
        source = known.get(source_name)
        if source is None:
            source = known[source_name] = data_source_for(source_name)
        result = map_advisory(advisory, source)
        skipped.update(result.skipped)
        dropped.update(result.dropped)
        if not result.entries or result.vulnerability is None:
            continue
        mapped += 1
        src = source.id.encode()
        aid = advisory.id.encode()
        for entry in result.entries:
            held = bucket_sources.get(entry.bucket)
            if held is None or source.id < held.id:
                bucket_sources[entry.bucket] = source
            adv_rows.append(
                (
                    entry.bucket.encode(),
                    entry.package.encode(),
                    entry.vuln_id.encode(),
                    src,
                    aid,
                    _dumps(entry.value),
                )
            )
        vuln_value = _dumps(result.vulnerability)
        for vuln_id in result.vuln_ids:
            vuln_rows.append((vuln_id.encode(), src, aid, vuln_value))
        if len(adv_rows) >= _BATCH:
            flush()
    flush()
    return read, mapped, skipped, dropped, bucket_sources


def _grouped(
    rows: Iterator[tuple[bytes, ...]], width: int
) -> Iterator[tuple[tuple[bytes, ...], list[bytes]]]:
    """Consecutive rows sharing their first ``width`` columns: (key columns, values)."""
    current: tuple[bytes, ...] | None = None
    values: list[bytes] = []
    for row in rows:
        key = row[:width]
        if key != current:
            if current is not None:
                yield current, values
            current, values = key, []
        values.append(row[-1])
    if current is not None:
        yield current, values


def _merged(values: list[bytes], merge: Any) -> bytes:
    if len(values) == 1:
        return values[0]
    return _dumps(merge([orjson.loads(v) for v in values]))


def _write_advisory_bucket(
    bucket: BucketWriter, rows: Iterator[tuple[bytes, ...]]
) -> tuple[int, int]:
    entries = merged = 0
    package: BucketWriter | None = None
    for (pkg, vkey), values in _grouped(rows, 2):
        if package is None or package.name != pkg:
            if package is not None:
                package.close()
            package = bucket.bucket(pkg)
        package.put(vkey, _merged(values, merge_advisory_values))
        entries += 1
        merged += len(values) > 1
    if package is not None:
        package.close()
    return entries, merged


def write_trivy_db_reference(
    advisories: Iterable[tuple[str, Advisory]],
    out: Path,
    *,
    sources: Mapping[str, DataSource] | None = None,
    work_dir: Path | None = None,
) -> TrivyDbReport:
    """Write ``trivy.db`` at ``out`` (atomically) from ``(feed name, advisory)`` pairs.

    ``sources`` gives the :class:`DataSource` (id, name, URL) of feed names; other feeds get
    :func:`~export_center.trivy.mapping.data_source_for`. Language advisories go to
    ``<ecosystem>::<DataSource.name>``. ``work_dir`` holds the temporary sort file (default:
    next to ``out``). The ``vulnerability`` bucket is always written, even empty: Trivy fails
    on a finding when it is missing.

    Raises:
        BadInputError: two feeds map to the same data source id, or the bbolt writer refused
            a key (a bug: the sort guarantees the order).
    """
    ids: dict[str, str] = {}
    for name, source in (sources or {}).items():
        if ids.setdefault(source.id, name) != name:
            raise BadInputError(
                f"feeds {ids[source.id]!r} and {name!r} share the data source id {source.id!r}"
            )
    scratch_parent = work_dir if work_dir is not None else out.parent
    with tempfile.TemporaryDirectory(prefix=".trivy-db-", dir=scratch_parent) as scratch:
        conn = _open_staging(Path(scratch) / "stage.sqlite")
        try:
            read, mapped, skipped, dropped, bucket_sources = _stage(conn, advisories, sources or {})
            log.info("staged %d advisories (%d mapped) for %s", read, mapped, out)
            entries = merged = vulns = 0
            roots = sorted(
                {*bucket_sources, DATA_SOURCE_BUCKET, VULNERABILITY_BUCKET},
                key=lambda name: name.encode(),
            )
            adv_rows = conn.execute(
                "SELECT bucket, pkg, vkey, value FROM adv"
                " ORDER BY bucket, pkg, vkey, src, aid, value"
            )
            staged = _Rows(adv_rows)
            with BoltWriter(out) as db:
                for root in roots:
                    with db.bucket(root.encode()) as bucket:
                        if root == DATA_SOURCE_BUCKET:
                            for name in sorted(bucket_sources, key=lambda n: n.encode()):
                                value = data_source_value(bucket_sources[name])
                                bucket.put(name.encode(), _dumps(value))
                        elif root == VULNERABILITY_BUCKET:
                            rows = conn.execute(
                                "SELECT vkey, value FROM vuln ORDER BY vkey, src, aid, value"
                            )
                            for (vkey,), values in _grouped(iter(rows), 1):
                                bucket.put(vkey, _merged(values, merge_vulnerability_values))
                                vulns += 1
                        else:
                            e, m = _write_advisory_bucket(bucket, staged.take(root.encode()))
                            entries += e
                            merged += m
                # Every staged row belongs to one of ``roots``, in the same order.
                assert staged.head is None, staged.head
        finally:
            conn.close()
    return TrivyDbReport(
        advisories=read,
        mapped=mapped,
        entries=entries,
        merged_entries=merged,
        vulnerabilities=vulns,
        buckets=tuple(sorted(bucket_sources, key=lambda n: n.encode())),
        skipped=tuple(sorted(skipped.items())),
        dropped=tuple(sorted(dropped.items())),
    )


class _Rows:
    """A cursor over rows sorted by their first column, read one first-column value at a time."""

    def __init__(self, rows: Iterable[tuple[bytes, ...]]) -> None:
        self._it = iter(rows)
        self.head: tuple[bytes, ...] | None = next(self._it, None)

    def take(self, first: bytes) -> Iterator[tuple[bytes, ...]]:
        """The rows whose first column is ``first`` (without it); must be read to the end."""
        while self.head is not None and self.head[0] == first:
            row = self.head
            self.head = next(self._it, None)
            yield row[1:]
