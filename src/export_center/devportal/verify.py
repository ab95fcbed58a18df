"""Python-side verification of a devportal:offline ``.tgz``, against trust roots, offline.

The same chain as ``verify-offline.sh`` (checksums, then the DSSE signature over manifest.json,
then the signed entries against the files), but on the archive itself, without extracting
it, and trusting nothing inside the bundle: the archive is streamed through the one safe
reader (:func:`~export_center.archive.reader.iter_members`), narrowed to what the bundle writer
produces (a gzip-compressed tar, no PAX records beyond names, sizes and ownership); only the
paths the bundle's layout allows are accepted, manifest.json must be RFC 8785 canonical and
match the schema exactly (unknown fields refused), and every derived field (sources, totals,
bundleId) is recomputed.

The helper script and the instructions are not signed (the manifest lists content only), so the
last check, ``helpers``, requires them to be byte for byte the ones this version writes.

Each check is reported by name; the first failure raises. Exit code in the CLI: 2 for every
failure (docs/cli.md); the shell script separates checksum (2) from signature (3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import rfc8785
from pydantic import ValidationError

from export_center.archive.reader import ArchiveFormat, Limits, iter_members
from export_center.checksums import parse_checksums
from export_center.devportal.layout import (
    CHECKSUMS,
    INSTRUCTIONS_NAME,
    MANIFEST,
    MANIFEST_DSSE,
    ROOT_FILES,
    VERIFY_SCRIPT_NAME,
)
from export_center.devportal.manifest import PAYLOAD_TYPE, DevportalManifest, category_of
from export_center.devportal.texts import INSTRUCTIONS, VERIFY_SCRIPT
from export_center.digests import prefixed, sha256_chunks, sha256_hex
from export_center.errors import VerificationError
from export_center.signing.dsse import verify_envelope
from export_center.signing.interface import PublicKey
from export_center.verification import CheckResult, VerifyReport

__all__ = ["LIMITS", "verify_bundle"]

logger = logging.getLogger(__name__)

#: Bounds for reading a devportal bundle. Wider than the archive reader's defaults where a
#: portal needs it: names up to 4096 bytes (PATH_MAX; a documentation tree can be deep, so
#: no depth bound beyond what the name length allows), 8 GiB per file (SDK archives), 32 GiB
#: in all, and the ratio check from 64 MiB on.
LIMITS = Limits(
    max_name_length=4096,
    max_path_depth=2048,
    max_member_bytes=8 << 30,
    max_total_bytes=32 << 30,
    ratio_grace_bytes=64 << 20,
)
# What the bundle writer produces: a .tgz whose PAX records carry at most a long or non-ASCII
# path; bundles written before the shared archive writer (through tarfile) may also carry
# ownership and mtime records. Anything else did not come from us.
_FORMATS: frozenset[ArchiveFormat] = frozenset({"gzip"})
_PAX_KEYS = frozenset({"mtime", "uid", "gid", "uname", "gname"})
# Root files are read into memory (they are parsed); anything larger is refused.
_MAX_ROOT_FILE_BYTES = 64 << 20


@dataclass(frozen=True)
class _File:
    """A file as read: its digest and size; ``data`` only for the root files."""

    sha256: str
    size: int
    data: bytes | None


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
) -> VerifyReport[DevportalManifest]:
    """Verify a ``devportal-offline-bundle.tgz`` stream against ``trust_roots``.

    ``limits`` defaults to :data:`LIMITS`. The report lists the checks that passed and the
    bundle's id, ``generatedAt``, root hash and entry count.

    Raises:
        UnsafeArchiveError: the archive is malformed or hostile (check ``archive``).
        VerificationError: ``layout``, ``checksums``, ``dsse``, ``manifest`` or ``entries``
            failed; the message names the file.
    """
    if not trust_roots:
        raise VerificationError("dsse", "no trust roots: refusing to verify against nothing")
    report: VerifyReport[DevportalManifest] = VerifyReport(
        bundle=str(getattr(archive, "name", "<stream>"))
    )

    def passed(name: str, detail: str) -> None:
        report.checks.append(CheckResult(name, "pass", detail))

    files, directories = _read_archive(archive, limits or LIMITS)
    passed("archive", f"{len(files)} files, {len(directories)} directories")

    _check_layout(files, directories)
    passed("layout", "root files present, nothing outside the layout")

    checksums = _data(files, CHECKSUMS)
    report.root_hash = prefixed(files[CHECKSUMS].sha256)
    _check_checksums(files, checksums)
    passed("checksums", f"{len(files) - 1} files match checksums.txt")

    manifest_bytes = _data(files, MANIFEST)
    payload = verify_envelope(_data(files, MANIFEST_DSSE), trust_roots, PAYLOAD_TYPE)
    if payload != manifest_bytes:
        raise VerificationError("dsse", "manifest.json is not the payload signed in the envelope")
    passed("dsse", "manifest.json is signed by a trusted key")

    manifest = report.manifest = _parse_manifest(manifest_bytes)
    passed("manifest", f"{manifest.version}, bundleId {manifest.bundle_id}")

    _check_entries(manifest, files)
    passed("entries", f"{manifest.totals.entry_count} files match the signed manifest")

    _check_helpers(files)
    passed("helpers", f"{VERIFY_SCRIPT_NAME} and {INSTRUCTIONS_NAME} are this version's own")
    logger.info("devportal bundle %s verified", manifest.bundle_id)
    report.bundle_id = manifest.bundle_id
    report.generated_at = manifest.generated_at
    report.entry_count = manifest.totals.entry_count
    return report


def _read_archive(archive: BinaryIO, limits: Limits) -> tuple[dict[str, _File], set[str]]:
    files: dict[str, _File] = {}
    directories: set[str] = set()
    for member in iter_members(archive, limits, formats=_FORMATS, pax_keys=_PAX_KEYS):
        if member.is_dir:
            directories.add(member.name)
        elif member.name in ROOT_FILES:
            data = member.read(max_bytes=_MAX_ROOT_FILE_BYTES)
            files[member.name] = _File(sha256_hex(data), len(data), data)
        else:
            digest, size = sha256_chunks(member.chunks())
            files[member.name] = _File(digest, size, None)
    return files, directories


def _data(files: Mapping[str, _File], path: str) -> bytes:
    data = files[path].data
    assert data is not None  # kept by _read_archive for every root file
    return data


def _check_layout(files: Mapping[str, _File], directories: set[str]) -> None:
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


def _check_checksums(files: Mapping[str, _File], checksums: bytes) -> None:
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


def _check_entries(manifest: DevportalManifest, files: Mapping[str, _File]) -> None:
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


# The two helper files are constants of the product (:mod:`.texts`), but no signature covers
# them (checksums.txt is not signed): the instructions tell the user to run the script, so a
# bundle whose script or instructions are not the ones this version writes is refused, however
# well the rest verifies. Bundles of an earlier version with other texts are rebuilt.
_HELPERS = {VERIFY_SCRIPT_NAME: VERIFY_SCRIPT, INSTRUCTIONS_NAME: INSTRUCTIONS}


def _check_helpers(files: Mapping[str, _File]) -> None:
    for path, expected in sorted(_HELPERS.items()):
        if _data(files, path) != expected:
            raise VerificationError(
                "helpers",
                f"{path} is not the one this version of the product writes: do not run or "
                "follow it",
                hint="rebuild the bundle with this version, or get it again from its publisher",
            )
