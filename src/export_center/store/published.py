"""The ledger of published exports: the signed manifest of every bundle this instance made.

A mirror:delta names its base by an export id of its own tenant; the server resolves that id
here, in its own records, and never reads a bundle from a path a tenant names. Rows are
inserted once per (tenant, export id, manifest digest) and never changed: the same export id
can have several manifests (an encrypted mirror wraps a fresh data key per run), and the newest
row wins when only the export id is given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from export_center.store.models import PublishedExport
from export_center.store.repository import EvidenceStore

__all__ = ["PublishedView", "find_published", "published_of_kind", "record_published"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedView:
    tenant: str
    export_id: str
    manifest_digest: str
    profile: str
    revision: int
    kind: str
    variant: str
    as_of_seq: int
    manifest: bytes  # manifests/export.json as signed
    published_at: datetime


def record_published(
    store: EvidenceStore,
    *,
    tenant: str,
    export_id: str,
    manifest_digest: str,
    profile: str,
    revision: int,
    kind: str,
    variant: str,
    as_of_seq: int,
    manifest: bytes,
    now: datetime | None = None,
) -> None:
    """Add a published export to the ledger (a row that exists already is left as it is)."""
    row = PublishedExport(
        tenant=tenant,
        export_id=export_id,
        manifest_digest=manifest_digest,
        profile=profile,
        revision=revision,
        kind=kind,
        variant=variant,
        as_of_seq=as_of_seq,
        manifest=manifest,
        published_at=(now or datetime.now(UTC)).replace(microsecond=0),
    )
    try:
        with store.session() as s, s.begin():
            exists = s.execute(
                select(PublishedExport.id).where(
                    PublishedExport.tenant == tenant,
                    PublishedExport.export_id == export_id,
                    PublishedExport.manifest_digest == manifest_digest,
                )
            ).scalar_one_or_none()
            if exists is None:
                s.add(row)
    except IntegrityError:
        # The same bundle published concurrently (a rerun racing a takeover): one row is enough.
        log.debug("export %s (%s) is in the ledger already", export_id, manifest_digest)


def find_published(
    store: EvidenceStore, tenant: str, export_id: str, manifest_digest: str | None = None
) -> PublishedView | None:
    """The ledger row of ``export_id`` of ``tenant`` (the newest, or the one with
    ``manifest_digest``); None when this instance never published it for this tenant."""
    with store.session() as s:
        stmt = select(PublishedExport).where(
            PublishedExport.tenant == tenant, PublishedExport.export_id == export_id
        )
        if manifest_digest is not None:
            stmt = stmt.where(PublishedExport.manifest_digest == manifest_digest)
        row = s.execute(stmt.order_by(PublishedExport.id.desc()).limit(1)).scalar_one_or_none()
        return _view(row) if row is not None else None


def published_of_kind(
    store: EvidenceStore, tenant: str, kind: str, *, max_seq: int, page: int = 50
) -> Iterator[PublishedView]:
    """The tenant's published exports of ``kind`` as of sequence ``max_seq`` or earlier,
    newest first (by sequence, then publication), read a page at a time."""
    offset = 0
    while True:
        with store.session() as s:
            rows = [
                _view(r)
                for r in s.execute(
                    select(PublishedExport)
                    .where(
                        PublishedExport.tenant == tenant,
                        PublishedExport.kind == kind,
                        PublishedExport.as_of_seq <= max_seq,
                    )
                    .order_by(PublishedExport.as_of_seq.desc(), PublishedExport.id.desc())
                    .offset(offset)
                    .limit(page)
                ).scalars()
            ]
        yield from rows
        if len(rows) < page:
            return
        offset += page


def _view(row: PublishedExport) -> PublishedView:
    at = row.published_at
    return PublishedView(
        tenant=row.tenant,
        export_id=row.export_id,
        manifest_digest=row.manifest_digest,
        profile=row.profile,
        revision=row.revision,
        kind=row.kind,
        variant=row.variant,
        as_of_seq=row.as_of_seq,
        manifest=bytes(row.manifest),
        published_at=at if at.tzinfo else at.replace(tzinfo=UTC),
    )
