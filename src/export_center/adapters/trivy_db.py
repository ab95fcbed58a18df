"""trivy:db — Trivy's vulnerability database, built from the store's normalized advisories.

Bundle content (docs/trivy.md gives the format):

- ``trivy/db.tar.gz``: Trivy's own archive, ``trivy.db`` and ``metadata.json`` at top level,
  what ``trivy --cache-dir`` expects under ``db/`` once unpacked;
- ``trivy/oci/db/``: the same archive as Trivy's OCI artifact, an OCI image layout (index tagged
  ``2``) that ``stella export push`` sends to a registry for ``--db-repository``.

Advisories stream from the store at the plan's as-of cursor, selectors applied; withdrawn ones
are left out. Each store source becomes one data source: language advisories go to
``<ecosystem>::<source name>`` buckets (see :mod:`export_center.trivy.dbwriter`).

Profile options (:class:`~export_center.planner.options.TrivyOptions`; unknown keys are refused
when the revision is written)::

    options:
      validity: P7D          # NextUpdate = as-of + validity; ISO 8601 duration or hours (int)
      dataSources:           # how a store source is shown in Trivy reports (optional)
        pypa: {id: pypa, name: PyPA Advisory Database, url: https://github.com/pypa/advisory-database}

metadata.json: ``UpdatedAt`` = ``DownloadedAt`` = the plan's as-of time (never the wall clock),
``NextUpdate`` = as-of + validity (default 7 days).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from export_center.adapters.interface import ExportContext
from export_center.adapters.json_raw import selected_records
from export_center.bundle.manifest import TrivyArchive, TrivyDbSection, TrivyOci, TrivySection
from export_center.digests import prefixed
from export_center.errors import BadInputError
from export_center.model import Advisory, advisory_from_json
from export_center.planner.options import (
    DEFAULT_VALIDITY,
    TrivyDbOptions,
    TrivyOptions,
    parse_validity,
)
from export_center.planner.profiles import ProfileSpec
from export_center.trivy.artifact import DB, TrivyDbKind, layout_files
from export_center.trivy.dbwriter import metadata_json, write_db_archive, write_trivy_db
from export_center.trivy.mapping import DataSource

__all__ = [
    "DEFAULT_VALIDITY",
    "TrivyDbAdapter",
    "parse_validity",
    "stage_trivy_artifact",
    "trivy_options",
]

_CHUNK = 1 << 20


def trivy_options(spec: ProfileSpec) -> TrivyOptions:
    """The options of a trivy profile (validated with the revision, see
    :mod:`export_center.planner.options`).

    Raises:
        BadInputError: ``spec`` is not a trivy profile.
    """
    if not isinstance(spec.options, TrivyOptions):
        raise BadInputError(f"{spec.profile_kind} profile is not a Trivy profile")
    return spec.options


def stage_trivy_artifact(
    ctx: ExportContext, kind: TrivyDbKind, archive: Path, digest: str
) -> tuple[TrivyArchive, TrivyOci]:
    """Stage ``archive`` as ``trivy/<archive name>`` and as the layer of Trivy's OCI image
    layout under ``trivy/oci/<variant>/``; returns the manifest's description of both."""
    size = archive.stat().st_size
    paths = [kind.archive_path]
    files, layer_blob = layout_files(kind, digest, size)
    paths.append(f"{kind.layout_dir}/{layer_blob}")
    for path in paths:
        with ctx.staging.open(path, kind.layer_type) as w, archive.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                w.write(chunk)
        if prefixed(w.hexdigest) != digest:
            raise BadInputError(f"{archive} changed while it was staged")
    for rel, data, content_type in files:
        ctx.staging.add_bytes(f"{kind.layout_dir}/{rel}", data, content_type)
    manifest_blob = next(rel for rel, _d, ct in files if ct.endswith("manifest.v1+json"))
    return (
        TrivyArchive(path=kind.archive_path, digest=digest, size=size),
        TrivyOci(
            layout=kind.layout_dir,
            tag=kind.tag,
            manifest_digest=prefixed(manifest_blob.rsplit("/", 1)[-1]),
            layer_media_type=kind.layer_type,
        ),
    )


class TrivyDbAdapter:
    """Writes ``trivy/db.tar.gz`` and ``trivy/oci/db/``."""

    def build(self, ctx: ExportContext) -> None:
        plan = ctx.plan
        opts = trivy_options(plan.spec)
        validity = opts.validity_delta
        named = opts.data_sources if isinstance(opts, TrivyDbOptions) else {}
        sources = {name: DataSource(o.id, o.name, o.url) for name, o in sorted(named.items())}
        deps: dict[str, Any] = {}
        withdrawn: Counter[str] = Counter()
        fed = 0

        def advisories() -> Iterator[tuple[str, Advisory]]:
            nonlocal fed
            for rec, data in selected_records(ctx, "advisory"):
                h = deps.get(rec.source)
                if h is None:
                    h = deps[rec.source] = hashlib.sha256()
                # The input set: every selected record, withdrawn ones included (leaving
                # them out is part of what this input produced).
                h.update(f"{rec.observation_id} {rec.digest}\n".encode())
                advisory = advisory_from_json(orjson.loads(data))
                if rec.withdrawn or advisory.withdrawn:
                    withdrawn[rec.source] += 1
                    continue
                fed += 1
                yield rec.source, advisory

        work = Path(tempfile.mkdtemp(prefix="trivy-db-", dir=ctx.staging.root))
        try:
            db = work / "trivy.db"
            report = write_trivy_db(advisories(), db, sources=sources, work_dir=work)
            ctx.check_cancelled()
            metadata = metadata_json(plan.as_of_time, validity)
            archive = work / DB.archive_name
            digest = write_db_archive(archive, db, metadata)
            staged_archive, staged_oci = stage_trivy_artifact(ctx, DB, archive, digest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for source, h in sorted(deps.items()):
            ctx.dependencies[f"advisories/{source}"] = h.hexdigest()
        ctx.counts["advisories"] = ctx.counts.get("advisories", 0) + fed
        ctx.counts["withdrawn"] = sum(withdrawn.values())
        ctx.counts["trivyEntries"] = report.entries
        ctx.counts["trivyVulnerabilities"] = report.vulnerabilities
        meta = orjson.loads(metadata)
        ctx.trivy = TrivySection(
            db=TrivyDbSection(
                archive=staged_archive,
                oci=staged_oci,
                schema_version=meta["Version"],
                updated_at=meta["UpdatedAt"],
                next_update=meta["NextUpdate"],
                advisories=report.advisories,
                mapped_advisories=report.mapped,
                withdrawn_left_out=sum(withdrawn.values()),
                entries=report.entries,
                merged_entries=report.merged_entries,
                vulnerabilities=report.vulnerabilities,
                buckets=tuple(report.buckets),
                skipped=dict(report.skipped),
            )
        )
