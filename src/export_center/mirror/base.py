"""The base of a mirror:delta: which earlier export the delta is relative to.

The base is named by its export id and the sha256 of its ``manifests/export.json`` (the
manifest digest), and its as-of sequence is the delta's lower cursor. It comes from the profile
options (:class:`~export_center.mirror.options.BaseRef`): a base bundle whose manifest is read,
a directory whose newest earlier mirror bundle of the tenant is taken, or the facts given
explicitly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from export_center.bundle.manifest import EXPORT_JSON, MirrorSection, parse_manifest
from export_center.digests import prefixed, sha256_hex
from export_center.errors import BadInputError, NotFoundError, UnsafeArchiveError, VerificationError
from export_center.mirror.options import BaseRef
from export_center.planner.profiles import Selectors

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.zst", ".tar.gz", ".tar")
_MAX_MANIFEST = 64 * 1024 * 1024


@dataclass(frozen=True)
class BaseInfo:
    export_id: str
    manifest_digest: str
    sequence: int
    tenant: str | None = None
    selectors: Selectors | None = None
    mirror: MirrorSection | None = None  # the base's "mirror" manifest section


def read_manifest_bytes(bundle: Path) -> bytes:
    """``manifests/export.json`` of a bundle archive or directory (not verified).

    Raises:
        NotFoundError: no such bundle, or it has no manifest.
        UnsafeArchiveError: the archive is hostile.
    """
    if bundle.is_dir():
        path = bundle / EXPORT_JSON
        if not path.is_file():
            raise NotFoundError(f"{bundle}: no {EXPORT_JSON}")
        return path.read_bytes()
    if not bundle.is_file():
        raise NotFoundError(f"{bundle}: no such bundle")
    from export_center.archive.reader import Limits, iter_members

    for member in iter_members(bundle, Limits()):
        if member.name == EXPORT_JSON and not member.is_dir:
            if member.size > _MAX_MANIFEST:
                raise UnsafeArchiveError(f"{bundle}: {EXPORT_JSON} is {member.size} bytes")
            return member.read()
    raise NotFoundError(f"{bundle}: no {EXPORT_JSON} in the archive")


def base_from_manifest(raw: bytes, where: str) -> BaseInfo:
    """Parse the facts a delta needs from a base manifest.

    Raises:
        BadInputError: not an export manifest, or not a mirror bundle.
    """
    try:
        m = parse_manifest(raw, f"{where}: {EXPORT_JSON}", check="base manifest")
    except VerificationError as e:
        raise BadInputError(e.message) from e
    if m.profile.kind != "mirror":
        raise BadInputError(f"{where}: export {m.export_id} is not a mirror bundle")
    return BaseInfo(
        export_id=m.export_id,
        manifest_digest=prefixed(sha256_hex(raw)),
        sequence=m.as_of.sequence,
        tenant=m.tenant,
        selectors=m.selectors,
        mirror=m.mirror,
    )


def _candidates(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES) and not p.name.startswith(".")
    )


def resolve_base(ref: BaseRef, *, tenant: str, as_of_seq: int, export_id: str) -> BaseInfo:
    """The base a delta export names.

    Raises:
        NotFoundError: the base bundle (or any base in the directory) does not exist.
        BadInputError: the base is not a mirror bundle of this tenant, or is newer than the
            delta's as-of sequence.
    """
    if ref.export_id is not None:
        assert ref.manifest_digest is not None and ref.sequence is not None
        info = BaseInfo(ref.export_id, ref.manifest_digest, ref.sequence)
    elif ref.bundle is not None:
        info = base_from_manifest(read_manifest_bytes(ref.bundle), str(ref.bundle))
    else:
        assert ref.dir is not None
        info = _newest_in(ref.dir, tenant=tenant, as_of_seq=as_of_seq, export_id=export_id)
    if info.tenant is not None and info.tenant != tenant:
        raise BadInputError(f"base export {info.export_id} belongs to tenant {info.tenant!r}")
    if info.sequence > as_of_seq:
        raise BadInputError(
            f"base export {info.export_id} is as of sequence {info.sequence}, after this "
            f"export's {as_of_seq}"
        )
    return info


def _newest_in(directory: Path, *, tenant: str, as_of_seq: int, export_id: str) -> BaseInfo:
    if not directory.is_dir():
        raise NotFoundError(f"base directory {directory} does not exist")
    best: BaseInfo | None = None
    for path in _candidates(directory):
        try:
            info = base_from_manifest(read_manifest_bytes(path), str(path))
        except (BadInputError, NotFoundError) as e:
            # Other profiles publish into the same directory: not a base candidate.
            log.debug("%s is not a mirror base: %s", path, e.message)
            continue
        if info.tenant != tenant or info.export_id == export_id or info.sequence > as_of_seq:
            continue
        if best is None or (info.sequence, info.export_id) > (best.sequence, best.export_id):
            best = info
    if best is None:
        raise NotFoundError(
            f"no earlier mirror bundle of tenant {tenant!r} in {directory}",
            hint="export a mirror:full first, or set options.resetBaseline: true",
        )
    return best
