"""Verifying an Offline Kit, offline, trusting nothing inside it but what the trust roots sign.

- :func:`verify_part`: one part directory alone (a medium as it arrives): exactly the expected
  files, ``checksums.txt``, the DSSE signature over ``part.json``, its schema, and the slice
  against the signed digest. Every failure names the part.
- :func:`check_parts`: parts that must form one kit: the same kit id (a part of another kit is
  refused by name), the same signed table, no index twice; :func:`missing_parts` says what has
  not arrived yet.
- :func:`join_parts`: the slices joined in order, checked against the kit digest every part
  signs.
- :func:`verify_kit_archive`: the joined kit archive, read through the one safe reader into a
  private directory: exactly the signed files, ``checksums.txt``, the DSSE signature over
  ``kit.json``, and every bundle verified as ``stella export verify`` does (sidecars
  included) and matching its entry (export id, tenant, profile).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from export_center.archive.reader import Limits, iter_members
from export_center.bundle.verify import verify_bundle
from export_center.checksums import parse_checksums
from export_center.digests import prefixed, sha256_file, sha256_hex
from export_center.errors import UnsafeArchiveError, VerificationError
from export_center.kit.layout import (
    BUNDLES_DIR,
    CHECKSUMS,
    KIT_DSSE,
    KIT_MANIFEST,
    KIT_PAYLOAD_TYPE,
    KIT_ROOT_FILES,
    PART_DSSE,
    PART_MANIFEST,
    PART_PAYLOAD_TYPE,
    README,
    VERIFY_SCRIPT,
)
from export_center.kit.manifest import (
    KitBundle,
    KitManifest,
    PartManifest,
    parse_kit_manifest,
    parse_part_manifest,
)
from export_center.signing.dsse import verify_envelope
from export_center.signing.interface import PublicKey
from export_center.verification import CheckResult

__all__ = [
    "LIMITS",
    "VerifiedKit",
    "VerifiedPart",
    "check_parts",
    "join_parts",
    "missing_parts",
    "verify_kit_archive",
    "verify_part",
]

#: Bounds for reading a kit archive: few members, shallow names, large bundles.
LIMITS = Limits(
    max_members=10_000,
    max_path_depth=4,
    max_member_bytes=64 << 30,
    max_total_bytes=256 << 30,
)
_PART_FILES = frozenset({PART_MANIFEST, PART_DSSE, CHECKSUMS, README, VERIFY_SCRIPT})
_MAX_SMALL = 16 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True)
class VerifiedPart:
    directory: Path
    label: str  # what messages call it: the directory's name
    manifest: PartManifest
    chunk: Path
    checks: tuple[CheckResult, ...]


@dataclass(frozen=True)
class VerifiedKit:
    kit_id: str
    manifest: KitManifest
    root: Path  # the extracted kit
    bundles: tuple[tuple[KitBundle, Path], ...]  # in import order, with the archive's path
    checks: list[CheckResult] = field(default_factory=list)


def _label(directory: Path) -> str:
    return directory.resolve().name or str(directory)


def _small(path: Path, label: str, check: str) -> bytes:
    try:
        info = path.lstat()
    except FileNotFoundError as e:
        raise VerificationError(check, f"{label}: {path.name} is missing") from e
    if not stat.S_ISREG(info.st_mode):
        raise VerificationError(check, f"{label}: {path.name} is not a regular file")
    if info.st_size > _MAX_SMALL:
        raise VerificationError(check, f"{label}: {path.name} is larger than {_MAX_SMALL} bytes")
    return path.read_bytes()


def verify_part(directory: Path, trust_roots: Mapping[str, PublicKey]) -> VerifiedPart:
    """Verify one part directory on its own.

    Raises:
        VerificationError: the first failed check (``part-files``, ``part-checksums``,
            ``part-signature``, ``part-manifest``, ``part-slice``), naming the part.
    """
    if not trust_roots:
        raise VerificationError("trust-roots", "no trusted public keys given")
    label = _label(directory)
    checks: list[CheckResult] = []
    if not directory.is_dir():
        raise VerificationError("part-files", f"{label}: not a directory")
    present: dict[str, os.stat_result] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        info = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise VerificationError("part-files", f"{label}: {entry.name} is not a regular file")
        present[entry.name] = info
    missing = sorted(_PART_FILES - present.keys())
    if missing:
        raise VerificationError("part-files", f"{label}: {', '.join(missing)} missing")
    checks.append(CheckResult("part-files", "pass", f"{len(present)} files"))

    try:
        listed = parse_checksums(_small(directory / CHECKSUMS, label, "part-checksums"))
    except ValueError as e:
        raise VerificationError("part-checksums", f"{label}: checksums.txt: {e}") from e
    expected = present.keys() - {CHECKSUMS}
    for name in sorted(expected - listed.keys()):
        raise VerificationError("part-checksums", f"{label}: {name} is not in checksums.txt")
    for name in sorted(listed.keys() - expected):
        raise VerificationError("part-checksums", f"{label}: {name} is missing")
    for name, digest in sorted(listed.items()):
        if sha256_file(directory / name)[0] != digest:
            raise VerificationError(
                "part-checksums", f"{label}: {name} does not match checksums.txt (damaged)"
            )
    checks.append(CheckResult("part-checksums", "pass", f"{len(listed)} files intact"))

    body = _small(directory / PART_MANIFEST, label, "part-signature")
    envelope = _small(directory / PART_DSSE, label, "part-signature")
    try:
        payload = verify_envelope(envelope, trust_roots, PART_PAYLOAD_TYPE)
    except VerificationError as e:
        raise VerificationError("part-signature", f"{label}: {e.message}") from e
    if payload != body:
        raise VerificationError("part-signature", f"{label}: part.json is not the signed payload")
    checks.append(CheckResult("part-signature", "pass", "part.json signed by a trusted key"))

    try:
        manifest = parse_part_manifest(body)
    except VerificationError as e:
        raise VerificationError("part-manifest", f"{label}: {e.message}") from e
    this = manifest.this
    checks.append(
        CheckResult(
            "part-manifest", "pass", f"part {manifest.index} of {manifest.count}, {manifest.kit_id}"
        )
    )
    extra = sorted(expected - _PART_FILES - {this.path})
    if extra:
        raise VerificationError("part-slice", f"{label}: unexpected file {extra[0]}")
    if this.path not in present:
        raise VerificationError("part-slice", f"{label}: {this.path} is missing")
    if listed[this.path] != this.sha256 or present[this.path].st_size != this.size:
        raise VerificationError(
            "part-slice", f"{label}: {this.path} is not the slice part.json signs"
        )
    checks.append(CheckResult("part-slice", "pass", f"{this.path}, {this.size} bytes"))
    return VerifiedPart(directory, label, manifest, directory / this.path, tuple(checks))


def check_parts(parts: Sequence[VerifiedPart], expect_kit: str | None = None) -> list[VerifiedPart]:
    """Check that ``parts`` belong to one kit; returns them sorted by index.

    The kit is ``expect_kit``, else the one most parts name (the first given on a tie).

    Raises:
        VerificationError: (``part-kit``) a part of another kit, a different table, or an index
            given twice, naming the part.
    """
    if not parts:
        raise VerificationError("part-kit", "no parts given")
    votes = Counter(p.manifest.kit_id for p in parts)
    kit = expect_kit or max(votes, key=lambda k: (votes[k], -_first(parts, k)))
    reference = next((p for p in parts if p.manifest.kit_id == kit), None)
    for p in parts:
        if p.manifest.kit_id != kit:
            raise VerificationError(
                "part-kit", f"{p.label}: belongs to kit {p.manifest.kit_id}, not to kit {kit}"
            )
    assert reference is not None
    ref = reference.manifest
    by_index: dict[int, VerifiedPart] = {}
    for p in parts:
        m = p.manifest
        if (m.parts, m.kit, m.kit_manifest, m.count) != (
            ref.parts,
            ref.kit,
            ref.kit_manifest,
            ref.count,
        ):
            raise VerificationError(
                "part-kit", f"{p.label}: its table of parts differs from {reference.label}'s"
            )
        other = by_index.setdefault(m.index, p)
        if other is not p:
            raise VerificationError(
                "part-kit", f"{p.label}: part {m.index} given twice (also {other.label})"
            )
    return [by_index[i] for i in sorted(by_index)]


def _first(parts: Sequence[VerifiedPart], kit: str) -> int:
    return next(i for i, p in enumerate(parts) if p.manifest.kit_id == kit)


def missing_parts(parts: Sequence[VerifiedPart]) -> list[int]:
    """The indexes of the kit's parts not in ``parts`` (from :func:`check_parts`)."""
    have = {p.manifest.index for p in parts}
    return [i for i in range(1, parts[0].manifest.count + 1) if i not in have]


