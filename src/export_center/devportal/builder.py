"""The devportal:offline builder: input tree → checks → manifest → DSSE → deterministic ``.tgz``.

The generic bundle writer serves the shared layout (``manifests/``, ``data/``); this profile
keeps the upstream layout of bundles.md, "devportal:offline", so it has its own small builder:

1. :func:`~export_center.devportal.inputs.scan_input` walks and hashes the input tree;
2. the portal must load nothing from the network (:mod:`.assets`) and every OpenAPI document
   must be valid (:mod:`.specs`);
3. ``manifest.json`` (RFC 8785) is signed into ``manifest.dsse.json``; ``checksums.txt``
   covers every other file; the two fixed texts (:mod:`.texts`) are added;
4. :func:`~export_center.devportal.tarball.write_tgz` writes the archive.

Time comes in as values (``SOURCE_DATE_EPOCH`` and ``generatedAt``), never from the clock, so
the same input, options and Ed25519 key give the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from export_center.devportal.assets import CHECKED_SUFFIXES, check_portal_assets
from export_center.devportal.errors import DevportalInputError
from export_center.devportal.inputs import InputFile, InputTree, Skipped, scan_input
from export_center.devportal.layout import (
    BUNDLE_NAME,
    CHECKSUMS,
    INSTRUCTIONS_NAME,
    MANIFEST,
    MANIFEST_DSSE,
    VERIFY_SCRIPT_NAME,
)
from export_center.devportal.manifest import (
    PAYLOAD_TYPE,
    Category,
    Entry,
    build_manifest,
    checksums_text,
    content_type_for,
)
from export_center.devportal.specs import SPEC_SUFFIXES, SpecFile, validate_specs
from export_center.devportal.tarball import (
    DEFAULT_SOURCE_DATE_EPOCH,
    InputChangedError,
    Member,
    bytes_member,
    file_member,
    write_tgz,
)
from export_center.devportal.texts import INSTRUCTIONS, VERIFY_SCRIPT
from export_center.errors import BadInputError
from export_center.signing.dsse import sign_envelope
from export_center.signing.interface import Signer

__all__ = [
    "BuildOptions",
    "BuildResult",
    "WrittenBundle",
    "build_bundle",
    "source_date_epoch",
    "write_bundle",
]

logger = logging.getLogger(__name__)

# Files the checks read whole; anything larger is refused rather than scanned in part.
_MAX_CHECKED_BYTES = 64 << 20


def source_date_epoch(env: Mapping[str, str]) -> int:
    """``SOURCE_DATE_EPOCH`` from ``env`` (reproducible-builds.org), or the project default.

    Raises:
        BadInputError: set but not a non-negative integer.
    """
    raw = env.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return DEFAULT_SOURCE_DATE_EPOCH
    if not raw.isdigit():
        raise BadInputError(f"SOURCE_DATE_EPOCH={raw!r}: expected seconds since 1970 (digits)")
    return int(raw)


@dataclass(frozen=True)
class BuildOptions:
    """What besides the input decides the bytes: time, metadata.

    ``generated_at`` defaults to ``source_date_epoch``; it must carry a time zone.
    """

    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH
    generated_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def generated_at_or_epoch(self) -> datetime:
        if self.generated_at is not None:
            return self.generated_at
        return datetime.fromtimestamp(self.source_date_epoch, UTC)


@dataclass(frozen=True)
class BuildResult:
    path: Path
    sha256: str  # of the .tgz
    size: int
    bundle_id: str
    root_hash: str  # "sha256:<hex>" of checksums.txt
    keyid: str
    entry_count: int
    total_size_bytes: int
    openapi_documents: tuple[str, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class WrittenBundle:
    """What :func:`write_bundle` wrote (the archive's own digest is the caller's to take)."""

    bundle_id: str
    root_hash: str
    entry_count: int
    total_size_bytes: int
    openapi_documents: tuple[str, ...]


def _read_checked(f: InputFile) -> bytes:
    # The checks must see the bytes that get archived: same digest as when the tree was hashed.
    try:
        if f.source.stat().st_size > _MAX_CHECKED_BYTES:
            raise DevportalInputError(f"{f.path}: larger than {_MAX_CHECKED_BYTES} bytes")
        data = f.source.read_bytes()
    except OSError as e:
        raise DevportalInputError(f"{f.path}: cannot read: {e.strerror}") from e
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise DevportalInputError(f"input changed during the build: {f.path}")
    return data


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def _check_content(tree: InputTree) -> tuple[str, ...]:
    portal = [
        (f.path, _read_checked(f))
        for f in tree.files
        if f.category is Category.PORTAL and _suffix(f.path) in CHECKED_SUFFIXES
    ]
    check_portal_assets(portal)
    specs = [
        SpecFile(f.path, _read_checked(f))
        for f in tree.files
        if f.category is Category.SPECS and _suffix(f.path) in SPEC_SUFFIXES
    ]
    if not specs:
        return ()
    return tuple(validate_specs(specs, tree.root / "specs"))


def write_bundle(
    tree: InputTree, signer: Signer, options: BuildOptions, out: BinaryIO
) -> WrittenBundle:
    """Check ``tree`` and write the bundle's ``.tgz`` bytes to ``out``.

    Raises:
        ExternalAssetError, InvalidSpecError, DevportalInputError: the input is refused.
        SigningError: the signer failed.
    """
    documents = _check_content(tree)
    entries = [
        Entry(
            category=f.category,
            path=f.path,
            sha256=f.sha256,
            size_bytes=f.size,
            content_type=content_type_for(f.path),
        )
        for f in tree.files
    ]
    try:
        manifest = build_manifest(
            entries, generated_at=options.generated_at_or_epoch(), metadata=options.metadata
        )
        manifest_bytes = manifest.canonical()
    except (ValueError, TypeError) as e:  # pydantic's ValidationError is a ValueError
        raise BadInputError(f"cannot build the manifest: {e}") from e
    envelope = sign_envelope(manifest_bytes, PAYLOAD_TYPE, [signer])
    root: list[Member] = [
        bytes_member(MANIFEST, manifest_bytes),
        bytes_member(MANIFEST_DSSE, envelope),
        bytes_member(INSTRUCTIONS_NAME, INSTRUCTIONS),
        bytes_member(VERIFY_SCRIPT_NAME, VERIFY_SCRIPT, executable=True),
    ]
    content = [file_member(f.path, f.source, f.size, f.sha256) for f in tree.files]
    checksums = checksums_text((m.path, m.sha256) for m in [*root, *content])
    members = [*root, *content, bytes_member(CHECKSUMS, checksums)]
    try:
        write_tgz(out, members, mtime=options.source_date_epoch)
    except InputChangedError as e:
        raise DevportalInputError(f"input changed during the build: {e}") from e
    return WrittenBundle(
        bundle_id=manifest.bundle_id,
        root_hash="sha256:" + hashlib.sha256(checksums).hexdigest(),
        entry_count=manifest.totals.entry_count,
        total_size_bytes=manifest.totals.total_size_bytes,
        openapi_documents=documents,
    )


def build_bundle(
    input_dir: Path, out_dir: Path, signer: Signer, options: BuildOptions | None = None
) -> BuildResult:
    """Build ``<out_dir>/devportal-offline-bundle.tgz`` from ``input_dir``.

    The archive is written to a temporary file in ``out_dir`` and renamed into place, so a
    refused or failed build leaves any previous bundle untouched.

    Raises:
        ExternalAssetError: a portal file loads a resource from the network (file:line, URL).
        InvalidSpecError: a spec does not parse or is not valid OpenAPI (file, first error).
        DevportalInputError: the input tree is unusable (layout, links, names, nothing in it).
        BadInputError: ``out_dir`` cannot be written.
        SigningError: the signer failed.
    """
    opts = options or BuildOptions()
    tree = scan_input(input_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".devportal-", suffix=".tgz.part", dir=out_dir)
    except OSError as e:
        raise BadInputError(f"{out_dir}: cannot write the bundle: {e.strerror}") from e
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            written = write_bundle(tree, signer, opts, fh)
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
            fh.seek(0)
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        tmp.chmod(0o644)
        target = out_dir / BUNDLE_NAME
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BadInputError(f"{out_dir}: cannot write the bundle: {e.strerror}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("devportal bundle %s written to %s", written.bundle_id, target)
    return BuildResult(
        path=target,
        sha256=digest,
        size=size,
        bundle_id=written.bundle_id,
        root_hash=written.root_hash,
        keyid=signer.keyid,
        entry_count=written.entry_count,
        total_size_bytes=written.total_size_bytes,
        openapi_documents=written.openapi_documents,
        skipped=tree.skipped,
    )
