"""trivy:java-db — Trivy's Java index database, built from ingested SBOM components.

Trivy identifies a JAR without ``pom.properties`` by its SHA-1 in ``trivy-java.db`` (see
:mod:`export_center.trivy.javadb`). The index here holds every component of the selected SBOMs
that carries a ``pkg:maven`` purl with a version and a SHA-1 hash; the rest are counted as
skipped, with the reason, in the manifest's ``trivy.javaDb.skipped``.

Bundle content: ``trivy/javadb.tar.gz`` (``trivy-java.db`` + ``metadata.json``, Version 1) and
``trivy/oci/java-db/``, Trivy's OCI artifact (index tagged ``1``) for ``--java-db-repository``.

Profile options: ``validity`` only, as for trivy:db (default 7 days).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from export_center.adapters.interface import ExportContext
from export_center.adapters.json_raw import selected_records
from export_center.adapters.trivy_db import stage_trivy_artifact, trivy_options
from export_center.bundle.manifest import TrivyJavaDbSection, TrivySection
from export_center.model import Component, component_from_json
from export_center.trivy.artifact import JAVA_DB
from export_center.trivy.javadb import java_metadata_json, write_java_db, write_java_db_archive

__all__ = ["TrivyJavaDbAdapter"]


class TrivyJavaDbAdapter:
    """Writes ``trivy/javadb.tar.gz`` and ``trivy/oci/java-db/``."""

    def build(self, ctx: ExportContext) -> None:
        plan = ctx.plan
        opts = trivy_options(plan.spec)  # validity only: dataSources is refused at create
        deps: dict[str, Any] = {}
        sboms = components = 0

        def iter_components() -> Iterator[Component]:
            nonlocal sboms, components
            for rec, data in selected_records(ctx, "sbom"):
                h = deps.get(rec.source)
                if h is None:
                    h = deps[rec.source] = hashlib.sha256()
                h.update(f"{rec.observation_id} {rec.digest}\n".encode())
                if rec.withdrawn:
                    continue
                sboms += 1
                for c in orjson.loads(data).get("components") or ():
                    components += 1
                    yield component_from_json(c)

        work = Path(tempfile.mkdtemp(prefix="trivy-java-db-", dir=ctx.staging.root))
        try:
            db = work / JAVA_DB.db_name
            report = write_java_db(iter_components(), db)
            ctx.check_cancelled()
            metadata = java_metadata_json(plan.as_of_time, opts.validity_delta)
            archive = work / JAVA_DB.archive_name
            digest = write_java_db_archive(archive, db, metadata)
            staged_archive, staged_oci = stage_trivy_artifact(ctx, JAVA_DB, archive, digest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for source, h in sorted(deps.items()):
            ctx.dependencies[f"sboms/{source}"] = h.hexdigest()
        ctx.counts["sboms"] = ctx.counts.get("sboms", 0) + sboms
        ctx.counts["components"] = components
        ctx.counts["javaArtifacts"] = report.artifacts
        ctx.counts["javaIndices"] = report.indices
        meta = orjson.loads(metadata)
        ctx.trivy = TrivySection(
            java_db=TrivyJavaDbSection(
                archive=staged_archive,
                oci=staged_oci,
                schema_version=meta["Version"],
                updated_at=meta["UpdatedAt"],
                next_update=meta["NextUpdate"],
                artifacts=report.artifacts,
                indices=report.indices,
                skipped=dict(report.skipped),
            )
        )
