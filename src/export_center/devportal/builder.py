"""The devportal:offline builder: input tree → checks → manifest → DSSE → deterministic ``.tgz``.

The generic bundle writer serves the shared layout (``manifests/``, ``data/``); this profile
keeps the layout of docs/devportal.md ("The bundle"), so it has its own small builder:

1. :func:`~export_center.devportal.inputs.scan_input` walks and hashes the input tree;
2. the portal must load nothing from the network (:mod:`.assets`) and every OpenAPI document
   must be valid (:mod:`.specs`);
3. ``manifest.json`` (RFC 8785) is signed into ``manifest.dsse.json``; ``checksums.txt``
   covers every other file; the two fixed texts (:mod:`.texts`) are added;
4. the project's one deterministic archive writer (:func:`~export_center.archive.writer.write_tree`,
   gzip level 9) writes the ``.tgz``, checking every input file against the size and SHA-256
   the manifest records for it.

Time comes in as values (``SOURCE_DATE_EPOCH``, read by the CLI, and ``generatedAt``), never
from the clock, so the same input, options and Ed25519 key give the same bytes.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from export_center.archive.writer import (
    DEFAULT_MTIME,
    EXEC_MODE,
    FILE_MODE,
    FileSource,
    SourceChangedError,
    TreeEntry,
    write_tree,
)
from export_center.checksums import build_checksums
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
    content_type_for,
)
from export_center.devportal.specs import SPEC_SUFFIXES, SpecFile, validate_specs
from export_center.devportal.texts import INSTRUCTIONS, VERIFY_SCRIPT
from export_center.digests import prefixed, sha256_hex
from export_center.errors import BadInputError
from export_center.signing.dsse import sign_envelope
from export_center.signing.interface import Signer

__all__ = [
    "BuildOptions",
    "BuildResult",
    "WrittenBundle",
    "build_bundle",
    "write_bundle",
]

logger = logging.getLogger(__name__)

# Files the checks read whole; anything larger is refused rather than scanned in part.
_MAX_CHECKED_BYTES = 64 << 20
# docs/bundle-format.md, "Reproducible by design": gzip with header mtime 0 and no name;
# level 9 as this profile has always used (the archive writer's default is 6).
_GZIP_LEVEL = 9


@dataclass(frozen=True)
class BuildOptions:
    """What besides the input decides the bytes: time, metadata.

    ``source_date_epoch`` is the mtime of every archive entry (the CLI reads it with
    :func:`export_center.archive.writer.source_date_epoch`); ``generated_at`` defaults to it
    and must carry a time zone.
    """

    source_date_epoch: int = DEFAULT_MTIME
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
    """What :func:`write_bundle` wrote."""

    sha256: str  # of the .tgz
    size: int
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
    if sha256_hex(data) != f.sha256:
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


def _open_input(f: InputFile) -> BinaryIO:
    try:
        return f.source.open("rb")
    except OSError as e:
        raise DevportalInputError(
            f"input changed during the build: {f.path}: cannot open: {e.strerror}"
        ) from e


def write_bundle(
    tree: InputTree, signer: Signer, options: BuildOptions, out: BinaryIO
) -> WrittenBundle:
    """Check ``tree`` and write the bundle's ``.tgz`` bytes to ``out``.

    Raises:
        ExternalAssetError, InvalidSpecError, DevportalInputError: the input is refused (also
            when a file changed after it was scanned).
        SigningError: the signer failed.
        OSError: ``out`` cannot be written, or an input file cannot be read.
    """
    documents = _check_content(tree)
    manifest_entries = [
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
            manifest_entries,
            generated_at=options.generated_at_or_epoch(),
            metadata=options.metadata,
        )
        manifest_bytes = manifest.canonical()
    except (ValueError, TypeError) as e:  # pydantic's ValidationError is a ValueError
        raise BadInputError(f"cannot build the manifest: {e}") from e
    envelope = sign_envelope(manifest_bytes, PAYLOAD_TYPE, [signer])
    root = {
        MANIFEST: manifest_bytes,
        MANIFEST_DSSE: envelope,
        INSTRUCTIONS_NAME: INSTRUCTIONS,
        VERIFY_SCRIPT_NAME: VERIFY_SCRIPT,
    }
    checksums = build_checksums(
        [(path, sha256_hex(data)) for path, data in root.items()]
        + [(f.path, f.sha256) for f in tree.files]
    )
    archive_entries = [
        TreeEntry(path, data, mode=EXEC_MODE if path == VERIFY_SCRIPT_NAME else FILE_MODE)
        for path, data in root.items()
    ]
    # Each input file is streamed from disk and must still have the size and SHA-256 that
    # the manifest and checksums.txt record for it (scan_input hashed it earlier).
    archive_entries += [
        TreeEntry(f.path, FileSource(f.size, partial(_open_input, f), sha256=f.sha256))
        for f in tree.files
    ]
    archive_entries.append(TreeEntry(CHECKSUMS, checksums))
    try:
        result = write_tree(
            out,
            archive_entries,
            compression="gzip",
            level=_GZIP_LEVEL,
            mtime=options.source_date_epoch,
        )
    except SourceChangedError as e:
        raise DevportalInputError(f"input changed during the build: {e.message}") from e
    return WrittenBundle(
        sha256=result.sha256,
        size=result.size,
        bundle_id=manifest.bundle_id,
        root_hash=prefixed(sha256_hex(checksums)),
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
        with os.fdopen(fd, "wb") as fh:
            written = write_bundle(tree, signer, opts, fh)
            fh.flush()
            os.fsync(fh.fileno())
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
        sha256=written.sha256,
        size=written.size,
        bundle_id=written.bundle_id,
        root_hash=written.root_hash,
        keyid=signer.keyid,
        entry_count=written.entry_count,
        total_size_bytes=written.total_size_bytes,
        openapi_documents=written.openapi_documents,
        skipped=tree.skipped,
    )