def join_parts(parts: Sequence[VerifiedPart], target: Path) -> None:
    """Join all the kit's slices (from :func:`check_parts`, complete) into ``target``.

    Raises:
        VerificationError: (``kit-join``) a part is missing, or the joined bytes are not the
            signed kit archive (a slice changed after it was checked).
    """
    missing = missing_parts(parts)
    if missing:
        count = parts[0].manifest.count
        raise VerificationError(
            "kit-join", f"the kit has {count} parts; missing: {', '.join(map(str, missing))}"
        )
    kit = parts[0].manifest.kit
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for p in parts:
            with p.chunk.open("rb") as src:
                while block := src.read(_CHUNK):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
    if digest.hexdigest() != kit.sha256 or size != kit.size:
        raise VerificationError(
            "kit-join", f"the joined parts are not the signed kit archive {kit.sha256}"
        )


def _extract(archive: Path, root: Path) -> dict[str, tuple[str, int]]:
    files: dict[str, tuple[str, int]] = {}
    for member in iter_members(archive, LIMITS, formats={"tar"}):
        if member.is_dir:
            continue
        top = member.name.split("/", 1)[0]
        if member.name not in KIT_ROOT_FILES and top != BUNDLES_DIR:
            raise VerificationError("kit-files", f"{member.name}: not part of the kit layout")
        target = root / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with target.open("xb") as out:
            for chunk in member.chunks():
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        files[member.name] = (digest.hexdigest(), size)
    return files


