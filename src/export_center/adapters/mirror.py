"""mirror:full and mirror:delta: everything a second instance needs to serve the same evidence.

Two phases, called by the bundle writer:

- :meth:`MirrorAdapter.build` writes the records (raw and normalized shards, SBOM files,
  indexes, policy parts) and the manifest sections ``mirror`` and, for a delta, ``delta``
  (the delta itself, TUF, encryption and the bundle layout live in :mod:`export_center.mirror`);
- :meth:`MirrorAdapter.seal` (once the files exist, with the run's signer) encrypts the files
  under ``data/`` when the profile asks for it and writes the TUF metadata over them.

Without encryption the files go straight into the staging area. With encryption they are first
spooled in plaintext (in the run's private staging directory) and then encrypted into staging
file by file; the plaintext digests go into the manifest's ``encryption.files``.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson

from export_center.adapters.interface import ExportContext
from export_center.adapters.json_policy import write_policy_parts
from export_center.adapters.json_raw import selected_records
from export_center.bundle.jsonl import INCLUDE_TO_TYPE, TYPE_DIRS, normalized_line, raw_line
from export_center.bundle.manifest import (
    DeltaSection,
    EncryptionSection,
    MirrorSection,
    PlainFile,
)
from export_center.bundle.staging import StagedWriter
from export_center.digests import prefixed, sha256_file
from export_center.errors import BadInputError
from export_center.mirror import crypto
from export_center.mirror.base import BaseInfo, resolve_base
from export_center.mirror.delta import DeltaPlan, iter_shipped, plan_delta
from export_center.mirror.layout import (
    DATA,
    INDEX_SCHEMA,
    JSON_TYPE,
    SHARD_TYPE,
    compress_file,
    index_path,
    sbom_path,
    shard_path,
)
from export_center.mirror.options import MirrorDeltaOptions, MirrorOptions
from export_center.mirror.tuf import build_tuf_metadata
from export_center.signing.interface import Signer
from export_center.store.repository import RawView

_PROGRESS_EVERY = 200


@dataclass(frozen=True)
class _Spooled:
    path: str
    local: Path
    content_type: str
    records: int | None


class _Sink:
    """Opens bundle files: into staging directly, or into a plaintext spool to encrypt later."""

    def __init__(self, ctx: ExportContext, spool: bool) -> None:
        self._ctx = ctx
        self._spool = spool
        self._root = ctx.staging.root / "mirror-spool"
        self.spooled: list[_Spooled] = []

    def tmp_path(self) -> Path:
        self._root.mkdir(parents=True, exist_ok=True)
        return self._root / f"tmp-{uuid.uuid4().hex}"

    @contextmanager
    def open(
        self, path: str, content_type: str, *, records: int | None = None
    ) -> Iterator[StagedWriter]:
        if not self._spool:
            with self._ctx.staging.open(path, content_type, count_records=records is not None) as w:
                yield w
                if records is not None:
                    w.records = records
            return
        local = self._root / "plain" / path
        local.parent.mkdir(parents=True, exist_ok=True)
        with local.open("xb") as fh:
            w = StagedWriter(fh)
            yield w
            w.close()
        self.spooled.append(_Spooled(path, local, content_type, records))


class _ShardSet:
    """The raw and normalized shards of one (type, source), plus index entries."""

    def __init__(self, sink: _Sink, doc_type: str, source: str, level: int) -> None:
        self.sink = sink
        self.doc_type = doc_type
        self.source = source
        self.level = level
        self.raw_tmp = sink.tmp_path() if doc_type != "sbom" else None
        self.norm_tmp = sink.tmp_path()
        self.raw_fh = self.raw_tmp.open("wb") if self.raw_tmp else None
        self.norm_fh = self.norm_tmp.open("wb")
        self.records = 0
        self.deps = hashlib.sha256()
        self.index: list[dict[str, Any]] = []

    def add(self, rec: RawView, data: str) -> None:
        raw_p = shard_path("raw", self.doc_type, self.source)
        norm_p = shard_path("normalized", self.doc_type, self.source)
        entry: dict[str, Any] = {
            "observationId": rec.observation_id,
            "source": rec.source,
            "upstreamId": rec.upstream_id,
            "revision": rec.revision,
            "digest": rec.digest,
            "bytes": rec.size,
            "withdrawn": rec.withdrawn,
            "normalized": norm_p,
            "line": self.records,
        }
        if self.raw_fh is not None:
            self.raw_fh.write(raw_line(rec) + b"\n")
            entry["raw"] = raw_p
        else:
            # SBOMs keep their exact bytes as a file; the raw line's metadata goes to the index.
            entry["raw"] = sbom_path(rec.source, rec.upstream_id)
            entry.update(
                format=rec.format,
                mediaType=rec.media_type,
                supersedes=rec.supersedes,
                subject=orjson.loads(data).get("subject"),
            )
            with self.sink.open(entry["raw"], JSON_TYPE) as w:
                w.write(rec.content)
        self.norm_fh.write(normalized_line(rec, data) + b"\n")
        self.deps.update(f"{rec.observation_id} {rec.digest}\n".encode())
        self.index.append(entry)
        self.records += 1

    def close(self) -> None:
        self.norm_fh.close()
        if self.raw_fh is not None and self.raw_tmp is not None:
            self.raw_fh.close()
            with self.sink.open(
                shard_path("raw", self.doc_type, self.source), SHARD_TYPE, records=self.records
            ) as w:
                compress_file(self.raw_tmp, w, self.level)
            self.raw_tmp.unlink()
        with self.sink.open(
            shard_path("normalized", self.doc_type, self.source), SHARD_TYPE, records=self.records
        ) as w:
            compress_file(self.norm_tmp, w, self.level)
        self.norm_tmp.unlink()


MIRROR_LAYOUT = "https://stellaops.io/export-center/mirror-layout/v1"


def mirror_section(include: Iterable[str], opts: MirrorOptions) -> MirrorSection:
    """The manifest's ``mirror`` section of a mirror profile (what a delta's base must match)."""
    doc_types = [INCLUDE_TO_TYPE[i] for i in include if i in INCLUDE_TO_TYPE]
    return MirrorSection(
        include=tuple(sorted(TYPE_DIRS[t] for t in doc_types)),
        include_withdrawn=opts.include_withdrawn,
        layout=MIRROR_LAYOUT,
    )


class MirrorAdapter:
    """mirror:full (``delta=False``) and mirror:delta (``delta=True``)."""

    def __init__(self, *, delta: bool) -> None:
        self.delta = delta
        self._opts: MirrorOptions | None = None
        self._sink: _Sink | None = None

    # -- phase 1 ---------------------------------------------------------------------------

    def build(self, ctx: ExportContext) -> None:
        plan = ctx.plan
        opts = plan.spec.options
        if not isinstance(opts, MirrorOptions):
            raise BadInputError(f"{plan.spec.profile_kind} profile is not a mirror profile")
        self._opts = opts
        sink = _Sink(ctx, spool=opts.encryption is not None)
        self._sink = sink
        doc_types = [INCLUDE_TO_TYPE[i] for i in plan.spec.include if i in INCLUDE_TO_TYPE]
        level = plan.spec.compression.level if plan.spec.compression.algorithm == "zstd" else 10
        mirror = mirror_section(plan.spec.include, opts)

        base: BaseInfo | None = None
        reset = True
        if isinstance(opts, MirrorDeltaOptions):
            reset = opts.reset_baseline
            if opts.base is not None:
                # From the server's ledger of published exports, never a path (mirror.base).
                base = resolve_base(
                    ctx.store,
                    opts.base,
                    tenant=plan.tenant,
                    as_of_seq=plan.as_of_seq,
                    export_id=plan.export_id,
                    selectors=plan.selectors,
                    mirror=mirror,
                )
            # ``latest`` with no earlier mirror export of this selection: a full replacement.
            reset = reset or base is None

        if isinstance(opts, MirrorDeltaOptions) and not reset:
            assert base is not None
            dplan = plan_delta(
                ctx.store,
                plan.tenant,
                base.sequence,
                plan.as_of_seq,
                selectors=plan.selectors,
                doc_types=doc_types,
                include_withdrawn=opts.include_withdrawn,
            )
            records = self._progress(ctx, iter_shipped(ctx.store, plan.tenant, dplan.ship))
            self._write_records(ctx, sink, records, doc_types, level)
            ctx.delta = _delta_section(base, dplan, reset=False)
        else:
            records = self._full_records(ctx, doc_types, opts.include_withdrawn)
            total = self._write_records(ctx, sink, records, doc_types, level)
            if isinstance(opts, MirrorDeltaOptions):
                ctx.delta = _reset_section(base, total)

        # The policy parts json:policy writes; TUF targets like every file under data/. A mirror
        # that silently lacked a required policy would let the disconnected side evaluate
        # findings differently, so mode "required" refuses the export as json:policy does.
        policy = write_policy_parts(plan, ctx.store, sink.open)
        if policy is not None:
            ctx.policy = policy  # the same section json:policy writes
        ctx.mirror = mirror

    @staticmethod
    def _progress(
        ctx: ExportContext, records: Iterable[tuple[RawView, str]]
    ) -> Iterator[tuple[RawView, str]]:
        n = 0
        for item in records:
            n += 1
            if n % _PROGRESS_EVERY == 0:
                ctx.progress(_PROGRESS_EVERY)
                ctx.check_cancelled()
            yield item
        ctx.progress(n % _PROGRESS_EVERY)

    @staticmethod
    def _full_records(
        ctx: ExportContext, doc_types: list[str], include_withdrawn: bool
    ) -> Iterator[tuple[RawView, str]]:
        for doc_type in sorted(doc_types):
            for rec, data in selected_records(ctx, doc_type):
                if include_withdrawn or not rec.withdrawn:
                    yield rec, data

    @staticmethod
    def _write_records(
        ctx: ExportContext,
        sink: _Sink,
        records: Iterable[tuple[RawView, str]],
        doc_types: list[str],
        level: int,
    ) -> int:
        """Write records (ordered by type, source, upstream id); returns how many."""
        indexes: dict[str, list[dict[str, Any]]] = {t: [] for t in doc_types}
        total = 0
        for (doc_type, source), group in groupby(
            records, key=lambda p: (p[0].doc_type, p[0].source)
        ):
            shards = _ShardSet(sink, doc_type, source, level)
            try:
                for rec, data in group:
                    shards.add(rec, data)
            finally:
                shards.close()
            type_dir = TYPE_DIRS[doc_type]
            ctx.dependencies[f"{type_dir}/{source}"] = shards.deps.hexdigest()
            ctx.counts[type_dir] = ctx.counts.get(type_dir, 0) + shards.records
            indexes.setdefault(doc_type, []).extend(shards.index)
            total += shards.records
        for doc_type in sorted(indexes):
            entries = indexes[doc_type]
            ctx.counts.setdefault(TYPE_DIRS[doc_type], 0)
            body = {
                "schema": INDEX_SCHEMA,
                "recordType": doc_type,
                "records": entries,
            }
            with sink.open(index_path(doc_type), JSON_TYPE) as w:
                w.write(orjson.dumps(body, option=orjson.OPT_SORT_KEYS) + b"\n")
        return total

    # -- phase 2 ---------------------------------------------------------------------------

    def seal(self, ctx: ExportContext, signer: Signer) -> dict[str, Any]:
        """Encrypt (when asked) and write TUF metadata; returns provenance parameters."""
        assert self._opts is not None and self._sink is not None, "build() first"
        opts, sink, plan = self._opts, self._sink, ctx.plan
        params: dict[str, Any] = {}
        if opts.encryption is not None:
            key = crypto.new_data_key()
            files = []
            for item in sorted(sink.spooled, key=lambda f: f.path.encode()):
                digest, size = sha256_file(item.local)
                with (
                    item.local.open("rb") as src,
                    ctx.staging.open(
                        item.path, item.content_type, count_records=item.records is not None
                    ) as w,
                ):
                    crypto.encrypt_stream(src, w, key, crypto.aad_for(plan.export_id, item.path))
                    if item.records is not None:
                        w.records = item.records
                files.append(PlainFile(path=item.path, digest=prefixed(digest), size=size))
            recipients = crypto.wrap_data_key(key, opts.encryption, plan.export_id, ctx.kms)
            ctx.encryption = EncryptionSection(
                algorithm=crypto.ALGORITHM,
                aad=crypto.AAD_FORMAT,
                nonce="12 random bytes prefixed to each file; the 16-byte tag follows it",
                recipients=tuple(recipients),
                files=tuple(files),
            )
            params["encryption"] = {
                "algorithm": crypto.ALGORITHM,
                "recipients": [*opts.encryption.recipients, *opts.encryption.kms],
            }
            shutil.rmtree(ctx.staging.root / "mirror-spool", ignore_errors=True)
        targets = {
            f.path: (f.sha256, f.size) for f in ctx.staging.files() if f.path.startswith(DATA)
        }
        # Root versions count from the tenant's first change: the same chain for every export.
        anchor = ctx.store.sequence_time(plan.tenant, 1) if plan.as_of_seq else None
        for path, data in build_tuf_metadata(
            targets,
            signer,
            as_of=plan.as_of_time,
            version=plan.as_of_seq,
            options=opts.tuf,
            root_anchor=anchor.replace(microsecond=0) if anchor else None,
        ).items():
            ctx.staging.add_bytes(path, data, JSON_TYPE)
        if ctx.delta is not None:
            params["base"] = {
                "exportId": ctx.delta.base_export_id,
                "manifestDigest": ctx.delta.base_manifest_digest,
                "resetBaseline": ctx.delta.reset_baseline,
            }
        return params


def _delta_section(base: BaseInfo, dplan: DeltaPlan, *, reset: bool) -> DeltaSection:
    return DeltaSection(
        base_export_id=base.export_id,
        base_manifest_digest=base.manifest_digest,
        base_sequence=base.sequence,
        added=dplan.added,
        updated=dplan.updated,
        removed=dplan.tombstones,
        reset_baseline=reset,
    )


def _reset_section(base: BaseInfo | None, total: int) -> DeltaSection:
    return DeltaSection(
        base_export_id=base.export_id if base else None,
        base_manifest_digest=base.manifest_digest if base else None,
        base_sequence=base.sequence if base else None,
        added=total,
        updated=0,
        removed=(),
        reset_baseline=True,
    )
