"""Where published bundles live. One interface; the settings choose the backend.

The filesystem store (the default, and the shared store of a scale-out: mount the same path on
every worker and API host) keeps each run's bundle in its own directory ``<root>/<tenant>/<run>/``:
two runs of the same plan publish the same archive name, and a per-run directory lets retention
delete one without touching the other. The bundle writer builds in a staging directory inside the
run directory and publishes by rename, so a reader never sees a partial archive.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from export_center.errors import BadInputError

log = logging.getLogger(__name__)


class ArtifactStore(Protocol):
    root: Path

    def run_dir(self, tenant: str, run_id: str) -> Path:
        """The run's directory (created), where its bundle is built and published."""
        ...

    def relative(self, path: Path) -> str:
        """``path`` (inside the store) as the store-relative name kept in the database."""
        ...

    def resolve(self, name: str) -> Path:
        """The local path of a store-relative name."""
        ...

    def clean_staging(self, tenant: str, run_id: str) -> int:
        """Remove a dead attempt's staging directories; returns how many."""
        ...

    def delete_run(self, tenant: str, run_id: str) -> None: ...


class FilesystemArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, tenant: str, run_id: str) -> Path:
        for part in (tenant, run_id):
            if not part or "/" in part or "\\" in part or part in {".", ".."}:
                raise BadInputError(f"invalid artifact path component {part!r}")
        return self.root / tenant / run_id

    def run_dir(self, tenant: str, run_id: str) -> Path:
        d = self._dir(tenant, run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def resolve(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise BadInputError(f"artifact name {name!r} leaves the artifact store")
        return path

    def clean_staging(self, tenant: str, run_id: str) -> int:
        d = self._dir(tenant, run_id)
        if not d.is_dir():
            return 0
        # The bundle writer stages in ".<export id>.<random>" directories next to the archive.
        stale = [p for p in d.iterdir() if p.name.startswith(".") and p.is_dir()]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return len(stale)

    def delete_run(self, tenant: str, run_id: str) -> None:
        d = self._dir(tenant, run_id)
        shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            log.error("could not remove artifact directory %s", d)


def read_bundle_files(
    archive: Path, names: Collection[str], *, max_bytes: int = 64 << 20
) -> dict[str, bytes]:
    """The named files of a published bundle archive, read through the safe archive reader.

    ``names`` are bundle paths (``manifests/export.json``); a member matches by its exact name
    or under one top directory. Reading stops as soon as all were found.

    Raises:
        UnsafeArchiveError: the archive is corrupt (a published bundle should never be).
        BadInputError: a wanted file is larger than ``max_bytes``.
        OSError: the archive cannot be read.
    """
    from export_center.archive.reader import iter_members

    wanted = set(names)
    found: dict[str, bytes] = {}
    for member in iter_members(archive):
        if member.is_dir:
            continue
        key = member.name if member.name in wanted else member.name.partition("/")[2]
        if key not in wanted or key in found:
            continue
        if member.size > max_bytes:
            raise BadInputError(f"{archive.name}: {key} is {member.size} bytes (over {max_bytes})")
        found[key] = member.read()
        if len(found) == len(wanted):
            break
    return found
