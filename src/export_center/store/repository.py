"""The evidence store: ingest records, read them as of a sequence, read change ranges.

Every query takes the tenant as a required argument and filters on it: there is no query path
that can return another tenant's rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, TypeVar

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from export_center.errors import BadInputError, NotFoundError
from export_center.model import Advisory, ParsedRecord, Sbom, VexDocument, to_json_dict
from export_center.store.db import make_engine, migrate
from export_center.store.models import (
    Base,
    ChangeLogEntry,
    NormalizedRecord,
    RawRecord,
    Tenant,
)

Outcome = Literal["inserted", "revision", "withdrawal", "unchanged"]
_TENANT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_STREAM_BATCH = 500
_Sel = TypeVar("_Sel", bound=Select)  # type: ignore[type-arg]


def canonical_json(value: Any) -> str:
    """Sorted-key compact JSON for normalized data (deterministic, not RFC 8785 for speed)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def observation_id(tenant: str, source: str, upstream_id: str, revision: int) -> str:
    return f"{tenant}:{source}:{upstream_id}:{revision}"


def check_tenant(tenant: str) -> str:
    if not tenant or len(tenant) > 64 or not set(tenant) <= _TENANT_CHARS:
        raise BadInputError(
            f"invalid tenant {tenant!r}: use 1-64 characters of a-z, 0-9, '-' and '_'"
        )
    return tenant


def check_source(source: str) -> str:
    if not source or len(source) > 128 or any(c in source for c in ":/\\\n\r\t\0"):
        raise BadInputError(
            f"invalid source name {source!r}: "
            "1-128 characters, no ':', '/', '\\' or control characters"
        )
    return source


# Prepared once: building statements per record costs more than executing them (SQLAlchemy
# compiles and caches by statement shape; parameters go separately).
_TABLES = Base.metadata.tables
_RAW = _TABLES["raw_records"]
_NORM = _TABLES["normalized_records"]
_TENANTS = _TABLES["tenants"]
_INSERT_RAW = insert(_RAW).returning(_RAW.c.id)
_INSERT_NORM = insert(_NORM).returning(_NORM.c.id)
_INSERT_ADVPKG = insert(_TABLES["advisory_packages"])
_INSERT_VEX = insert(_TABLES["vex_statements"])
_INSERT_COMP = insert(_TABLES["sbom_components"])
_INSERT_CHANGE = insert(_TABLES["change_log"])
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
_SUPERSEDE = (
    update(_RAW).where(_RAW.c.id == bindparam("raw_id")).values(superseded_seq=bindparam("s"))
)
_SET_SEQ = update(_TENANTS).where(_TENANTS.c.name == bindparam("t")).values(last_seq=bindparam("s"))
_CURRENT = select(
    _RAW.c.id, _RAW.c.digest, _RAW.c.revision, _RAW.c.observation_id, _RAW.c.withdrawn
).where(
    _RAW.c.tenant == bindparam("t"),
    _RAW.c.source == bindparam("src"),
    _RAW.c.upstream_id == bindparam("up"),
    _RAW.c.superseded_seq.is_(None),
)


@dataclass
class TenantCursor:
    """The locked tenant counter of one ingest transaction."""

    name: str
    last_seq: int


