"""Installing a Trivy bundle into a Trivy cache directory on the disconnected side.

A bundle is read only after it has passed every bundle check and the Trivy checks of
:func:`export_center.distribution.trivy.open_trivy_bundle` (the same opening a push uses).

Then :func:`install_trivy_bundle` unpacks the archive (``trivy.db`` or ``trivy-java.db``, and
``metadata.json``) into a staging directory inside the destination directory (the same file
system), fsyncs, and renames each file over the old one: Trivy holds a shared lock on an open
``trivy.db``, and a rename leaves a running scan its old file, where an overwrite in place would
change the pages under it. A bundle that fails anything leaves the cache as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from export_center.archive.reader import Limits, iter_members
from export_center.bundle.verify import BundleReport
from export_center.distribution.trivy import open_trivy_bundle
from export_center.errors import (
    ConflictError,
    UnsafeArchiveError,
    VerificationError,
    output_error,
)
from export_center.signing.interface import PublicKey
from export_center.trivy.artifact import TrivyDbKind

__all__ = ["InstalledDb", "TrivyInstallResult", "install_trivy_bundle"]

log = logging.getLogger(__name__)

_MAX_METADATA_BYTES = 64 * 1024
# The DB archive holds two files; anything beyond is refused by name anyway.
_LAYER_LIMITS = Limits(max_members=8, max_path_depth=1, max_compression_ratio=1000.0)
_BOLT_MAGIC = 0xED0CDAED
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class InstalledDb:
    """One database now in the cache."""

    kind: TrivyDbKind
    directory: Path  # CACHE/db or CACHE/java-db
    metadata: dict[str, Any]
    replaced_updated_at: str | None  # the UpdatedAt of the database it replaced


@dataclass(frozen=True)
class TrivyInstallResult:
    report: BundleReport
    export_id: str
    root_hash: str
    installed: InstalledDb


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where} is not a string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{where} has no time zone")
    return parsed


def _check_metadata(data: bytes, kind: TrivyDbKind) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if doc.get("Version") != kind.schema_version:
            raise ValueError(f"Version {doc.get('Version')!r}, Trivy needs {kind.schema_version}")
        for name in ("UpdatedAt", "NextUpdate", "DownloadedAt"):
            _parse_time(doc.get(name), name)
    except (orjson.JSONDecodeError, ValueError) as e:
        raise VerificationError("trivy", f"{kind.archive_name}: metadata.json: {e}") from e
    return doc


def _check_db_file(path: Path, kind: TrivyDbKind) -> None:
    with path.open("rb") as fh:
        head = fh.read(32)
    if kind.db_name == "trivy.db":
        ok = len(head) >= 24 and int.from_bytes(head[16:20], "little") == _BOLT_MAGIC
    else:
        ok = head.startswith(_SQLITE_MAGIC)
    if not ok:
        raise VerificationError("trivy", f"{kind.archive_name}: {kind.db_name} is not a database")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unpack_layer(archive: Path, kind: TrivyDbKind, staging: Path) -> dict[str, Any]:
    """Unpack ``metadata.json`` and the database of ``kind`` from the layer archive into
    ``staging``; nothing else is accepted. Returns the checked metadata."""
    metadata: bytes | None = None
    seen: set[str] = set()
    try:
        for member in iter_members(archive, _LAYER_LIMITS):
            if member.is_dir or member.name not in ("metadata.json", kind.db_name):
                raise VerificationError(
                    "trivy", f"{kind.archive_name}: unexpected member {member.name!r}"
                )
            seen.add(member.name)
            if member.name == "metadata.json":
                if member.size > _MAX_METADATA_BYTES:
                    raise VerificationError("trivy", f"{kind.archive_name}: metadata.json too big")
                metadata = member.read()
                out = staging / "metadata.json"
                out.write_bytes(metadata)
            else:
                out = staging / kind.db_name
                with out.open("xb") as fh:
                    for chunk in member.chunks():
                        fh.write(chunk)
            out.chmod(0o644)
            _fsync_file(out)
    except UnsafeArchiveError as e:
        raise VerificationError("trivy", f"{kind.archive_name}: {e.message}") from e
    if metadata is None or kind.db_name not in seen:
        raise VerificationError(
            "trivy", f"{kind.archive_name} must hold {kind.db_name} and metadata.json"
        )
    doc = _check_metadata(metadata, kind)
    _check_db_file(staging / kind.db_name, kind)
    _fsync_dir(staging)
    return doc


def _installed_updated_at(target: Path) -> str | None:
    try:
        doc = orjson.loads((target / "metadata.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    value = doc.get("UpdatedAt") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def _make_dirs(target: Path) -> list[Path]:
    """Create ``target`` and missing parents; the ones created, innermost first."""
    created: list[Path] = []
    p = target
    while not p.exists():
        created.append(p)
        p = p.parent
    target.mkdir(parents=True, exist_ok=True)
    return created


def install_trivy_bundle(
    bundle: str | Path,
    cache_dir: Path,
    trust_roots: Mapping[str, PublicKey],
    *,
    force: bool = False,
    limits: Limits | None = None,
    registry_credentials: tuple[str, str] | None = None,
    tenant: str | None = None,
) -> TrivyInstallResult:
    """Verify the Trivy bundle ``bundle`` and install its database into the Trivy cache
    ``cache_dir`` (``db/trivy.db`` + ``db/metadata.json``, or ``java-db/trivy-java.db`` +
    ``java-db/metadata.json``), atomically per file.

    A database older (by ``UpdatedAt``) than the installed one is refused unless ``force``:
    a replayed old bundle must not hide newer advisories. With ``tenant``, a bundle of another
    tenant is refused (a key trusted for one tenant does not make another's database
    installable).

    Raises:
        TrivyBundleRefused: the bundle failed a check; the cache is untouched.
        VerificationError: the archive inside does not hold a valid database; untouched.
        ConflictError: the bundle's database is older than the installed one; untouched.
        NotFoundError: no such bundle.
        BadInputError: the cache directory cannot be created (a file in the way, ...).
        OSError: the cache directory cannot be written.
    """
    work = Path(tempfile.mkdtemp(prefix="stella-trivy-install-"))
    try:
        opened = open_trivy_bundle(
            bundle,
            trust_roots,
            work,
            part="archive",
            limits=limits,
            registry_credentials=registry_credentials,
            tenant=tenant,
        )
        kind = opened.kind
        archive = opened.root / kind.archive_path
        target = cache_dir / kind.cache_subdir
        try:
            created = _make_dirs(target)
        except OSError as e:
            raise output_error(cache_dir, "the Trivy cache", e) from e
        staging = Path(tempfile.mkdtemp(prefix=".stella-install-", dir=target))
        committed = False
        try:
            metadata = _unpack_layer(archive, kind, staging)
            previous = _installed_updated_at(target)
            if (
                previous is not None
                and not force
                and _parse_time(previous, "UpdatedAt")
                > _parse_time(metadata["UpdatedAt"], "UpdatedAt")
            ):
                raise ConflictError(
                    f"{target}: the installed {kind.db_name} (UpdatedAt {previous}) is newer "
                    f"than the bundle's ({metadata['UpdatedAt']})",
                    hint="pass --force to install an older database anyway",
                )
            # The database first: metadata.json is what says which database is there.
            (staging / kind.db_name).replace(target / kind.db_name)
            (staging / "metadata.json").replace(target / "metadata.json")
            committed = True
            _fsync_dir(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if not committed:
                for d in created:
                    try:
                        d.rmdir()
                    except OSError:
                        break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("installed %s of export %s into %s", kind.db_name, opened.report.export_id, target)
    return TrivyInstallResult(
        report=opened.report,
        export_id=str(opened.report.export_id),
        root_hash=str(opened.report.root_hash),
        installed=InstalledDb(kind, target, metadata, previous),
    )
