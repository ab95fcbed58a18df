"""The bundle writer: runs the profile's adapter, signs, archives and publishes atomically.

It owns everything adapters do not: README, manifest, provenance, DSSE envelopes, checksums,
the deterministic archive, the ``.sha256`` and ``.sig`` sidecars, and publication. Work happens
in a private staging directory inside the output directory (same file system), so publication
is a rename: sidecars first, the archive last. The archive's appearance is the commit point;
a failed or cancelled run removes its staging directory and publishes nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from export_center.adapters.interface import ExportContext, Staging
from export_center.adapters.registry import adapter_for
from export_center.archive.writer import FileSource, write_tree
from export_center.bundle._mapped import mapped
from export_center.bundle.manifest import (
    CHECKSUMS,
    EXPORT_DSSE,
    EXPORT_JSON,
    MANIFEST_PAYLOAD_TYPE,
    PROVENANCE_DSSE,
    PROVENANCE_JSON,
    PROVENANCE_PAYLOAD_TYPE,
    README,
    ContentEntry,
    build_manifest,
    build_provenance,
    build_readme,
    rerun_hash,
)
from export_center.checksums import build_checksums
from export_center.planner.plan import ExportPlan
from export_center.signing.dsse import detached_signature, sign_envelope
from export_center.signing.interface import Signer
from export_center.store.repository import EvidenceStore

if TYPE_CHECKING:
    from export_center.mirror.kms import Pkcs11Access

JSON = "application/json"
_SUFFIX = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}


@runtime_checkable
class SealingAdapter(Protocol):
    """An adapter with a second phase that needs the run's signer (mirror profiles).

    ``seal`` runs after ``build`` and before the manifest is written; it may add files to the
    staging area and sections to ``ctx.manifest_extra``, and returns extra provenance
    ``externalParameters`` (or None).
    """

    def build(self, ctx: ExportContext) -> None: ...

    def seal(self, ctx: ExportContext, signer: Signer) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class BundleResult:
    export_id: str
    archive_path: Path
    archive_sha256: str
    archive_bytes: int
    root_hash: str  # "sha256:<hex>" of checksums.txt
    rerun_hash: str
    manifest_digest: str  # "sha256:<hex>" of export.json
    counts: dict[str, int]
    files: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sign_file(signer: Signer, path: Path) -> bytes:
    with mapped(path) as data:
        return detached_signature(signer, data)


def build_bundle(
    plan: ExportPlan,
    store: EvidenceStore,
    signer: Signer,
    out_dir: Path,
    *,
    progress: Callable[[int], None] = lambda _n: None,
    is_cancelled: Callable[[], bool] = lambda: False,
    kms: Pkcs11Access | None = None,
) -> BundleResult:
    """Build, sign and publish the bundle of ``plan`` into ``out_dir`` (``kms``: how adapters
    reach the operator's KMS).

    Raises:
        CancelledError: ``is_cancelled`` turned true; nothing was published.
        BadInputError: the profile cannot be exported (e.g. an adapter refused its options).
        SigningError: the key could not sign.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter = adapter_for(plan.spec.profile_kind)
    compression = plan.spec.compression
    archive_name = f"{plan.export_id}{_SUFFIX[compression.algorithm]}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{plan.export_id}.", dir=out_dir))
    try:
        staging = Staging(tmp)
        ctx = ExportContext(
            plan, store, staging, progress=progress, is_cancelled=is_cancelled, kms=kms
        )
        adapter.build(ctx)
        ctx.check_cancelled()
        # Adapters that sign metadata of their own (mirror: TUF over data/, optional
        # encryption) finish with the run's signer; what they add is covered by the manifest.
        provenance_params = (
            adapter.seal(ctx, signer) if isinstance(adapter, SealingAdapter) else None
        )
        ctx.check_cancelled()

        staging.add_bytes(README, build_readme(plan, archive_name), "text/plain; charset=utf-8")
        contents = [
            ContentEntry(f.path, f.sha256, f.size, f.records, f.content_type)
            for f in staging.files()
        ]
        manifest = build_manifest(plan, contents, ctx.counts, ctx.manifest_extra)
        subjects = [(c.path, c.sha256) for c in contents] + [(EXPORT_JSON, _sha256(manifest))]
        provenance = build_provenance(plan, subjects, ctx.dependencies, provenance_params)
        staging.add_bytes(EXPORT_JSON, manifest, JSON)
        staging.add_bytes(
            EXPORT_DSSE, sign_envelope(manifest, MANIFEST_PAYLOAD_TYPE, [signer]), JSON
        )
        staging.add_bytes(PROVENANCE_JSON, provenance, JSON)
        staging.add_bytes(
            PROVENANCE_DSSE, sign_envelope(provenance, PROVENANCE_PAYLOAD_TYPE, [signer]), JSON
        )
        checksums = build_checksums([(f.path, f.sha256) for f in staging.files()])
        staging.add_bytes(CHECKSUMS, checksums, "text/plain; charset=utf-8")
        ctx.check_cancelled()

        archive_tmp = tmp / archive_name
        with archive_tmp.open("wb") as fh:
            written = write_tree(
                fh,
                [(f.path, FileSource.from_path(f.local)) for f in staging.files()],
                compression=compression.algorithm,
                level=None if compression.algorithm == "none" else compression.level,
            )
            fh.flush()
            os.fsync(fh.fileno())
        digest, size = written.sha256, written.size
        ctx.check_cancelled()

        sidecar_sha = tmp / f"{archive_name}.sha256"
        sidecar_sha.write_bytes(f"{digest}  {archive_name}\n".encode())
        sidecar_sig = tmp / f"{archive_name}.sig"
        sidecar_sig.write_bytes(_sign_file(signer, archive_tmp))
        ctx.check_cancelled()

        final = out_dir / archive_name
        for side in (sidecar_sha, sidecar_sig):
            side.replace(out_dir / side.name)
        archive_tmp.replace(final)
        _fsync_dir(out_dir)
        return BundleResult(
            export_id=plan.export_id,
            archive_path=final,
            archive_sha256=digest,
            archive_bytes=size,
            root_hash="sha256:" + _sha256(checksums),
            rerun_hash=rerun_hash([f"sha256:{c.sha256}" for c in contents]),
            manifest_digest="sha256:" + _sha256(manifest),
            counts=dict(ctx.counts),
            files=len(staging.files()),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
