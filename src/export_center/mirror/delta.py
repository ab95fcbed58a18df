"""What changed between two as-of cursors: the content of a mirror:delta.

Every change (insert, revision, withdrawal, and an importer's removal) in the change log between
the base's sequence and the new one names a document (source + upstream id). For each such
document we compare the revision visible at the base with the one visible now, each passed
through the profile's selection (types, sources, selectors, withdrawn policy):

- selected now, not at the base: **added**;
- selected at both (a different revision): **updated**;
- selected at the base, not now: a **tombstone** (observation id and digest of the revision the
  base shipped; ``reason`` ``withdrawn`` when the profile leaves withdrawn records out and the
  document was withdrawn, else ``removed``).

Unchanged documents are never read. Phase one works on metadata only (plus normalized JSON when
the selectors need it); phase two streams the selected records' bytes in export order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, null, or_, select

from export_center.bundle.manifest import Tombstone
from export_center.model import DocType
from export_center.planner.profiles import Selectors
from export_center.planner.selectors import matches, needs_record_data
from export_center.store.models import ChangeLogEntry, NormalizedRecord, RawRecord
from export_center.store.repository import EvidenceStore, RawView

_BATCH = 500


@dataclass(frozen=True)
class _Row:
    id: int
    source: str
    upstream_id: str
    doc_type: DocType
    observation_id: str
    digest: str
    withdrawn: bool
    seq: int
    superseded_seq: int | None
    data: str | None

    def visible_at(self, n: int) -> bool:
        return self.seq <= n and (self.superseded_seq is None or self.superseded_seq > n)


@dataclass(frozen=True)
class DeltaPlan:
    """Raw ids to ship (export order) and tombstones, with the added/updated split."""

    ship: tuple[int, ...]
    added: int
    updated: int
    tombstones: tuple[Tombstone, ...]  # as the manifest's delta.removed lists them
    by_type: dict[str, int]


def _selected(
    row: _Row,
    sel: Selectors,
    doc_types: Sequence[str],
    include_withdrawn: bool,
) -> bool:
    if row.doc_type not in doc_types:
        return False
    if sel.sources and row.source not in sel.sources:
        return False
    if row.withdrawn and not include_withdrawn:
        return False
    if row.data is None:
        return True
    return matches(sel, row.doc_type, row.upstream_id, orjson.loads(row.data))


def _order_key(row: _Row) -> tuple[str, bytes, bytes]:
    return (row.doc_type, row.source.encode(), row.upstream_id.encode())


def plan_delta(
    store: EvidenceStore,
    tenant: str,
    base_seq: int,
    new_seq: int,
    *,
    selectors: Selectors,
    doc_types: Sequence[str],
    include_withdrawn: bool,
) -> DeltaPlan:
    """Compare the documents touched in ``(base_seq, new_seq]`` at both cursors."""
    with_data = needs_record_data(selectors)
    changed = (
        select(RawRecord.source, RawRecord.upstream_id)
        .join(ChangeLogEntry, ChangeLogEntry.raw_id == RawRecord.id)
        .where(
            ChangeLogEntry.tenant == tenant,
            ChangeLogEntry.seq > base_seq,
            ChangeLogEntry.seq <= new_seq,
        )
        .distinct()
        .subquery()
    )
    cols: list[Any] = [
        RawRecord.id,
        RawRecord.source,
        RawRecord.upstream_id,
        RawRecord.doc_type,
        RawRecord.observation_id,
        RawRecord.digest,
        RawRecord.withdrawn,
        RawRecord.seq,
        RawRecord.superseded_seq,
    ]
    cols.append(NormalizedRecord.data if with_data else null())
    stmt = select(*cols)
    if with_data:
        stmt = stmt.join(NormalizedRecord, NormalizedRecord.raw_id == RawRecord.id)
    stmt = stmt.join(
        changed,
        and_(
            RawRecord.source == changed.c.source,
            RawRecord.upstream_id == changed.c.upstream_id,
        ),
    ).where(
        RawRecord.tenant == tenant,
        RawRecord.seq <= new_seq,
        or_(RawRecord.superseded_seq.is_(None), RawRecord.superseded_seq > base_seq),
    )
    at_base: dict[tuple[str, str], _Row] = {}
    at_new: dict[tuple[str, str], _Row] = {}
    with store.session() as s:
        for r in s.execute(stmt.execution_options(yield_per=_BATCH)):
            row = _Row(*r)
            key = (row.source, row.upstream_id)
            if row.visible_at(base_seq):
                at_base[key] = row
            if row.visible_at(new_seq):
                at_new[key] = row

    ship: list[_Row] = []
    tombstones: list[Tombstone] = []
    added = updated = 0
    for key in sorted(set(at_base) | set(at_new)):
        old, new = at_base.get(key), at_new.get(key)
        old_in = old is not None and _selected(old, selectors, doc_types, include_withdrawn)
        new_in = new is not None and _selected(new, selectors, doc_types, include_withdrawn)
        if new_in and new is not None:
            if old_in and old is not None and old.observation_id == new.observation_id:
                continue
            ship.append(new)
            if old_in:
                updated += 1
            else:
                added += 1
        elif old_in and old is not None:
            withdrawn = new is not None and new.withdrawn and not include_withdrawn
            tombstones.append(
                Tombstone(
                    observation_id=old.observation_id,
                    digest=old.digest,
                    record_type=old.doc_type,
                    source=old.source,
                    upstream_id=old.upstream_id,
                    reason="withdrawn" if withdrawn else "removed",
                )
            )
    ship.sort(key=_order_key)
    tombstones.sort(key=lambda t: (t.record_type, t.source.encode(), t.upstream_id.encode()))
    by_type: dict[str, int] = {}
    for row in ship:
        by_type[row.doc_type] = by_type.get(row.doc_type, 0) + 1
    return DeltaPlan(
        ship=tuple(r.id for r in ship),
        added=added,
        updated=updated,
        tombstones=tuple(tombstones),
        by_type=by_type,
    )


def iter_shipped(
    store: EvidenceStore, tenant: str, raw_ids: Sequence[int]
) -> Iterator[tuple[RawView, str]]:
    """The records of ``raw_ids`` with their normalized JSON, in the given order, in batches."""
    for start in range(0, len(raw_ids), _BATCH):
        chunk = raw_ids[start : start + _BATCH]
        found = store.records_by_id(tenant, chunk)
        for rid in chunk:
            yield found[rid]
