"""Import generations: what each tenant has installed, per mirror stream, in order (table
``airgap_generations``), and which stream holds each document (``airgap_stream_records``).

A *stream* is what one mirror profile of the exporting side ships: a full bundle (or a
``resetBaseline`` delta with no known base) names it by its profile, and every delta continues
the stream whose installed generation is its base. Generations are numbered per (tenant,
stream). A stream is *retired* when a later import of another stream took it over
(``replaced_stream``); it comes back only with a new full bundle of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from export_center.store.models import AirgapGeneration, AirgapStreamRecord, Base
from export_center.store.repository import EvidenceStore

DocKey = tuple[str, str]  # (source, upstream id)


@dataclass(frozen=True)
class GenerationView:
    tenant: str
    stream: str
    generation: int
    export_id: str
    profile: str
    kind: str
    manifest_digest: str
    root_hash: str
    rerun_hash: str
    source_seq: int
    source_time: datetime
    base_export_id: str | None
    base_manifest_digest: str | None
    base_seq: int | None
    replaced_stream: str | None
    store_seq: int
    added: int
    updated: int
    removed: int
    tuf_root: str
    imported_by: str
    imported_at: datetime
    forced: bool
    reason: str | None
    id: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "stream": self.stream,
            "generation": self.generation,
            "exportId": self.export_id,
            "profile": self.profile,
            "kind": self.kind,
            "manifestDigest": self.manifest_digest,
            "rootHash": self.root_hash,
            "rerunHash": self.rerun_hash,
            "sourceSequence": self.source_seq,
            "sourceTime": _rfc3339(self.source_time),
            "base": (
                {
                    "exportId": self.base_export_id,
                    "manifestDigest": self.base_manifest_digest,
                    "sequence": self.base_seq,
                }
                if self.base_export_id
                else None
            ),
            "replacedStream": self.replaced_stream,
            "storeSequence": self.store_seq,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "importedBy": self.imported_by,
            "importedAt": _rfc3339(self.imported_at),
            "forced": self.forced,
            "reason": self.reason,
        }


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt  # SQLite drops the zone


def _rfc3339(dt: datetime) -> str:
    return _utc(dt).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _view(r: AirgapGeneration) -> GenerationView:
    return GenerationView(
        tenant=r.tenant,
        stream=r.stream,
        generation=r.generation,
        export_id=r.export_id,
        profile=r.profile,
        kind=r.kind,
        manifest_digest=r.manifest_digest,
        root_hash=r.root_hash,
        rerun_hash=r.rerun_hash,
        source_seq=r.source_seq,
        source_time=_utc(r.source_time),
        base_export_id=r.base_export_id,
        base_manifest_digest=r.base_manifest_digest,
        base_seq=r.base_seq,
        replaced_stream=r.replaced_stream,
        store_seq=r.store_seq,
        added=r.added,
        updated=r.updated,
        removed=r.removed,
        tuf_root=r.tuf_root,
        imported_by=r.imported_by,
        imported_at=_utc(r.imported_at),
        forced=r.forced,
        reason=r.reason,
        id=r.id,
    )


def latest(session: Session, tenant: str, stream: str) -> GenerationView | None:
    """The newest generation of one stream of ``tenant`` (retired or not), or None."""
    row = session.execute(
        select(AirgapGeneration)
        .where(AirgapGeneration.tenant == tenant, AirgapGeneration.stream == stream)
        .order_by(AirgapGeneration.generation.desc())
        .limit(1)
    ).scalar_one_or_none()
    return _view(row) if row is not None else None


def newest(session: Session, tenant: str) -> GenerationView | None:
    """The tenant's most recent import, whatever its stream (its TUF root is the trusted one)."""
    row = session.execute(
        select(AirgapGeneration)
        .where(AirgapGeneration.tenant == tenant)
        .order_by(AirgapGeneration.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return _view(row) if row is not None else None


def _active(rows: Iterable[AirgapGeneration]) -> list[GenerationView]:
    """The newest generation of every stream not retired by a later import, by tenant/stream."""
    views = [_view(r) for r in rows]
    tops: dict[tuple[str, str], GenerationView] = {}
    for v in views:
        key = (v.tenant, v.stream)
        if key not in tops or v.generation > tops[key].generation:
            tops[key] = v
    retired_at: dict[tuple[str, str], int] = {}
    for v in views:
        if v.replaced_stream:
            key = (v.tenant, v.replaced_stream)
            retired_at[key] = max(retired_at.get(key, 0), v.id)
    return [
        v
        for key, v in sorted(tops.items())
        if retired_at.get(key, 0) < v.id  # taken over after its last import: retired
    ]


def active(session: Session, tenant: str) -> list[GenerationView]:
    """The installed generation of each live stream of ``tenant``, by stream name."""
    rows = session.execute(select(AirgapGeneration).where(AirgapGeneration.tenant == tenant))
    return _active(rows.scalars())


def by_export(session: Session, tenant: str, export_id: str) -> list[GenerationView]:
    """Every generation of ``tenant`` that imported ``export_id``, newest first."""
    rows = session.execute(
        select(AirgapGeneration)
        .where(AirgapGeneration.tenant == tenant, AirgapGeneration.export_id == export_id)
        .order_by(AirgapGeneration.id.desc())
    )
    return [_view(r) for r in rows.scalars()]


def installed(store: EvidenceStore, tenant: str) -> list[GenerationView]:
    with store.session() as s:
        return active(s, tenant)


def history(store: EvidenceStore, tenant: str | None = None) -> list[GenerationView]:
    """Every generation (of ``tenant``, or of all tenants), by tenant, stream, generation."""
    stmt = select(AirgapGeneration).order_by(
        AirgapGeneration.tenant, AirgapGeneration.stream, AirgapGeneration.generation
    )
    if tenant is not None:
        stmt = stmt.where(AirgapGeneration.tenant == tenant)
    with store.session() as s:
        return [_view(r) for r in s.execute(stmt).scalars()]


def current(store: EvidenceStore) -> list[GenerationView]:
    """The installed generation of every live stream of every tenant."""
    with store.session() as s:
        return _active(s.execute(select(AirgapGeneration)).scalars())


def record(session: Session, **values: Any) -> None:
    """Insert a generation row inside the caller's (import) transaction."""
    session.execute(insert(AirgapGeneration).values(**values))


# -- which stream holds which document ------------------------------------------------------


def owners(session: Session | Connection, tenant: str) -> dict[DocKey, str]:
    """Every document of ``tenant`` a stream holds, with that stream."""
    rows = session.execute(
        select(
            AirgapStreamRecord.source, AirgapStreamRecord.upstream_id, AirgapStreamRecord.stream
        ).where(AirgapStreamRecord.tenant == tenant)
    )
    return {(r.source, r.upstream_id): r.stream for r in rows}


def owner(session: Session | Connection, tenant: str, key: DocKey) -> str | None:
    return session.execute(
        select(AirgapStreamRecord.stream).where(
            AirgapStreamRecord.tenant == tenant,
            AirgapStreamRecord.source == key[0],
            AirgapStreamRecord.upstream_id == key[1],
        )
    ).scalar_one_or_none()


def set_owners(
    session: Session | Connection,
    tenant: str,
    stream: str,
    fresh: Sequence[DocKey],
    moved: Sequence[DocKey],
    dropped: Sequence[DocKey],
) -> None:
    """Inside the import: ``stream`` now holds ``fresh`` (held by no stream before) and
    ``moved`` (held by a stream it took over); nobody holds ``dropped``."""
    table = Base.metadata.tables["airgap_stream_records"]
    where = (
        (table.c.tenant == bindparam("t"))
        & (table.c.source == bindparam("s"))
        & (table.c.upstream_id == bindparam("u"))
    )
    if dropped:
        session.execute(
            delete(table).where(where), [{"t": tenant, "s": s, "u": u} for s, u in dropped]
        )
    if moved:
        session.execute(
            update(table).where(where).values(stream=bindparam("new")),
            [{"t": tenant, "s": s, "u": u, "new": stream} for s, u in moved],
        )
    if fresh:
        session.execute(
            insert(table),
            [{"tenant": tenant, "source": s, "upstream_id": u, "stream": stream} for s, u in fresh],
        )


def take_over(session: Session | Connection, tenant: str, old: str, new: str) -> None:
    """Every document ``old`` still holds is ``new``'s from now on."""
    session.execute(
        update(AirgapStreamRecord)
        .where(AirgapStreamRecord.tenant == tenant, AirgapStreamRecord.stream == old)
        .values(stream=new)
    )
