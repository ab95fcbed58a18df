"""The bundle writer: fills a staging area through the run's content producer, then signs,
archives and publishes atomically.

It owns everything adapters do not: README, manifest, provenance, DSSE envelopes, checksums,
the deterministic archive, the ``.sha256`` and ``.sig`` sidecars, and publication. It does not
know profiles: the exporter hands it the content producer (the profile's adapter bound to the
run, see :func:`export_center.adapters.interface.produce`). Work happens in a private staging
directory inside the output directory (same file system), so publication is a rename: sidecars
first, the archive last. The archive's appearance is the commit point; a failed or cancelled run
removes its staging directory and publishes nothing.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export_center.archive.writer import write_tree
from export_center.bundle._mapped import mapped
from export_center.bundle.manifest import (
    CHECKSUMS,
    EXPORT_DSSE,
    EXPORT_JSON,
    MANIFEST_PAYLOAD_TYPE,
    PROVENANCE_DSSE,
    PROVENANCE_JSON,
    README,
    ContentEntry,
    ManifestSections,
    build_manifest,
    manifest_bytes,
    rerun_hash,
)
from export_center.bundle.provenance import PROVENANCE_PAYLOAD_TYPE, build_provenance
from export_center.bundle.readme import build_readme
from export_center.bundle.staging import Staging
from export_center.checksums import build_checksums
from export_center.digests import prefixed, sha256_hex
from export_center.errors import CancelledError, output_error
from export_center.planner.plan import ExportPlan
from export_center.signing.dsse import detached_signature, sign_envelope
from export_center.signing.interface import Signer

__all__ = ["BundleResult", "ProduceContent", "StagedContent", "build_bundle", "raise_if_cancelled"]

JSON = "application/json"
_SUFFIX = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}


@dataclass(frozen=True)
class StagedContent:
    """What the content producer reports once the profile's files are staged."""

    counts: Mapping[str, int]  # records per type (manifest ``counts``)
    dependencies: Mapping[str, str]  # "<type>/<source>" -> sha256 hex of its input set
    sections: ManifestSections  # the manifest sections the profile contributes
    provenance_parameters: Mapping[str, Any] | None = None  # extra externalParameters


#: Fills the staging area with a profile's content, signing what it signs itself with the
#: run's signer. The exporter binds the profile's adapter to the run to make one.
ProduceContent = Callable[[Staging, Signer], StagedContent]


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
    # manifests/export.json as signed (the ledger of published exports keeps it).
    manifest: bytes = field(default=b"", repr=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sign_file(signer: Signer, path: Path) -> bytes:
    with mapped(path) as data:
        return detached_signature(signer, data)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a bundle is built.

    An export allocates a few objects per record (rows, dicts, lines) that never form cycles;
    every few hundred allocations the collector would walk them, and now and then every
    object of the process: about 4 % of an export's CPU. Reference counting frees them all
    the same. Process-wide: a run in a thread of the API process (``serve --workers 0``)
    delays the API's cycle collection until it ends; ``stella serve`` runs exports in worker
    processes.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def raise_if_cancelled(is_cancelled: Callable[[], bool]) -> None:
    """Stop the run when ``is_cancelled`` says so (nothing is published after that).

    Raises:
        CancelledError: ``is_cancelled`` turned true.
    """
    if is_cancelled():
        raise CancelledError("the run was cancelled; nothing was published")


def build_bundle(
    plan: ExportPlan,
    signer: Signer,
    out_dir: Path,
    content: ProduceContent,
    *,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> BundleResult:
    """Stage the content of ``plan`` with ``content``, then sign and publish the bundle into
    ``out_dir``.

    Raises:
        CancelledError: ``is_cancelled`` turned true; nothing was published.
        BadInputError: the profile cannot be exported (e.g. an adapter refused its options).
        SigningError: the key could not sign.
        BadInputError: ``out_dir`` cannot be created or written (a file in the way, a
            read-only or pseudo file system).
    """
    with _gc_paused():
        return _build(plan, signer, out_dir, content, is_cancelled)


def _build(
    plan: ExportPlan,
    signer: Signer,
    out_dir: Path,
    content: ProduceContent,
    is_cancelled: Callable[[], bool],
) -> BundleResult:
    compression = plan.spec.compression
    archive_name = f"{plan.export_id}{_SUFFIX[compression.algorithm]}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{plan.export_id}.", dir=out_dir))
    except OSError as e:
        raise output_error(out_dir, "the bundle", e) from e
    try:
        # A zstd bundle's large files are compressed while the adapter writes them.
        zstd_level = compression.level if compression.algorithm == "zstd" else None
        staging = Staging(tmp, zstd_level=zstd_level)
        staged = content(staging, signer)
        raise_if_cancelled(is_cancelled)

        staging.add_bytes(README, build_readme(plan, archive_name), "text/plain; charset=utf-8")
        contents = [
            ContentEntry(
                path=f.path,
                digest=prefixed(f.sha256),
                size=f.size,
                records=f.records,
                content_type=f.content_type,
            )
            for f in staging.files()
        ]
        manifest = manifest_bytes(build_manifest(plan, contents, staged.counts, staged.sections))
        subjects = [(c.path, c.sha256) for c in contents] + [(EXPORT_JSON, sha256_hex(manifest))]
        provenance = build_provenance(
            plan, subjects, staged.dependencies, staged.provenance_parameters
        )
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
        raise_if_cancelled(is_cancelled)

        archive_tmp = tmp / archive_name
        with archive_tmp.open("wb") as fh:
            written = write_tree(
                fh,
                [(f.path, f.source()) for f in staging.files()],
                compression=compression.algorithm,
                level=None if compression.algorithm == "none" else compression.level,
                spool_dir=tmp,
            )
            fh.flush()
            os.fsync(fh.fileno())
        digest, size = written.sha256, written.size
        raise_if_cancelled(is_cancelled)

        sidecar_sha = tmp / f"{archive_name}.sha256"
        sidecar_sha.write_bytes(f"{digest}  {archive_name}\n".encode())
        sidecar_sig = tmp / f"{archive_name}.sig"
        sidecar_sig.write_bytes(_sign_file(signer, archive_tmp))
        raise_if_cancelled(is_cancelled)

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
            root_hash=prefixed(sha256_hex(checksums)),
            rerun_hash=rerun_hash([c.digest for c in contents]),
            manifest_digest=prefixed(sha256_hex(manifest)),
            counts=dict(staged.counts),
            files=len(staging.files()),
            manifest=manifest,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
