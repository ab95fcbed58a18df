"""Python-side verification of a devportal:offline ``.tgz``, against trust roots, offline.

The same chain as ``verify-offline.sh`` (checksums, then the DSSE signature over manifest.json,
then the signed entries against the files), but on the archive itself, without extracting
it, and trusting nothing inside the bundle: the archive is streamed with the guards of
:mod:`.tarball`, only the paths the bundle's layout allows are accepted, manifest.json must be
RFC 8785 canonical and match the schema exactly (unknown fields refused), and every derived
field (sources, totals, bundleId) is recomputed.

Each check is reported by name; the first failure raises. Exit code in the CLI: 2 for every
failure (export-center.md §7); the shell script separates checksum (2) from signature (3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import rfc8785
from pydantic import ValidationError

from export_center.devportal.layout import CHECKSUMS, MANIFEST, MANIFEST_DSSE, ROOT_FILES
from export_center.devportal.manifest import (
    PAYLOAD_TYPE,
    DevportalManifest,
    category_of,
    parse_checksums,
)
from export_center.devportal.tarball import Limits, ReadMember, read_members
from export_center.errors import VerificationError
from export_center.signing.dsse import verify_envelope
from export_center.signing.interface import PublicKey

__all__ = ["CheckResult", "VerifyReport", "verify_bundle"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    bundle_id: str
    generated_at: str
    root_hash: str  # "sha256:<hex>" of checksums.txt
    entry_count: int
    checks: tuple[CheckResult, ...]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member {k!r}")
        out[k] = v
    return out


def _parse_manifest(data: bytes) -> DevportalManifest:
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise VerificationError("manifest", f"manifest.json is not valid JSON: {e}") from e
    if rfc8785.dumps(doc) != data:
        raise VerificationError("manifest", "manifest.json is not RFC 8785 canonical JSON")
    try:
        return DevportalManifest.model_validate_json(data, strict=True)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise VerificationError(
            "manifest", f"manifest.json: {where}: {first['msg']} ({e.error_count()} error(s))"
        ) from e


def verify_bundle(
    archive: BinaryIO,
    trust_roots: Mapping[str, PublicKey],
    *,
    limits: Limits | None = None,
) -> VerifyReport:
    """Verify a ``devportal-offline-bundle.tgz`` stream against ``trust_roots``.

    Raises:
        UnsafeArchiveError: the archive is malformed or hostile (check ``archive``).
        VerificationError: ``layout``, ``checksums``, ``dsse``, ``manifest`` or ``entries``
            failed; the message names the file.
    """
    if not trust_roots:
        raise VerificationError("dsse", "no trust roots: refusing to verify against nothing")
    checks: list[CheckResult] = []
    members = list(read_members(archive, keep=lambda p: p in ROOT_FILES, limits=limits))
    files = {m.path: m for m in members if not m.is_dir}
    directories = {m.path for m in members if m.is_dir}
    checks.append(CheckResult("archive", f"{len(files)} files, {len(directories)} directories"))

    _check_layout(files, directories)
    checks.append(CheckResult("layout", "root files present, nothing outside the layout"))

    checksums = _data(files, CHECKSUMS)
    root_hash = "sha256:" + _sha(files, CHECKSUMS)
    _check_checksums(files, checksums)
    checks.append(CheckResult("checksums", f"{len(files) - 1} files match checksums.txt"))

    manifest_bytes = _data(files, MANIFEST)
    payload = verify_envelope(_data(files, MANIFEST_DSSE), trust_roots, PAYLOAD_TYPE)
    if payload != manifest_bytes:
        raise VerificationError("dsse", "manifest.json is not the payload signed in the envelope")
    checks.append(CheckResult("dsse", "manifest.json is signed by a trusted key"))

    manifest = _parse_manifest(manifest_bytes)
    checks.append(CheckResult("manifest", f"{manifest.version}, bundleId {manifest.bundle_id}"))

    _check_entries(manifest, files)
    checks.append(
        CheckResult("entries", f"{manifest.totals.entry_count} files match the signed manifest")
    )
    logger.info("devportal bundle %s verified", manifest.bundle_id)
    return VerifyReport(
        bundle_id=manifest.bundle_id,
        generated_at=manifest.generated_at,
        root_hash=root_hash,
        entry_count=manifest.totals.entry_count,
        checks=tuple(checks),
    )


def _data(files: Mapping[str, ReadMember], path: str) -> bytes:
    data = files[path].data
    assert data is not None  # kept by read_members for every root file
    return data


def _sha(files: Mapping[str, ReadMember], path: str) -> str:
    return files[path].sha256


def _check_layout(files: Mapping[str, ReadMember], directories: set[str]) -> None:
    missing = sorted(ROOT_FILES - files.keys())
    if missing:
        raise VerificationError("layout", f"missing {', '.join(missing)}")
    for path in sorted(files):
        if path not in ROOT_FILES and category_of(path) is None:
            raise VerificationError("layout", f"{path}: not part of the devportal layout")
    parents = {"/".join(p.split("/")[:n]) for p in files for n in range(1, p.count("/") + 1)}
    stray = sorted(directories - parents)
    if stray:
        raise VerificationError("layout", f"{stray[0]}/: a directory with no listed file")


def _check_checksums(files: Mapping[str, ReadMember], checksums: bytes) -> None:
    try:
        listed = parse_checksums(checksums)
    except ValueError as e:
        raise VerificationError("checksums", f"checksums.txt: {e}") from e
    expected = files.keys() - {CHECKSUMS}
    for path in sorted(expected - listed.keys()):
        raise VerificationError("checksums", f"{path}: not listed in checksums.txt")
    for path in sorted(listed.keys() - expected):
        raise VerificationError("checksums", f"{path}: listed in checksums.txt but missing")
    for path, digest in sorted(listed.items()):
        if files[path].sha256 != digest:
            raise VerificationError("checksums", f"{path}: sha256 does not match checksums.txt")


def _check_entries(manifest: DevportalManifest, files: Mapping[str, ReadMember]) -> None:
    content = {p for p in files if p not in ROOT_FILES}
    signed = {e.path: e for e in manifest.entries}
    for path in sorted(content - signed.keys()):
        raise VerificationError("entries", f"{path}: in the archive but not in the manifest")
    for path in sorted(signed.keys() - content):
        raise VerificationError("entries", f"{path}: in the manifest but not in the archive")
    for path, entry in sorted(signed.items()):
        member = files[path]
        if member.sha256 != entry.sha256 or member.size != entry.size_bytes:
            raise VerificationError(
                "entries", f"{path}: sha256 or size differs from the signed manifest"
            )