def verify_kit_archive(
    archive: Path,
    trust_roots: Mapping[str, PublicKey],
    work: Path,
    *,
    expect: PartManifest | None = None,
) -> VerifiedKit:
    """Verify a joined kit archive, extracting it into ``work`` (an empty directory).

    Raises:
        VerificationError: the first failed check (``kit-files``, ``kit-checksums``,
            ``kit-signature``, ``kit-manifest``, ``kit-bundles``, ``bundle``); a bundle's
            failure names the bundle and its check.
    """
    checks: list[CheckResult] = []
    try:
        files = _extract(archive, work)
    except UnsafeArchiveError as e:
        raise VerificationError("kit-files", e.message) from e
    missing = sorted(KIT_ROOT_FILES - files.keys())
    if missing:
        raise VerificationError("kit-files", f"missing {', '.join(missing)}")
    checks.append(CheckResult("kit-files", "pass", f"{len(files)} files"))

    try:
        listed = parse_checksums((work / CHECKSUMS).read_bytes())
    except ValueError as e:
        raise VerificationError("kit-checksums", f"checksums.txt: {e}") from e
    expected = files.keys() - {CHECKSUMS}
    if listed.keys() != expected:
        odd = sorted(listed.keys() ^ expected)[0]
        raise VerificationError("kit-checksums", f"{odd}: listed or present, not both")
    for name, digest in sorted(listed.items()):
        if files[name][0] != digest:
            raise VerificationError("kit-checksums", f"{name} does not match checksums.txt")
    checks.append(CheckResult("kit-checksums", "pass", f"{len(listed)} files intact"))

    body = (work / KIT_MANIFEST).read_bytes()
    try:
        payload = verify_envelope((work / KIT_DSSE).read_bytes(), trust_roots, KIT_PAYLOAD_TYPE)
    except VerificationError as e:
        raise VerificationError("kit-signature", e.message) from e
    if payload != body:
        raise VerificationError("kit-signature", "kit.json is not the signed payload")
    checks.append(CheckResult("kit-signature", "pass", "kit.json signed by a trusted key"))

    manifest = parse_kit_manifest(body)
    if expect is not None and (
        expect.kit_id != manifest.kit_id or expect.kit_manifest != prefixed(sha256_hex(body))
    ):
        raise VerificationError(
            "kit-manifest", f"kit.json is {manifest.kit_id}'s, the parts are {expect.kit_id}'s"
        )
    checks.append(CheckResult("kit-manifest", "pass", f"{manifest.kit_id}"))

    signed = {ref.path: ref for b in manifest.bundles for ref in (b.archive, *b.sidecars)}
    bundled = {name for name in files if name.startswith(BUNDLES_DIR + "/")}
    if bundled != signed.keys():
        odd = sorted(bundled ^ signed.keys())[0]
        raise VerificationError("kit-bundles", f"{odd}: in the kit or in kit.json, not both")
    for name, ref in sorted(signed.items()):
        if files[name] != (ref.sha256, ref.size):
            raise VerificationError("kit-bundles", f"{name}: not the file kit.json signs")
    checks.append(CheckResult("kit-bundles", "pass", f"{len(manifest.bundles)} bundles"))

    bundles: list[tuple[KitBundle, Path]] = []
    for entry in manifest.bundles:
        path = work / entry.archive.path
        report = verify_bundle(path, trust_roots)
        failed = report.failed
        if failed is not None or report.manifest is None:
            detail = f"{failed.name}: {failed.detail}" if failed else "no manifest"
            raise VerificationError("bundle", f"bundle {entry.order} ({path.name}): {detail}")
        m = report.manifest
        profile = f"{m.profile.kind}:{m.profile.variant}"
        if (m.export_id, m.tenant, profile) != (entry.export_id, entry.tenant, entry.profile):
            raise VerificationError(
                "bundle", f"bundle {entry.order} ({path.name}): not the bundle kit.json names"
            )
        checks.append(
            CheckResult(
                f"bundle {entry.order}",
                "pass",
                f"{profile} {entry.tenant} {entry.export_id}",
            )
        )
        bundles.append((entry, path))
    return VerifiedKit(manifest.kit_id, manifest, work, tuple(bundles), checks)
