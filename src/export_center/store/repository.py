"""The evidence store: ingest records, read them as of a sequence, read change ranges.

Every query takes the tenant as a required argument and filters on it: there is no query path
that can return another tenant's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from export_center.errors import BadInputError, NotFoundError
from export_center.model import ParsedRecord, to_json_dict
from export_center.store.db import make_engine, migrate, unreachable
from export_center.store.models import (
    Base,
    ChangeLogEntry,
    NormalizedRecord,
    RawRecord,
    Tenant,
)
from export_center.store.writer import (
    IngestOutcome,
    IngestWriter,
    TenantCursor,
    canonical_json,
    index_of,
    index_rows,
    lock_tenant,
    prepare,
    record_key,
    write_batch,
)
from export_center.tenants import check_tenant as check_tenant  # re-exported: its old home

__all__ = [
    "ChangeView",
    "EvidenceStore",
    "IngestOutcome",
    "NormalizedView",
    "RawView",
    "StatRow",
    "TenantCursor",
    "canonical_json",
    "check_source",
    "check_tenant",
    "observation_id",
]

Outcome = Literal["inserted", "revision", "withdrawal", "unchanged"]
_STREAM_BATCH = 500
_Sel = TypeVar("_Sel", bound=Select)  # type: ignore[type-arg]


def observation_id(tenant: str, source: str, upstream_id: str, revision: int) -> str:
    return f"{tenant}:{source}:{upstream_id}:{revision}"


def check_source(source: str) -> str:
    if not source or len(source) > 128 or any(c in source for c in ":/\\\n\r\t\0"):
        raise BadInputError(
            f"invalid source name {source!r}: "
            "1-128 characters, no ':', '/', '\\' or control characters"
        )
    return source


_TABLES = Base.metadata.tables
_RAW = _TABLES["raw_records"]
_NORM = _TABLES["normalized_records"]
_INSERT_NORM = insert(_NORM).returning(_NORM.c.id)
_INSERT_ADVPKG = insert(_TABLES["advisory_packages"])
_INSERT_VEX = insert(_TABLES["vex_statements"])
_INSERT_COMP = insert(_TABLES["sbom_components"])
# The columns of RawView, in its field order.
_RAW_VIEW_COLUMNS = [
    _RAW.c.id,
    _RAW.c.tenant,
    _RAW.c.source,
    _RAW.c.upstream_id,
    _RAW.c.revision,
    _RAW.c.observation_id,
    _RAW.c.doc_type,
    _RAW.c.format,
    _RAW.c.media_type,
    _RAW.c.digest,
    _RAW.c.size,
    _RAW.c.content,
    _RAW.c.withdrawn,
    _RAW.c.seq,
    _RAW.c.supersedes,
]


class RawView(NamedTuple):
    """A raw record as exports see it (content included). A named tuple, not a dataclass:
    exports make one per record, and a tuple is the cheapest immutable object to build."""

    id: int
    tenant: str
    source: str
    upstream_id: str
    revision: int
    observation_id: str
    doc_type: str
    format: str
    media_type: str
    digest: str
    size: int
    content: bytes
    withdrawn: bool
    seq: int
    supersedes: str | None


@dataclass(frozen=True)
class NormalizedView:
    raw_id: int
    source: str
    observation_id: str
    record_type: str
    record_key: str
    data: str  # canonical JSON of the normalized record
    withdrawn: bool
    seq: int


@dataclass(frozen=True)
class ChangeView:
    seq: int
    kind: str
    observation_id: str
    previous_observation_id: str | None
    doc_type: str
    at: datetime


@dataclass(frozen=True)
class StatRow:
    tenant: str
    source: str
    doc_type: str
    records: int
    withdrawn: int
    bytes: int


class EvidenceStore:
    """Facade over the database. Thread-safe; one per process is enough."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        #: A SQLite file of this machine: a short read answers in well under a millisecond
        #: and, in WAL mode, never waits for a writer (the API runs such reads inline).
        self.embedded = engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True) -> EvidenceStore:
        """The store at ``url``, its schema brought up to date.

        Raises:
            ConfigError, BadInputError: a bad URL, or a SQLite directory that cannot be made.
            ServiceUnavailableError: the database cannot be opened.
        """
        engine = make_engine(url)
        if run_migrations:
            try:
                migrate(engine)
            except OperationalError as e:
                raise unreachable(engine, e) from e
        return cls(engine)

    def session(self) -> Session:
        return self._sessions()

    # ---- writing -------------------------------------------------------------------------

    def lock_tenant(self, session: Session, tenant: str) -> TenantCursor:
        """Get (creating if needed) and lock the tenant's counter for this transaction.

        The lock is what makes sequences visible in order: a second writer of the same tenant
        waits until the first commits (PostgreSQL ``FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``,
        see :func:`~export_center.store.writer.begin_write`). Call again after every commit.
        """
        check_tenant(tenant)
        return lock_tenant(session.connection(), tenant)

    def writer(
        self, tenant: str, source: str, *, clock: Callable[[], datetime] | None = None
    ) -> IngestWriter:
        """The batched writer of ``source`` into ``tenant`` (a context manager).

        Raises:
            BadInputError: the tenant or source name is invalid.
        """
        check_tenant(tenant)
        check_source(source)
        if clock is None:
            return IngestWriter(self.engine.connect, tenant, source)
        return IngestWriter(self.engine.connect, tenant, source, clock=clock)

    def put(
        self,
        session: Session,
        cursor: TenantCursor,
        source: str,
        record: ParsedRecord,
        *,
        now: datetime | None = None,
    ) -> IngestOutcome:
        """Store one parsed record inside the caller's transaction (tenant locked by
        :meth:`lock_tenant`). Identical bytes are a no-op; new bytes make a new revision; the
        identity rule of :mod:`export_center.store.identity` applies as in batches.
        """
        check_source(source)
        return write_batch(session.connection(), cursor, source, [prepare(record)], now=now)[0]

    def _put_normalized(
        self,
        conn: Connection,
        tenant: str,
        raw_id: int,
        record: ParsedRecord,
        *,
        data: str | None = None,
    ) -> None:
        """The normalized row and index rows of one raw record. ``data``, when given, is the
        exact normalized JSON to store (the air-gap importer keeps the exporter's bytes)."""
        norm = record.normalized
        norm_id = conn.execute(
            _INSERT_NORM,
            {
                "raw_id": raw_id,
                "tenant": tenant,
                "record_type": record.doc_type,
                "record_key": record_key(norm),
                "data": data if data is not None else canonical_json(to_json_dict(norm)),
            },
        ).scalar_one()
        advpkg, vex, comp = index_rows(index_of(norm), tenant, norm_id)
        for stmt, rows in ((_INSERT_ADVPKG, advpkg), (_INSERT_VEX, vex), (_INSERT_COMP, comp)):
            if rows:
                conn.execute(stmt, rows)

    # ---- reading -------------------------------------------------------------------------

    def current_sequence(self, tenant: str) -> int:
        with self.session() as s:
            seq = s.execute(select(Tenant.last_seq).where(Tenant.name == tenant)).scalar()
            return int(seq or 0)

    def sequence_time(self, tenant: str, seq: int) -> datetime | None:
        """The time the change with sequence ``seq`` was recorded (the as-of time)."""
        with self.session() as s:
            at = s.execute(
                select(ChangeLogEntry.at).where(
                    ChangeLogEntry.tenant == tenant, ChangeLogEntry.seq == seq
                )
            ).scalar()
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # SQLite drops the zone; we always store UTC
        return at

    def _bytewise(self, col: Any) -> Any:
        """Order strings bytewise on every backend (PostgreSQL's default collation is not)."""
        return col.collate("C") if self.engine.dialect.name == "postgresql" else col

    def _export_order(self) -> tuple[Any, ...]:
        return (
            RawRecord.doc_type,
            self._bytewise(RawRecord.source),
            self._bytewise(RawRecord.upstream_id),
        )

    @staticmethod
    def _as_of(stmt: _Sel, tenant: str, as_of: int) -> _Sel:
        return stmt.where(
            RawRecord.tenant == tenant,
            RawRecord.seq <= as_of,
            or_(RawRecord.superseded_seq.is_(None), RawRecord.superseded_seq > as_of),
        )

    def _export_query(
        self,
        stmt: _Sel,
        tenant: str,
        as_of: int,
        doc_type: str | None,
        sources: Sequence[str] | None,
        include_withdrawn: bool,
    ) -> _Sel:
        """The as-of filter, the optional type/source/withdrawn filters, and export order."""
        stmt = self._as_of(stmt, tenant, as_of)
        if doc_type:
            stmt = stmt.where(_RAW.c.doc_type == doc_type)
        if sources:
            stmt = stmt.where(_RAW.c.source.in_(list(sources)))
        if not include_withdrawn:
            stmt = stmt.where(_RAW.c.withdrawn.is_(False))
        return stmt.order_by(*self._export_order())

    def iter_raw(
        self,
        tenant: str,
        as_of: int,
        *,
        doc_type: str | None = None,
        sources: Sequence[str] | None = None,
        include_withdrawn: bool = True,
    ) -> Iterator[RawView]:
        """Stream the records visible at ``as_of``, ordered by (doc_type, source, upstream_id)."""
        for view, _data in self._stream_raw(
            tenant, as_of, doc_type, sources, include_withdrawn, with_normalized=False
        ):
            yield view

    def _stream_raw(
        self,
        tenant: str,
        as_of: int,
        doc_type: str | None,
        sources: Sequence[str] | None,
        include_withdrawn: bool,
        *,
        with_normalized: bool,
    ) -> Iterator[tuple[RawView, str]]:
        # Core rows, not ORM entities: exports stream every record, and building and expunging
        # an ORM object per row cost more than the query itself.
        columns = [*_RAW_VIEW_COLUMNS, _NORM.c.data] if with_normalized else _RAW_VIEW_COLUMNS
        stmt = select(*columns)
        if with_normalized:
            stmt = stmt.join(_NORM, _NORM.c.raw_id == _RAW.c.id)
        stmt = self._export_query(stmt, tenant, as_of, doc_type, sources, include_withdrawn)
        n = len(_RAW_VIEW_COLUMNS)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=_STREAM_BATCH).execute(
                stmt
            )
            for row in result:
                yield _row_view(row), (row[n] if with_normalized else "")

    def iter_normalized(
        self,
        tenant: str,
        as_of: int,
        *,
        record_type: str | None = None,
        sources: Sequence[str] | None = None,
        include_withdrawn: bool = True,
    ) -> Iterator[NormalizedView]:
        """Stream normalized records visible at ``as_of`` ordered by (type, source, upstream id)."""
        stmt = self._export_query(
            select(
                NormalizedRecord.raw_id,
                RawRecord.source,
                RawRecord.observation_id,
                NormalizedRecord.record_type,
                NormalizedRecord.record_key,
                NormalizedRecord.data,
                RawRecord.withdrawn,
                RawRecord.seq,
            ).join(RawRecord, RawRecord.id == NormalizedRecord.raw_id),
            tenant,
            as_of,
            record_type,
            sources,
            include_withdrawn,
        )
        with self.session() as s:
            for row in s.execute(stmt.execution_options(yield_per=_STREAM_BATCH)):
                yield NormalizedView(*row)

    def iter_records(
        self,
        tenant: str,
        as_of: int,
        *,
        doc_type: str,
        sources: Sequence[str] | None = None,
    ) -> Iterator[tuple[RawView, str]]:
        """Stream (raw record, normalized JSON) pairs visible at ``as_of`` for one type, in
        bytewise (source, upstream id) order: the order export shards are written in."""
        return self._stream_raw(tenant, as_of, doc_type, sources, True, with_normalized=True)

    def changes(self, tenant: str, after: int, upto: int) -> Iterator[ChangeView]:
        """Change-log entries with ``after < seq <= upto``, in sequence order."""
        stmt = (
            select(
                ChangeLogEntry.seq,
                ChangeLogEntry.kind,
                ChangeLogEntry.observation_id,
                ChangeLogEntry.previous_observation_id,
                ChangeLogEntry.doc_type,
                ChangeLogEntry.at,
            )
            .where(
                ChangeLogEntry.tenant == tenant,
                and_(ChangeLogEntry.seq > after, ChangeLogEntry.seq <= upto),
            )
            .order_by(ChangeLogEntry.seq)
        )
        with self.session() as s:
            for row in s.execute(stmt.execution_options(yield_per=_STREAM_BATCH)):
                yield ChangeView(*row)

    def get_raw(self, tenant: str, obs_or_upstream: str) -> RawView:
        """One record by observation id, or the current revision of an upstream id.

        Raises:
            NotFoundError: no such record for this tenant.
        """
        by_obs = select(*_RAW_VIEW_COLUMNS).where(
            _RAW.c.tenant == tenant, _RAW.c.observation_id == obs_or_upstream
        )
        by_upstream = (
            select(*_RAW_VIEW_COLUMNS)
            .where(
                _RAW.c.tenant == tenant,
                _RAW.c.upstream_id == obs_or_upstream,
                _RAW.c.superseded_seq.is_(None),
            )
            .order_by(self._bytewise(_RAW.c.source))
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(by_obs).one_or_none() or conn.execute(by_upstream).one_or_none()
        if row is None:
            raise NotFoundError(f"no record {obs_or_upstream!r} for tenant {tenant!r}")
        return _row_view(row)

    def records_by_id(self, tenant: str, raw_ids: Sequence[int]) -> dict[int, tuple[RawView, str]]:
        """(raw record, normalized JSON) for each of ``raw_ids`` that belongs to ``tenant``."""
        stmt = (
            select(*_RAW_VIEW_COLUMNS, _NORM.c.data)
            .join(_NORM, _NORM.c.raw_id == _RAW.c.id)
            .where(_RAW.c.tenant == tenant, _RAW.c.id.in_(list(raw_ids)))
        )
        n = len(_RAW_VIEW_COLUMNS)
        with self.engine.connect() as conn:
            return {row[0]: (_row_view(row), row[n]) for row in conn.execute(stmt)}

    def get_normalized(self, tenant: str, raw_id: int) -> str | None:
        with self.session() as s:
            return s.execute(
                select(NormalizedRecord.data).where(
                    NormalizedRecord.tenant == tenant, NormalizedRecord.raw_id == raw_id
                )
            ).scalar_one_or_none()

    def stats(self, tenant: str | None = None, as_of: int | None = None) -> list[StatRow]:
        """Current record counts per tenant, source and type (or as of a sequence)."""
        stmt = select(
            RawRecord.tenant,
            RawRecord.source,
            RawRecord.doc_type,
            func.count(),
            func.sum(func.cast(RawRecord.withdrawn, type_=Integer)),
            func.sum(RawRecord.size),
        )
        if tenant is not None:
            if as_of is not None:
                stmt = self._as_of(stmt, tenant, as_of)
            else:
                stmt = stmt.where(RawRecord.tenant == tenant, RawRecord.superseded_seq.is_(None))
        else:
            stmt = stmt.where(RawRecord.superseded_seq.is_(None))
        stmt = stmt.group_by(RawRecord.tenant, RawRecord.source, RawRecord.doc_type).order_by(
            RawRecord.tenant, RawRecord.source, RawRecord.doc_type
        )
        with self.session() as s:
            return [
                StatRow(t, src, dt, int(n), int(w or 0), int(b or 0))
                for t, src, dt, n, w, b in s.execute(stmt)
            ]

    def counts(self, tenant: str, as_of: int) -> dict[str, int]:
        """Records per doc type visible at ``as_of``."""
        stmt = self._as_of(
            select(RawRecord.doc_type, func.count()).group_by(RawRecord.doc_type), tenant, as_of
        )
        with self.session() as s:
            return {dt: int(n) for dt, n in s.execute(stmt)}


def _row_view(row: Any) -> RawView:
    values = list(row[: len(_RAW_VIEW_COLUMNS)])
    if type(values[11]) is not bytes:
        values[11] = bytes(values[11])  # content: memoryview on some drivers
    if type(values[12]) is not bool:
        values[12] = bool(values[12])  # withdrawn: 0/1 on SQLite
    return _new_view(RawView, values)


_new_view = tuple.__new__  # RawView from a sequence of its values, without a Python call