@dataclass(frozen=True)
class IngestOutcome:
    outcome: Outcome
    observation_id: str
    seq: int | None


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

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True) -> EvidenceStore:
        engine = make_engine(url)
        if run_migrations:
            migrate(engine)
        return cls(engine)

    def session(self) -> Session:
        return self._sessions()

    # ---- writing -------------------------------------------------------------------------

    def lock_tenant(self, session: Session, tenant: str) -> TenantCursor:
        """Get (creating if needed) and row-lock the tenant's counter for this transaction.

        The lock is what makes sequences visible in order: a second ingester of the same
        tenant waits until the first commits (PostgreSQL ``FOR UPDATE``; SQLite serializes
        writers anyway). Call again after every commit.
        """
        check_tenant(tenant)
        seq = session.execute(
            select(Tenant.last_seq).where(Tenant.name == tenant).with_for_update()
        ).scalar_one_or_none()
        if seq is None:
            session.execute(insert(Tenant).values(name=tenant, last_seq=0))
            seq = 0
        return TenantCursor(tenant, int(seq))

    def put(
        self,
        session: Session,
        cursor: TenantCursor,
        source: str,
        record: ParsedRecord,
        *,
        now: datetime | None = None,
    ) -> IngestOutcome:
        """Store one parsed record inside the caller's transaction (a savepoint per record is
        the caller's job). Identical bytes are a no-op; new bytes make a new revision.

        Core statements rather than ORM objects: ingestion is the hot path.
        """
        tenant = cursor.name
        check_source(source)
        digest = "sha256:" + hashlib.sha256(record.content).hexdigest()
        conn = session.connection()
        current = conn.execute(
            _CURRENT, {"t": tenant, "src": source, "up": record.upstream_id}
        ).one_or_none()
        if current is not None and current.digest == digest:
            return IngestOutcome("unchanged", current.observation_id, None)

        previous_seq = cursor.last_seq
        seq = previous_seq + 1
        revision = 1 if current is None else current.revision + 1
        obs = observation_id(tenant, source, record.upstream_id, revision)
        if current is None:
            kind: Outcome = "inserted"
        elif record.withdrawn and not current.withdrawn:
            kind = "withdrawal"
        else:
            kind = "revision"
        at = now or datetime.now(UTC)
        supersedes = current.observation_id if current is not None else None
        try:
            if current is not None:
                conn.execute(_SUPERSEDE, {"raw_id": current.id, "s": seq})
            raw_id = conn.execute(
                _INSERT_RAW,
                {
                    "tenant": tenant,
                    "source": source,
                    "upstream_id": record.upstream_id,
                    "revision": revision,
                    "observation_id": obs,
                    "doc_type": record.doc_type,
                    "format": record.format,
                    "media_type": record.media_type,
                    "digest": digest,
                    "size": len(record.content),
                    "content": record.content,
                    "withdrawn": record.withdrawn,
                    "ingested_at": at,
                    "seq": seq,
                    "superseded_seq": None,
                    "supersedes": supersedes,
                },
            ).scalar_one()
            self._put_normalized(conn, tenant, raw_id, record)
            conn.execute(
                _INSERT_CHANGE,
                {
                    "tenant": tenant,
                    "seq": seq,
                    "kind": "insert" if kind == "inserted" else kind,
                    "raw_id": raw_id,
                    "observation_id": obs,
                    "previous_observation_id": supersedes,
                    "doc_type": record.doc_type,
                    "at": at,
                },
            )
            conn.execute(_SET_SEQ, {"t": tenant, "s": seq})
        except BaseException:
            cursor.last_seq = previous_seq  # the caller's savepoint rolls the rows back
            raise
        cursor.last_seq = seq
        return IngestOutcome(kind, obs, seq)

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
        key = norm.id if isinstance(norm, Advisory | VexDocument) else norm.subject
        norm_id = conn.execute(
            _INSERT_NORM,
            {
                "raw_id": raw_id,
                "tenant": tenant,
                "record_type": record.doc_type,
                "record_key": key[:512],
                "data": data if data is not None else canonical_json(to_json_dict(norm)),
            },
        ).scalar_one()
        if isinstance(norm, Advisory):
            packages = sorted({(p.purl_type, p.name[:512]) for p in norm.affected})
            if packages:
                conn.execute(
                    _INSERT_ADVPKG,
                    [
                        {"normalized_id": norm_id, "tenant": tenant, "purl_type": t, "name": n}
                        for t, n in packages
                    ],
                )
        statements = (
            norm.statements
            if isinstance(norm, VexDocument)
            else norm.vex
            if isinstance(norm, Sbom)
            else ()
        )
        if statements:
            conn.execute(
                _INSERT_VEX,
                [
                    {
                        "normalized_id": norm_id,
                        "tenant": tenant,
                        "vulnerability": st.vulnerability[:256],
                        "product": st.product[:1024],
                        "status": st.status,
                        "justification": st.justification,
                    }
                    for st in statements
                ],
            )
        if isinstance(norm, Sbom) and norm.components:
            conn.execute(
                _INSERT_COMP,
                [
                    {
                        "normalized_id": norm_id,
                        "tenant": tenant,
                        "purl": c.purl[:2048] if c.purl else None,
                        "purl_type": c.purl_type,
                        "name": c.name[:1024],
                        "version": c.version[:256] if c.version else None,
                        "sha1": c.hash("sha1"),
                    }
                    for c in norm.components
                ],
            )

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
