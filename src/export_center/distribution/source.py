"""Where a bundle to import comes from: an archive, a bundle directory, an OCI image layout
(``oci:DIR[:TAG]``) or a registry (``oci://HOST/REPO:TAG``).

Whatever the source, the importer works on a private copy in its work directory: the archive
(with its ``.sha256``/``.sig`` sidecars) copied, a directory copied without following links,
an OCI artifact materialized file by file. Verification and application then read only that
copy, so nothing can change the bytes between the checks and their use.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from export_center.errors import NotFoundError

Origin = Literal["archive", "directory", "oci-layout", "registry"]


@dataclass(frozen=True)
class OpenedBundle:
    label: str  # what the user named
    path: Path  # private copy: the archive file, or the bundle directory
    is_archive: bool
    origin: Origin


def _layout_ref(ref: str) -> tuple[Path, str | None]:
    rest = ref[len("oci:") :]
    path, sep, tag = rest.rpartition(":")
    if sep and path and "/" not in tag:
        return Path(path), tag
    return Path(rest), None


def open_source(
    ref: str, work: Path, *, registry_credentials: tuple[str, str] | None = None
) -> OpenedBundle:
    """Make a private copy of the bundle ``ref`` under ``work`` (pulled from a registry with
    ``registry_credentials`` for ``oci://`` references).

    Raises:
        NotFoundError: nothing at ``ref``.
        BadInputError, RegistryError, UnsafeArchiveError, VerificationError: as the OCI readers.
    """
    work.mkdir(parents=True, exist_ok=True)
    if ref.startswith("oci://"):
        from export_center.oci.registry import pull_bundle

        dest = work / "bundle"
        pull_bundle(ref, dest, credentials=registry_credentials)
        return OpenedBundle(ref, dest, False, "registry")
    if ref.startswith("oci:"):
        from export_center.oci.layout import read_oci_layout

        layout, tag = _layout_ref(ref)
        dest = work / "bundle"
        read_oci_layout(layout, tag, dest)
        return OpenedBundle(ref, dest, False, "oci-layout")
    src = Path(ref)
    if src.is_dir():
        dest = work / "bundle"
        shutil.copytree(src, dest, symlinks=True)
        return OpenedBundle(ref, dest, False, "directory")
    if not src.is_file():
        raise NotFoundError(f"{ref}: no such bundle")
    copy_dir = work / "archive"
    copy_dir.mkdir()
    dest = copy_dir / src.name
    shutil.copyfile(src, dest)
    for suffix in (".sha256", ".sig"):
        side = src.with_name(src.name + suffix)
        if side.is_file():
            shutil.copyfile(side, dest.with_name(dest.name + suffix))
    return OpenedBundle(ref, dest, True, "archive")
