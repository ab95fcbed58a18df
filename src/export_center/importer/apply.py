"""Applying a verified mirror bundle to the local evidence store, inside the caller's transaction.

Records keep the exporter's observation ids, revisions, bytes, digests and normalized JSON; the
local store gives them its own change sequence (one per applied change), so local as-of reads and
onward mirror deltas keep working. A full bundle replaces the tenant's evidence of the types it
carries (documents not in it are removed); a delta applies its records and tombstones on top of
its base. Removal is a change of its own (``removal`` in the change log): the current revision
gets ``superseded_seq`` and no successor, so it stays readable as of earlier sequences.

Every import belongs to a mirror stream (:mod:`.generations`), and streams of one tenant hold
disjoint documents: a full bundle replaces (and removes) only its own stream's documents, a
document held by another stream is refused (exit 6) unless the operator lets this import take
that stream over, and a delta's tombstones must name documents of its own stream. Documents
ingested locally belong to no stream: a bundle may ship a newer revision of one (it then holds
it), and a full bundle never removes one.

Nothing here commits: the importer runs it in one transaction with the generation row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from export_center.bundle.manifest import Tombstone
from export_center.errors import ConflictError
from export_center.importer import generations
from export_center.importer.records import ImportRecord
from export_center.model import ParsedRecord
from export_center.store.models import Base, RawRecord, Tenant
from export_center.store.repository import EvidenceStore, TenantCursor

# Prepared once: building a statement per record costs more than running it.
_RAW = Base.metadata.tables["raw_records"]
_INSERT_RAW = insert(_RAW).returning(_RAW.c.id)
_INSERT_CHANGE = insert(Base.metadata.tables["change_log"])
_SET_SUPERSEDED = (
    update(_RAW).where(_RAW.c.id == bindparam("rid")).values(superseded_seq=bindparam("s"))
)


@dataclass
class ApplyStats:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class _Current:
    id: int
    observation_id: str
    digest: str
    withdrawn: bool
    doc_type: str


_Key = tuple[str, str]


@dataclass(frozen=True)
class Stream:
    """The stream an import belongs to, and the streams it may take over (operator's choice)."""

    name: str
    takes: frozenset[str] = frozenset()

    def may_hold(self, owner: str | None) -> bool:
        return owner is None or owner == self.name or owner in self.takes

    def conflict(self, tenant: str, key: _Key, owner: str) -> ConflictError:
        return ConflictError(
            f"{key[0]}/{key[1]} belongs to mirror stream {owner!r} of tenant {tenant}; a "
            f"bundle of stream {self.name!r} may not replace it",
            hint=f"streams of one tenant carry disjoint documents; --replace-stream {owner} "
            "--reason TEXT lets this bundle's stream take that one over",
        )


class _Applier:
    def __init__(
        self,
        store: EvidenceStore,
        conn: Connection,
        cursor: TenantCursor,
        now: datetime,
        stream: Stream,
    ) -> None:
        self.store = store
        self.conn = conn
        self.cursor = cursor
        self.tenant = cursor.name
        self.now = now
        self.seq = cursor.last_seq
        self.stats = ApplyStats()
        self.stream = stream
        self.fresh: list[_Key] = []  # documents no stream held, this one's from now on
        self.moved: list[_Key] = []  # documents of a stream taken over, this one's now
        self.dropped: list[_Key] = []  # documents it removed
        self.claimed: set[_Key] = set()
        # Every observation id the tenant has ever held (a re-shipped one is revived, not
        # inserted twice: observation ids are unique).
        self.known: dict[str, tuple[int, str]] = {
            obs: (rid, digest)
            for rid, obs, digest in conn.execute(
                select(RawRecord.id, RawRecord.observation_id, RawRecord.digest).where(
                    RawRecord.tenant == self.tenant
                )
            )
        }

    def current(self, doc_types: Sequence[str]) -> dict[_Key, _Current]:
        rows = self.conn.execute(
            select(
                RawRecord.id,
                RawRecord.source,
                RawRecord.upstream_id,
                RawRecord.observation_id,
                RawRecord.digest,
                RawRecord.withdrawn,
                RawRecord.doc_type,
            ).where(
                RawRecord.tenant == self.tenant,
                RawRecord.superseded_seq.is_(None),
                RawRecord.doc_type.in_(list(doc_types)),
            )
        )
        return {
            (r.source, r.upstream_id): _Current(
                r.id, r.observation_id, r.digest, r.withdrawn, r.doc_type
            )
            for r in rows
        }

    def current_one(self, key: _Key) -> _Current | None:
        r = self.conn.execute(
            select(
                RawRecord.id,
                RawRecord.observation_id,
                RawRecord.digest,
                RawRecord.withdrawn,
                RawRecord.doc_type,
            ).where(
                RawRecord.tenant == self.tenant,
                RawRecord.source == key[0],
                RawRecord.upstream_id == key[1],
                RawRecord.superseded_seq.is_(None),
            )
        ).one_or_none()
        if r is None:
            return None
        return _Current(r.id, r.observation_id, r.digest, r.withdrawn, r.doc_type)

    def _log(self, kind: str, raw_id: int, obs: str, previous: str | None, doc_type: str) -> None:
        self.conn.execute(
            _INSERT_CHANGE,
            {
                "tenant": self.tenant,
                "seq": self.seq,
                "kind": kind,
                "raw_id": raw_id,
                "observation_id": obs,
                "previous_observation_id": previous,
                "doc_type": doc_type,
                "at": self.now,
            },
        )

    def _supersede(self, raw_id: int) -> None:
        self.conn.execute(_SET_SUPERSEDED, {"rid": raw_id, "s": self.seq})

    def put(self, rec: ImportRecord, cur: _Current | None) -> None:
        if cur is not None and cur.observation_id == rec.observation_id:
            if cur.digest != rec.digest:
                raise ConflictError(
                    f"{rec.observation_id}: the local store holds other bytes under this "
                    "observation id"
                )
            self.stats.unchanged += 1
            return
        self.seq += 1
        if cur is not None:
            self._supersede(cur.id)
        known = self.known.get(rec.observation_id)
        if known is not None:
            raw_id, digest = known
            if digest != rec.digest:
                raise ConflictError(
                    f"{rec.observation_id}: the local store holds other bytes under this "
                    "observation id"
                )
            # Shipped again after a removal: the same revision becomes current again.
            self.conn.execute(_SET_SUPERSEDED, {"rid": raw_id, "s": None})
        else:
            raw_id = self.conn.execute(
                _INSERT_RAW,
                {
                    "tenant": self.tenant,
                    "source": rec.source,
                    "upstream_id": rec.upstream_id,
                    "revision": rec.revision,
                    "observation_id": rec.observation_id,
                    "doc_type": rec.doc_type,
                    "format": rec.format,
                    "media_type": rec.media_type,
                    "digest": rec.digest,
                    "size": len(rec.content),
                    "content": rec.content,
                    "withdrawn": rec.withdrawn,
                    "ingested_at": self.now,
                    "seq": self.seq,
                    "superseded_seq": None,
                    "supersedes": rec.supersedes,
                },
            ).scalar_one()
            parsed = ParsedRecord(
                upstream_id=rec.upstream_id,
                doc_type=rec.doc_type,  # type: ignore[arg-type]
                format=rec.format,
                media_type=rec.media_type,
                content=rec.content,
                normalized=rec.normalized,
                withdrawn=rec.withdrawn,
            )
            self.store._put_normalized(self.conn, self.tenant, raw_id, parsed, data=rec.data)
            self.known[rec.observation_id] = (raw_id, rec.digest)
        if cur is None:
            kind = "insert"
            self.stats.added += 1
        else:
            kind = "withdrawal" if rec.withdrawn and not cur.withdrawn else "revision"
            self.stats.updated += 1
        self._log(
            kind, raw_id, rec.observation_id, cur.observation_id if cur else None, rec.doc_type
        )

    def remove(self, cur: _Current) -> None:
        self.seq += 1
        self._supersede(cur.id)
        self._log("removal", cur.id, cur.observation_id, None, cur.doc_type)
        self.stats.removed += 1

    def claim(self, key: _Key, owner: str | None) -> None:
        """``key`` is shipped by this import: it must be free, ours, or one we take over."""
        if not self.stream.may_hold(owner):
            assert owner is not None
            raise self.stream.conflict(self.tenant, key, owner)
        self.claimed.add(key)
        if owner is None:
            self.fresh.append(key)
        elif owner != self.stream.name:
            self.moved.append(key)

    def finish(self) -> int:
        # A document removed and shipped again by the same delta stays this stream's.
        dropped = [k for k in self.dropped if k not in self.claimed]
        generations.set_owners(
            self.conn, self.tenant, self.stream.name, self.fresh, self.moved, dropped
        )
        for old in sorted(self.stream.takes):
            generations.take_over(self.conn, self.tenant, old, self.stream.name)
        if self.seq != self.cursor.last_seq:
            self.conn.execute(
                update(Tenant).where(Tenant.name == self.tenant).values(last_seq=self.seq)
            )
            self.cursor.last_seq = self.seq
        return self.seq


def apply_full(
    store: EvidenceStore,
    conn: Connection,
    cursor: TenantCursor,
    records: Iterable[ImportRecord],
    doc_types: Sequence[str],
    now: datetime,
    stream: Stream,
) -> tuple[ApplyStats, int]:
    """Make ``stream``'s current evidence of ``doc_types`` exactly ``records`` (and of the
    streams it takes over); other streams' documents and local ones stay.

    Returns the stats and the store sequence afterwards.

    Raises:
        ConflictError: the store holds other bytes under one of the observation ids, the
            bundle names one document twice, or another stream holds one of its documents.
    """
    ap = _Applier(store, conn, cursor, now, stream)
    owners = generations.owners(conn, ap.tenant)
    current = ap.current(doc_types)
    seen: set[_Key] = set()
    for rec in records:
        key = (rec.source, rec.upstream_id)
        if key in seen:
            raise ConflictError(f"the bundle holds {rec.source}/{rec.upstream_id} twice")
        seen.add(key)
        ap.claim(key, owners.get(key))
        ap.put(rec, current.pop(key, None))
    for key, cur in sorted(current.items()):
        owner = owners.get(key)
        if owner is not None and stream.may_hold(owner):
            ap.remove(cur)
            ap.dropped.append(key)
    return ap.stats, ap.finish()


def apply_delta(
    store: EvidenceStore,
    conn: Connection,
    cursor: TenantCursor,
    records: Iterable[ImportRecord],
    tombstones: Sequence[Tombstone],
    now: datetime,
    stream: Stream,
) -> tuple[ApplyStats, int]:
    """Apply a delta's tombstones, then its records, on top of ``stream``'s installed base.

    Raises:
        ConflictError: a tombstone names a revision that is not the current one of this
            stream (the store is not at the delta's base), or as :func:`apply_full`.
    """
    ap = _Applier(store, conn, cursor, now, stream)
    for t in tombstones:
        key = (t.source, t.upstream_id)
        cur = ap.current_one(key)
        owner = generations.owner(conn, ap.tenant, key)
        if cur is None or cur.observation_id != t.observation_id or cur.digest != t.digest:
            found = cur.observation_id if cur else "nothing"
            raise ConflictError(
                f"tombstone for {t.observation_id}: the store holds {found}; "
                "it is not at this delta's base"
            )
        if owner != stream.name:
            raise ConflictError(
                f"tombstone for {t.observation_id}: the document belongs to "
                f"{'no stream' if owner is None else f'stream {owner!r}'}, not to "
                f"{stream.name!r}; it is not at this delta's base"
            )
        ap.remove(cur)
        ap.dropped.append(key)
    seen: set[_Key] = set()
    for rec in records:
        key = (rec.source, rec.upstream_id)
        if key in seen:
            raise ConflictError(f"the bundle holds {rec.source}/{rec.upstream_id} twice")
        seen.add(key)
        ap.claim(key, generations.owner(conn, ap.tenant, key))
        ap.put(rec, ap.current_one(key))
    return ap.stats, ap.finish()
