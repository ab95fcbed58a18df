"""Build Trivy's vulnerability database: ``trivy.db``, ``metadata.json`` and ``db.tar.gz``.

Advisories arrive one at a time, in any order; bbolt wants every bucket's keys in order. The
writer therefore sorts externally: each advisory's entries go into a temporary SQLite file
(its B-tree sort spills to disk, so memory stays flat for a million advisories), then one
ordered pass streams them into :class:`~export_center.trivy.bbolt.BoltWriter`.

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

import logging
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from export_center.archive.writer import FileSource, write_tree
from export_center.errors import BadInputError
from export_center.model import Advisory
from export_center.trivy.bbolt import BoltWriter, BucketWriter
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

__all__ = [
    "DB_SCHEMA_VERSION",
    "TrivyDbReport",
    "metadata_json",
    "write_db_archive",
    "write_trivy_db",
]

log = logging.getLogger(__name__)

#: trivy.db schema version Trivy v0.76 requires (metadata.json "Version").
DB_SCHEMA_VERSION = 2

_BATCH = 5000


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


def write_trivy_db(
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
