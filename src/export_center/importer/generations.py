"""Import generations: what each tenant has installed, in order (table ``airgap_generations``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from export_center.store.models import AirgapGeneration
from export_center.store.repository import EvidenceStore


@dataclass(frozen=True)
class GenerationView:
    tenant: str
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
    store_seq: int
    added: int
    updated: int
    removed: int
    tuf_root: str
    imported_by: str
    imported_at: datetime
    forced: bool
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
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
                {"exportId": self.base_export_id, "manifestDigest": self.base_manifest_digest}
                if self.base_export_id
                else None
            ),
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
        store_seq=r.store_seq,
        added=r.added,
        updated=r.updated,
        removed=r.removed,
        tuf_root=r.tuf_root,
        imported_by=r.imported_by,
        imported_at=_utc(r.imported_at),
        forced=r.forced,
        reason=r.reason,
    )


def latest(session: Session, tenant: str) -> GenerationView | None:
    """The installed (newest) generation of ``tenant``, or None before the first import."""
    row = session.execute(
        select(AirgapGeneration)
        .where(AirgapGeneration.tenant == tenant)
        .order_by(AirgapGeneration.generation.desc())
        .limit(1)
    ).scalar_one_or_none()
    return _view(row) if row is not None else None


def installed(store: EvidenceStore, tenant: str) -> GenerationView | None:
    with store.session() as s:
        return latest(s, tenant)


def history(store: EvidenceStore, tenant: str | None = None) -> list[GenerationView]:
    """Every generation (of ``tenant``, or of all tenants), oldest first."""
    stmt = select(AirgapGeneration).order_by(AirgapGeneration.tenant, AirgapGeneration.generation)
    if tenant is not None:
        stmt = stmt.where(AirgapGeneration.tenant == tenant)
    with store.session() as s:
        return [_view(r) for r in s.execute(stmt).scalars()]


def current(store: EvidenceStore) -> list[GenerationView]:
    """The installed generation of every tenant that has one."""
    newest = (
        select(AirgapGeneration.tenant, func.max(AirgapGeneration.generation).label("g"))
        .group_by(AirgapGeneration.tenant)
        .subquery()
    )
    stmt = (
        select(AirgapGeneration)
        .join(
            newest,
            (AirgapGeneration.tenant == newest.c.tenant)
            & (AirgapGeneration.generation == newest.c.g),
        )
        .order_by(AirgapGeneration.tenant)
    )
    with store.session() as s:
        return [_view(r) for r in s.execute(stmt).scalars()]


def record(session: Session, **values: Any) -> None:
    """Insert a generation row inside the caller's (import) transaction."""
    session.execute(insert(AirgapGeneration).values(**values))
