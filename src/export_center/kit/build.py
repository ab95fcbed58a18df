"""Building an Offline Kit: verified bundles → ordered, signed ``kit.json`` → deterministic kit
archive → parts of at most ``part_size`` bytes, each with its own signed ``part.json``.

1. every input bundle is verified (:func:`export_center.bundle.verify.verify_bundle`) against
   the operator's trust roots and described by its signed export manifest (profile, tenant,
   export id, as-of sequence); nothing unverified crosses the air gap;
2. the import order is decided from the manifests alone (:func:`import_order`), so the order
   of the command-line arguments does not matter: mirror bundles first (per tenant by as-of
   sequence, a full or reset bundle before the deltas of the same sequence), then Trivy
   databases, then what is only carried (devportal, json);
3. ``kit.json`` (RFC 8785) is signed into ``kit.json.dsse``; the kit archive is written by the
   project's one deterministic archive writer (uncompressed: the bundles are compressed);
4. the archive is cut into slices; each part's ``part.json`` names the kit, its index and the
   digest of every slice, and is signed; each part directory has its own ``checksums.txt``.

The kit is built in a private directory next to its destination and renamed into place: a
failed build leaves nothing, a rebuild replaces the old kit whole. The clock is never read:
the same bundles, key (Ed25519), part size and ``SOURCE_DATE_EPOCH`` give the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import rfc8785

from export_center.archive.reader import iter_members
from export_center.archive.writer import (
    DEFAULT_MTIME,
    EXEC_MODE,
    FileSource,
    TreeEntry,
    write_tree,
)
from export_center.bundle.manifest import EXPORT_JSON, ExportManifest
from export_center.bundle.verify import verify_bundle
from export_center.checksums import build_checksums
from export_center.digests import prefixed, sha256_file, sha256_hex
from export_center.errors import BadInputError, NotFoundError, VerificationError
from export_center.kit.layout import (
    CHECKSUMS,
    KIT_DSSE,
    KIT_MANIFEST,
    KIT_PAYLOAD_TYPE,
    KIT_SCHEMA,
    PART_DSSE,
    PART_MANIFEST,
    PART_PAYLOAD_TYPE,
    PART_SCHEMA,
    README,
    VERIFY_SCRIPT,
    bundle_dir,
    chunk_name,
    kit_archive_name,
    part_dir_name,
)
from export_center.kit.manifest import (
    Action,
    FileRef,
    KitBundle,
    KitManifest,
    PartManifest,
    PartRef,
    canonical,
    this_tool,
)
from export_center.kit.texts import README_TEXT, VERIFY_KIT_SCRIPT
from export_center.signing.dsse import sign_envelope
from export_center.signing.interface import PublicKey, Signer

__all__ = ["MIN_PART_SIZE", "BuiltKit", "KitSource", "build_kit", "import_order", "inspect"]

log = logging.getLogger(__name__)

#: The smallest part size accepted (the per-part files alone are about 10 KB).
MIN_PART_SIZE = 4096
_MAX_PARTS = 999
_COPY = 1 << 20
_SIDECARS = (".sha256", ".sig")

#: What kit import does with each profile.
ACTIONS: Mapping[str, Action] = {
    "mirror:full": "mirror-import",
    "mirror:delta": "mirror-import",
    "trivy:db": "trivy-install",
    "trivy:java-db": "trivy-install",
    "json:raw": "carry",
    "json:policy": "carry",
    "devportal:offline": "carry",
}
_ACTION_RANK: Mapping[Action, int] = {"mirror-import": 0, "trivy-install": 1, "carry": 2}


@dataclass(frozen=True)
class KitSource:
    """An input bundle, verified, with what its signed manifest says."""

    archive: Path
    sidecars: tuple[Path, ...]
    manifest: ExportManifest
    manifest_digest: str  # "sha256:<hex>" of its export.json bytes
    root_hash: str
    sha256: str
    size: int

    @property
    def profile(self) -> str:
        return f"{self.manifest.profile.kind}:{self.manifest.profile.variant}"


@dataclass(frozen=True)
class BuiltKit:
    kit_id: str
    directory: Path  # <out>/<kitId>
    parts: tuple[Path, ...]  # the part directories, in order
    manifest: KitManifest
    kit_sha256: str  # of the whole kit archive
    kit_size: int
    largest_part_bytes: int  # the biggest part directory, all its files


def inspect(archive: Path, trust_roots: Mapping[str, PublicKey]) -> KitSource:
    """Verify one bundle archive (and the sidecars next to it) and describe it.

    Raises:
        NotFoundError: no such file.
        VerificationError: the bundle does not verify against ``trust_roots`` (the first failed
            check, naming the archive).
    """
    if not archive.is_file():
        raise NotFoundError(f"{archive}: no such bundle archive")
    report = verify_bundle(archive, trust_roots)
    failed = report.failed
    if failed is not None or report.manifest is None:
        detail = f"{failed.name}: {failed.detail}" if failed else "no manifest"
        raise VerificationError(
            "bundle",
            f"{archive.name}: {detail}",
            hint="a kit carries only bundles that verify against the trust roots",
        )
    manifest_bytes = _member(archive, EXPORT_JSON)
    digest, size = sha256_file(archive)
    sidecars = tuple(
        side for side in (archive.with_name(archive.name + s) for s in _SIDECARS) if side.is_file()
    )
    return KitSource(
        archive=archive,
        sidecars=sidecars,
        manifest=report.manifest,
        manifest_digest=prefixed(sha256_hex(manifest_bytes)),
        root_hash=str(report.root_hash),
        sha256=digest,
        size=size,
    )


def _member(archive: Path, name: str, max_bytes: int = 64 << 20) -> bytes:
    """One file of a (verified) bundle archive, read through the safe reader."""
    for member in iter_members(archive):
        if member.name == name and not member.is_dir:
            return member.read(max_bytes=max_bytes)
    raise VerificationError("bundle", f"{archive.name}: {name} is missing")


def _rank(src: KitSource) -> tuple[int, str, int, int, str, str, str]:
    m = src.manifest
    action = ACTIONS[src.profile]
    rebuilds = m.delta is None or m.delta.reset_baseline
    return (
        _ACTION_RANK[action],
        m.tenant,
        m.as_of.sequence if action == "mirror-import" else 0,
        0 if rebuilds else 1,
        src.profile,
        m.export_id,
        src.sha256,
    )


def import_order(sources: Sequence[KitSource]) -> list[KitSource]:
    """The order to import ``sources`` in, decided from their manifests alone.

    Raises:
        BadInputError: a bundle given twice, a profile without a kit action, or a delta whose
            base in the kit would come after it.
    """
    seen: dict[str, Path] = {}
    for src in sources:
        if src.profile not in ACTIONS:
            raise BadInputError(f"{src.archive.name}: profile {src.profile} cannot go in a kit")
        other = seen.setdefault(src.sha256, src.archive)
        if other is not src.archive:
            raise BadInputError(f"{src.archive}: the same bundle as {other}, given twice")
    ordered = sorted(sources, key=_rank)
    position = {s.manifest.export_id: i for i, s in enumerate(ordered)}
    for i, src in enumerate(ordered):
        delta = src.manifest.delta
        if delta is not None and not delta.reset_baseline and delta.base_export_id:
            base = position.get(delta.base_export_id)
            if base is not None and base > i:
                raise BadInputError(
                    f"{src.archive.name}: delta on {delta.base_export_id}, which the kit "
                    "would import after it"
                )
    return ordered


def _kit_manifest(ordered: Sequence[KitSource]) -> KitManifest:
    bundles: list[KitBundle] = []
    for order, src in enumerate(ordered, start=1):
        where = bundle_dir(order)
        bundles.append(
            KitBundle(
                order=order,
                action=ACTIONS[src.profile],
                profile=src.profile,
                profile_name=src.manifest.profile.name,
                tenant=src.manifest.tenant,
                export_id=src.manifest.export_id,
                as_of=src.manifest.as_of.sequence,
                manifest_digest=src.manifest_digest,
                root_hash=src.root_hash,
                archive=FileRef(
                    path=f"{where}/{src.archive.name}", sha256=src.sha256, size=src.size
                ),
                sidecars=tuple(
                    FileRef(path=f"{where}/{s.name}", sha256=d, size=n)
                    for s in src.sidecars
                    for d, n in [sha256_file(s)]
                ),
            )
        )
    # The kit id names the content: the bundles, their order and digests.
    material = rfc8785.dumps([b.model_dump(mode="json", by_alias=True) for b in bundles])
    kit_id = "kit-" + hashlib.sha256(material).hexdigest()[:32]
    return KitManifest(schema_=KIT_SCHEMA, kit_id=kit_id, bundles=tuple(bundles), tool=this_tool())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _write_kit_archive(
    ordered: Sequence[KitSource],
    manifest: KitManifest,
    signer: Signer,
    target: Path,
    mtime: int,
) -> tuple[str, int, str]:
    """The kit archive at ``target``; returns its sha256, size and kit.json's digest."""
    manifest_bytes = canonical(manifest)
    envelope = sign_envelope(manifest_bytes, KIT_PAYLOAD_TYPE, [signer])
    fixed = {
        KIT_MANIFEST: manifest_bytes,
        KIT_DSSE: envelope,
        README: README_TEXT,
        VERIFY_SCRIPT: VERIFY_KIT_SCRIPT,
    }
    entries = [
        TreeEntry(path, data, mode=EXEC_MODE if path == VERIFY_SCRIPT else 0o644)
        for path, data in fixed.items()
    ]
    listed = [(path, sha256_hex(data)) for path, data in fixed.items()]
    for src, entry in zip(ordered, manifest.bundles, strict=True):
        files = [(src.archive, entry.archive), *zip(src.sidecars, entry.sidecars, strict=True)]
        for local, ref in files:
            entries.append(TreeEntry(ref.path, FileSource.from_path(local, sha256=ref.sha256)))
            listed.append((ref.path, ref.sha256))
    entries.append(TreeEntry(CHECKSUMS, build_checksums(listed)))
    with target.open("wb") as fh:
        written = write_tree(fh, entries, compression="none", mtime=mtime)
        fh.flush()
        os.fsync(fh.fileno())
    return written.sha256, written.size, sha256_hex(manifest_bytes)


