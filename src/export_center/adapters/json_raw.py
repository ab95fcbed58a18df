"""json:raw — raw documents and normalized records as canonical JSONL shards.

Layout and order (documented in docs/bundle-format.md):
- ``data/raw/<type>/<source>.jsonl``: one raw record per line.
- ``data/normalized/<type>/<source>.jsonl``: the same records' normalized view, same order.
``<type>`` is ``advisories``, ``vex`` or ``sboms``. Lines are sorted by upstream id (bytewise);
keys inside a line are sorted. The line formats are :mod:`export_center.bundle.jsonl`'s (shared
with mirror bundles and the importer): raw bytes are carried exactly, as a UTF-8 string when
they decode as UTF-8, else base64; ``digest`` is the sha256 of those bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from itertools import groupby, islice
from typing import TypeVar

import orjson

from export_center.adapters.interface import ExportContext
from export_center.bundle.jsonl import INCLUDE_TO_TYPE, JSONL, TYPE_DIRS, normalized_line, raw_line
from export_center.planner.selectors import matches, needs_record_data
from export_center.store.repository import RawView

_T = TypeVar("_T")

_PROGRESS_EVERY = 200
_BATCH = 1024  # records per batch of lines: a few MiB, handed on in one piece


def batched(items: Iterable[_T], n: int) -> Iterator[list[_T]]:
    """Lists of ``n`` items (the last one shorter); ``itertools.batched`` from Python 3.12."""
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def selected_records(ctx: ExportContext, doc_type: str) -> Iterator[tuple[RawView, str]]:
    """The plan's records of one type, selectors applied, streamed in export order."""
    plan = ctx.plan
    sel = plan.selectors
    filtered = needs_record_data(sel)
    n = 0
    for rec, data in ctx.store.iter_records(
        plan.tenant, plan.as_of_seq, doc_type=doc_type, sources=sel.sources or None
    ):
        n += 1
        if n % _PROGRESS_EVERY == 0:
            ctx.progress(_PROGRESS_EVERY)
            ctx.check_cancelled()
        if not filtered or matches(sel, doc_type, rec.upstream_id, orjson.loads(data)):
            yield rec, data
    ctx.progress(n % _PROGRESS_EVERY)


class JsonRawAdapter:
    """Writes raw and normalized shards for every included record type."""

    def build(self, ctx: ExportContext) -> None:
        for include in ctx.plan.spec.include:
            doc_type = INCLUDE_TO_TYPE.get(include)
            if doc_type is None:
                continue  # "findings" belongs to json:policy
            self._write_type(ctx, doc_type)

    @staticmethod
    def _write_type(ctx: ExportContext, doc_type: str) -> None:
        type_dir = TYPE_DIRS[doc_type]
        total = 0
        # Records arrive ordered by source, so groupby streams one shard pair at a time.
        for source, group in groupby(selected_records(ctx, doc_type), key=lambda p: p[0].source):
            deps = hashlib.sha256()
            with (
                ctx.staging.open(
                    f"data/raw/{type_dir}/{source}.jsonl", JSONL, count_records=True
                ) as raw_w,
                ctx.staging.open(
                    f"data/normalized/{type_dir}/{source}.jsonl", JSONL, count_records=True
                ) as norm_w,
            ):
                # A batch of lines per call: the per-record work is only building the lines.
                for batch in batched(group, _BATCH):
                    raw_w.write_records([raw_line(rec) for rec, _data in batch])
                    norm_w.write_records([normalized_line(rec, data) for rec, data in batch])
                    deps.update(
                        "".join(
                            [f"{rec.observation_id} {rec.digest}\n" for rec, _data in batch]
                        ).encode()
                    )
                    total += len(batch)
            # The input set this source contributed: provenance's resolvedDependencies.
            ctx.dependencies[f"{type_dir}/{source}"] = deps.hexdigest()
        ctx.counts[type_dir] = ctx.counts.get(type_dir, 0) + total
