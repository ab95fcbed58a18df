"""Build Trivy's Java index database ``trivy-java.db`` (SQLite) and ``javadb.tar.gz``.

Trivy identifies a JAR without ``pom.properties`` by its SHA-1 (or by ``artifactId-version.jar``)
in this index, then matches the resulting GAV against the ``maven::`` buckets of trivy.db. The
schema is upstream trivy-java-db's, statement for statement (docs/trivy.md, "What Trivy reads").

Determinism: rows are staged in a temporary table, then inserted in sorted order (artifacts by
group and artifact id, so ids are assigned in that order; indices by artifact, version and
SHA-1), and the file is VACUUMed. The same components and SQLite library give the same bytes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from packageurl import PackageURL

from export_center.errors import BadInputError
from export_center.model import Component
from export_center.trivy.dbwriter import metadata_json, write_db_archive

__all__ = [
    "JAVA_DB_SCHEMA",
    "JAVA_DB_SCHEMA_VERSION",
    "JavaDbReport",
    "java_metadata_json",
    "write_java_db",
    "write_java_db_archive",
]

log = logging.getLogger(__name__)

#: trivy-java.db schema version Trivy v0.76 requires (metadata.json "Version").
JAVA_DB_SCHEMA_VERSION = 1

#: Upstream trivy-java-db's schema, exactly.
JAVA_DB_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT)",
    "CREATE TABLE indices(artifact_id INTEGER, version TEXT, sha1 BLOB, archive_type TEXT, "
    "foreign key (artifact_id) references artifacts(id))",
    "CREATE UNIQUE INDEX artifacts_idx ON artifacts(artifact_id, group_id)",
    "CREATE INDEX indices_artifact_idx ON indices(artifact_id)",
    "CREATE UNIQUE INDEX indices_sha1_idx ON indices(sha1)",
)

_ARCHIVE_TYPES = ("jar", "aar")


@dataclass(frozen=True)
class JavaDbReport:
    """What :func:`write_java_db` wrote and what it left out (reason → count)."""

    artifacts: int
    indices: int
    skipped: tuple[tuple[str, int], ...]


def _index_row(component: Component) -> tuple[str, str, str, bytes, str] | str:
    """(group, artifact, version, sha1 bytes, archive type), or the reason to skip."""
    if not component.purl:
        return "no purl"
    try:
        purl = PackageURL.from_string(component.purl)
    except ValueError:
        return "unparseable purl"
    if purl.type != "maven":
        return "not a maven purl"
    if not purl.namespace or not purl.name or not purl.version:
        return "maven purl without group, artifact or version"
    sha1 = component.hash("sha1")
    if sha1 is None:
        return "no sha1 hash"
    try:
        digest = bytes.fromhex(sha1)
    except ValueError:
        return "sha1 is not hex"
    if len(digest) != 20:
        return "sha1 is not 20 bytes"
    qualifiers = purl.qualifiers if isinstance(purl.qualifiers, dict) else {}
    archive_type = str(qualifiers.get("type", "jar")).lower()
    if archive_type not in _ARCHIVE_TYPES:
        return f"archive type {archive_type!r} is neither jar nor aar"
    return purl.namespace, purl.name, purl.version, digest, archive_type


def write_java_db(components: Iterable[Component], out: Path) -> JavaDbReport:
    """Write ``trivy-java.db`` at ``out`` (atomically) from components with ``pkg:maven`` purls
    and SHA-1 hashes; others are counted in ``skipped``. When two components share a SHA-1 (the
    column is unique), the first in (group, artifact, version, type) order is kept.

    Raises:
        BadInputError: ``out``'s directory does not exist.
    """
    if not out.parent.is_dir():
        raise BadInputError(f"{out.parent} is not a directory")
    skipped: Counter[str] = Counter()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA temp_store = FILE")
            # Staging lives in a temporary database: the file gets only the upstream schema.
            conn.execute(
                "CREATE TEMP TABLE staged(group_id TEXT, artifact_id TEXT, version TEXT,"
                " sha1 BLOB, archive_type TEXT)"
            )
            batch: list[tuple[str, str, str, bytes, str]] = []
            conn.execute("BEGIN")
            for component in components:
                row = _index_row(component)
                if isinstance(row, str):
                    skipped[row] += 1
                    continue
                batch.append(row)
                if len(batch) >= 5000:
                    conn.executemany("INSERT INTO staged VALUES (?, ?, ?, ?, ?)", batch)
                    batch.clear()
            conn.executemany("INSERT INTO staged VALUES (?, ?, ?, ?, ?)", batch)
            for statement in JAVA_DB_SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO artifacts(group_id, artifact_id) SELECT DISTINCT group_id,"
                " artifact_id FROM staged ORDER BY group_id, artifact_id"
            )
            conn.execute(
                "INSERT OR IGNORE INTO indices(artifact_id, version, sha1, archive_type)"
                " SELECT a.id, s.version, s.sha1, s.archive_type FROM staged s JOIN artifacts a"
                " ON a.group_id = s.group_id AND a.artifact_id = s.artifact_id"
                " ORDER BY a.id, s.version, s.archive_type, s.sha1"
            )
            # An artifact whose every index lost a SHA-1 collision would point at nothing.
            conn.execute("DELETE FROM artifacts WHERE id NOT IN (SELECT artifact_id FROM indices)")
            staged = conn.execute("SELECT count(*) FROM staged").fetchone()[0]
            artifacts = conn.execute("SELECT count(*) FROM artifacts").fetchone()[0]
            indices = conn.execute("SELECT count(*) FROM indices").fetchone()[0]
            conn.execute("DROP TABLE staged")
            conn.execute("COMMIT")
            if staged > indices:
                skipped["sha1 already indexed for another artifact or version"] += staged - indices
            conn.execute("VACUUM")
        finally:
            conn.close()
        tmp.chmod(0o644)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s: %d artifacts, %d indices", out, artifacts, indices)
    return JavaDbReport(
        artifacts=artifacts, indices=indices, skipped=tuple(sorted(skipped.items()))
    )


def java_metadata_json(as_of: datetime, validity: timedelta) -> bytes:
    """The Java DB's ``metadata.json`` (Version 1). Raises BadInputError as
    :func:`~export_center.trivy.dbwriter.metadata_json` does."""
    return metadata_json(as_of, validity, version=JAVA_DB_SCHEMA_VERSION)


def write_java_db_archive(
    out: Path, java_db: Path, metadata: bytes, *, mtime: int | None = None
) -> str:
    """``javadb.tar.gz``: ``trivy-java.db`` and ``metadata.json`` at top level,
    deterministic. Returns its ``sha256:`` digest."""
    return write_db_archive(out, java_db, metadata, db_name="trivy-java.db", mtime=mtime)