def _cut(archive: Path, size: int, part_size: int, work: Path, kit_id: str) -> list[PartRef]:
    """Slice the kit archive into ``work/<index>``; the table of slices."""
    count = max(1, -(-size // part_size))
    if count > _MAX_PARTS:
        raise BadInputError(
            f"--part-size {part_size}: the kit ({size} bytes) would need {count} parts "
            f"(at most {_MAX_PARTS})"
        )
    refs: list[PartRef] = []
    with archive.open("rb") as src:
        for index in range(1, count + 1):
            offset = (index - 1) * part_size
            remaining = min(part_size, size - offset)
            digest = hashlib.sha256()
            with (work / f"{index}").open("wb") as out:
                while remaining:
                    block = src.read(min(_COPY, remaining))
                    if not block:
                        raise BadInputError(f"{archive}: shorter than written")
                    digest.update(block)
                    out.write(block)
                    remaining -= len(block)
                out.flush()
                os.fsync(out.fileno())
            refs.append(
                PartRef(
                    index=index,
                    offset=offset,
                    path=chunk_name(kit_id, index),
                    sha256=digest.hexdigest(),
                    size=min(part_size, size - offset),
                )
            )
    return refs


def _write_part(root: Path, slices: Path, part: PartManifest, signer: Signer) -> tuple[Path, int]:
    this = part.this
    directory = root / part_dir_name(part.index, part.count)
    directory.mkdir()
    (slices / f"{part.index}").replace(directory / this.path)
    (directory / this.path).chmod(0o644)
    body = canonical(part)
    files = {
        PART_MANIFEST: body,
        PART_DSSE: sign_envelope(body, PART_PAYLOAD_TYPE, [signer]),
        README: README_TEXT,
        VERIFY_SCRIPT: VERIFY_KIT_SCRIPT,
    }
    for name, data in files.items():
        _write(directory / name, data, 0o755 if name == VERIFY_SCRIPT else 0o644)
    listed = [(name, sha256_hex(data)) for name, data in files.items()]
    listed.append((this.path, this.sha256))
    checksums = build_checksums(listed)
    _write(directory / CHECKSUMS, checksums)
    total = sum(len(d) for d in files.values()) + this.size + len(checksums)
    _fsync_dir(directory)
    return directory, total


def build_kit(
    sources: Sequence[KitSource],
    out_dir: Path,
    signer: Signer,
    *,
    part_size: int | None = None,
    mtime: int = DEFAULT_MTIME,
) -> BuiltKit:
    """Stage ``sources`` (from :func:`inspect`) as one kit under ``out_dir/<kitId>/``.

    ``part_size`` bounds each part's slice of the kit archive (None: one part).

    Raises:
        BadInputError: no bundle, a bad part size, too many parts, or an order problem
            (:func:`import_order`); ``out_dir`` cannot be written.
        SigningError: the signer failed.
    """
    if not sources:
        raise BadInputError("a kit needs at least one bundle")
    if part_size is not None and part_size < MIN_PART_SIZE:
        raise BadInputError(f"--part-size {part_size}: at least {MIN_PART_SIZE} bytes")
    ordered = import_order(sources)
    manifest = _kit_manifest(ordered)
    kit_id = manifest.kit_id
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{kit_id}.", dir=out_dir))
    except OSError as e:
        raise BadInputError(f"{out_dir}: cannot write the kit: {e.strerror}") from e
    try:
        archive = work / kit_archive_name(kit_id)
        kit_sha, kit_size, manifest_hex = _write_kit_archive(
            ordered, manifest, signer, archive, mtime
        )
        slices = work / "slices"
        slices.mkdir()
        table = _cut(archive, kit_size, part_size or max(kit_size, 1), slices, kit_id)
        archive.unlink()
        staged = work / "kit"
        staged.mkdir()
        parts: list[str] = []
        largest = 0
        for ref in table:
            part = PartManifest(
                schema_=PART_SCHEMA,
                kit_id=kit_id,
                kit_manifest=prefixed(manifest_hex),
                index=ref.index,
                count=len(table),
                kit=FileRef(path=kit_archive_name(kit_id), sha256=kit_sha, size=kit_size),
                parts=tuple(table),
                tool=this_tool(),
            )
            directory, total = _write_part(staged, slices, part, signer)
            parts.append(directory.name)
            largest = max(largest, total)
        staged.chmod(0o755)
        _fsync_dir(staged)
        final = out_dir / kit_id
        old = work / "previous"
        if final.exists():
            final.replace(old)  # a rebuild: the old kit goes whole, after the new is in place
        staged.replace(final)
        _fsync_dir(out_dir)
    except OSError as e:
        raise BadInputError(f"{out_dir}: cannot write the kit: {e.strerror}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("kit %s: %d bundles, %d parts in %s", kit_id, len(ordered), len(table), final)
    return BuiltKit(
        kit_id=kit_id,
        directory=final,
        parts=tuple(final / name for name in parts),
        manifest=manifest,
        kit_sha256=kit_sha,
        kit_size=kit_size,
        largest_part_bytes=largest,
    )
