"""Verifying a mirror bundle on the disconnected side: the bundle checks of docs/bundle-format.md
("Verification, in order", 1-7, :func:`~export_center.bundle.verify.verify_bundle`), then the
mirror checks, each reported by name:

``mirror``   the signed manifest describes a mirror bundle of a valid tenant;
``extract``  the archive is extracted safely, only the paths the manifest lists, and every file
             extracted is the one the checks above hashed;
``tuf``      the TUF chain (trusted root → root → timestamp → snapshot → targets, expiry as of
             the import) covers exactly the files under ``data/``;
``decrypt``  encrypted bundles: the data key opens, every file authenticates and its plaintext
             has the digest and size the signed manifest lists;
``records``  every record line holds what it claims (digests, ids, shard pairs, counts).

The trusted TUF root is, in order: the one given explicitly, the one the tenant's installed
generation recorded, or — first import only — the bundle's own root, accepted only when every
root key is one of the trusted PEM keys (trust on first use through the keys the operator
already trusts). Later roots must chain from it (TUF root rotation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from export_center.archive.reader import Limits, safe_extract
from export_center.bundle.jsonl import DIR_TYPES, TYPE_DIRS
from export_center.bundle.manifest import EXPORT_JSON, ExportManifest
from export_center.bundle.verify import BundleReport, CollectedFiles, ExtraCheck, verify_bundle
from export_center.digests import prefixed, sha256_file, sha256_hex
from export_center.errors import BadInputError, UnsafeArchiveError, VerificationError
from export_center.importer.records import (
    iter_bundle_records,
    layout_paths,
    load_index,
)
from export_center.mirror import crypto
from export_center.mirror.layout import DATA, POLICY_PREFIXES
from export_center.mirror.tuf import ROLE_FILES, root_keys_trusted, verify_tuf_metadata
from export_center.signing.interface import PublicKey
from export_center.store.repository import check_tenant
from export_center.verification import VerifyReport

_ALLOWED_DATA = (
    "data/raw/",
    "data/normalized/",
    "data/indexes/",
    "data/policy/",
    "data/consensus/",
)

MIRROR_CHECKS = ("mirror", "extract", "tuf", "decrypt", "records")


@dataclass
class MirrorVerification:
    """The report plus what the import needs once everything passed."""

    report: BundleReport
    manifest: ExportManifest | None = None
    manifest_digest: str | None = None
    root: Path | None = None  # extracted bundle
    plain_root: Path | None = None  # decrypted data (or ``root`` when not encrypted)
    data_paths: list[str] = field(default_factory=list)
    doc_types: list[str] = field(default_factory=list)
    tuf_root: bytes | None = None
    records: int = 0
    decrypted: bool = False
    missing_key: bool = False  # encrypted, and no key material was given at all

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def tenant(self) -> str:
        return self.manifest.tenant if self.manifest is not None else ""


def verify_mirror_bundle(
    bundle: Path,
    *,
    is_archive: bool,
    trust_roots: dict[str, PublicKey],
    work: Path,
    now: datetime,
    tuf_root: bytes | None = None,
    installed_tuf_root: Callable[[str], bytes | None] = lambda _t: None,
    keys: crypto.KeyMaterial | None = None,
    require_plaintext: bool = True,
    limits: Limits | None = None,
    tenant: str | None = None,
) -> MirrorVerification:
    """Run every check on ``bundle`` (a private copy), extracting and decrypting into ``work``.

    ``require_plaintext`` False (``verify-bundle`` without a key) reports ``decrypt`` and
    ``records`` as skipped for an encrypted bundle instead of failing. ``tenant``: a bundle of
    another tenant fails the ``tenant`` check (exit 2).

    Raises:
        VerificationError: ``trust_roots`` is empty (fail closed, before reading anything).
    """
    keys = keys or crypto.KeyMaterial()
    work.mkdir(parents=True, exist_ok=True)
    out = MirrorVerification(report=VerifyReport(bundle=str(bundle)))
    state: dict[str, Any] = {}

    def mirror(manifest: ExportManifest, collected: CollectedFiles) -> str | None:
        out.manifest = manifest
        profile = manifest.profile
        if profile.kind != "mirror" or profile.variant not in ("full", "delta"):
            raise VerificationError(
                "mirror",
                f"export {manifest.export_id} is {profile.kind}:{profile.variant}, "
                "not a mirror bundle",
            )
        try:
            check_tenant(manifest.tenant)
        except BadInputError as e:
            raise VerificationError("mirror", e.message) from e
        section = manifest.mirror
        if section is None:
            raise VerificationError("mirror", "manifest has no mirror section")
        types = []
        for d in section.include:
            if d not in DIR_TYPES:
                raise VerificationError("mirror", f"unknown record type {d!r} in mirror.include")
            types.append(DIR_TYPES[d])
        out.doc_types = sorted(types)
        if profile.variant == "delta" and manifest.delta is None:
            raise VerificationError("mirror", "a mirror:delta manifest without its delta section")
        paths = sorted(e.path for e in manifest.contents)
        for p in ROLE_FILES.values():
            if p not in paths:
                raise VerificationError("mirror", f"{p} is missing: no TUF metadata")
        out.data_paths = [p for p in paths if p.startswith(DATA)]
        if bad := [p for p in out.data_paths if not p.startswith(_ALLOWED_DATA)]:
            raise VerificationError("mirror", f"unexpected files under data/: {', '.join(bad[:5])}")
        state["digests"] = dict(collected.digests)
        env = collected.kept.get(EXPORT_JSON, b"")
        out.manifest_digest = prefixed(sha256_hex(env))
        return f"mirror:{profile.variant} of tenant {manifest.tenant}"

    def extract(_m: ExportManifest, _c: CollectedFiles) -> str | None:
        digests: dict[str, tuple[str, int]] = state["digests"]
        if not is_archive:
            out.root = bundle
            return "skipped: the bundle is already a directory"
        dest = work / "extracted"
        try:
            written = safe_extract(bundle, dest, limits, allowed=set(digests))
        except UnsafeArchiveError as e:
            raise VerificationError("extract", e.message) from e
        if sorted(written) != sorted(digests):
            raise VerificationError("extract", "extracted files differ from the verified listing")
        for path, (digest, size) in sorted(digests.items()):
            if sha256_file(dest / path) != (digest, size):
                raise VerificationError("extract", f"{path}: differs from the verified bytes")
        out.root = dest
        return f"{len(written)} files"

    def tuf(_m: ExportManifest, _c: CollectedFiles) -> str | None:
        assert out.root is not None
        digests: dict[str, tuple[str, int]] = state["digests"]
        files = {
            p: (out.root / p).read_bytes()
            for p in digests
            if p.startswith("tuf/") and p.endswith(".json")
        }
        trusted = tuf_root or installed_tuf_root(out.tenant)
        how = "given root" if tuf_root else "installed root"
        if trusted is None:
            bundle_root = files.get(ROLE_FILES["root"])
            if bundle_root is None or not root_keys_trusted(bundle_root, trust_roots):
                raise VerificationError(
                    "tuf",
                    "untrusted TUF root: its keys are not among the trusted keys",
                    hint="pass --tuf-root with the root.json received out of band",
                )
            trusted, how = bundle_root, "first import: root keys are trusted keys"
        data = {p: d for p, d in digests.items() if p.startswith(DATA)}
        result = verify_tuf_metadata(trusted, files, data, now)
        out.tuf_root = result.root
        return (
            f"{result.targets} targets, root v{result.root_version} ({how}), timestamp "
            f"expires {result.timestamp_expires:%Y-%m-%dT%H:%M:%SZ}"
        )

    def decrypt(manifest: ExportManifest, _c: CollectedFiles) -> str | None:
        assert out.root is not None
        enc = manifest.encryption
        if enc is None:
            out.plain_root = out.root
            return "skipped: not encrypted"
        if enc.algorithm != crypto.ALGORITHM:
            raise VerificationError("decrypt", "unknown encryption section")
        recipients = enc.recipients
        if not recipients:
            raise VerificationError("decrypt", "encryption section lacks files or recipients")
        listed = {f.path: f for f in enc.files}
        if sorted(listed) != out.data_paths:
            raise VerificationError("decrypt", "encrypted files differ from the files under data/")
        if keys.empty:
            if not require_plaintext:
                return "skipped: encrypted; give --identity (or --kms) to check the plaintext"
            out.missing_key = True
            who = ", ".join(str(r.recipient or r.key_id) for r in recipients)
            raise VerificationError(
                "decrypt", f"the bundle is encrypted (for {who}) and no key was given"
            )
        key = crypto.unwrap_data_key(recipients, keys, manifest.export_id)
        plain = work / "plain"
        for path in out.data_paths:
            target = plain / path
            target.parent.mkdir(parents=True, exist_ok=True)
            digest, size = crypto.decrypt_file(
                out.root / path,
                target,
                key,
                crypto.aad_for(manifest.export_id, path),
                where=path,
            )
            entry = listed[path]
            if prefixed(digest) != entry.digest or size != entry.size:
                raise VerificationError(
                    "decrypt", f"{path}: plaintext does not match the signed manifest"
                )
        out.plain_root = plain
        out.decrypted = True
        return f"{len(out.data_paths)} files decrypted and match their plaintext digests"

    def records(manifest: ExportManifest, _c: CollectedFiles) -> str | None:
        if out.plain_root is None:
            return "skipped: encrypted and no key given"
        counts = manifest.counts
        n_by_type: dict[str, int] = {}
        for rec in iter_bundle_records(out.plain_root, out.tenant, out.doc_types, out.data_paths):
            n_by_type[rec.doc_type] = n_by_type.get(rec.doc_type, 0) + 1
        for doc_type in out.doc_types:
            type_dir = TYPE_DIRS[doc_type]
            n = n_by_type.get(doc_type, 0)
            if counts.get(type_dir, 0) != n:
                raise VerificationError(
                    "records", f"{n} {type_dir} records, manifest counts {counts.get(type_dir)}"
                )
            if len(load_index(out.plain_root, doc_type).records) != n:
                raise VerificationError("records", f"{type_dir} index lists another count")
        known = layout_paths(out.plain_root, out.doc_types, out.data_paths)
        extra = [p for p in out.data_paths if p not in known and not p.startswith(POLICY_PREFIXES)]
        if extra:
            raise VerificationError("records", f"not part of the layout: {', '.join(extra[:5])}")
        removed = manifest.delta.removed if manifest.delta is not None else ()
        out.records = sum(n_by_type.values())
        return f"{out.records} records, {len(removed)} tombstones"

    extra: list[tuple[str, ExtraCheck]] = [
        ("mirror", mirror),
        ("extract", extract),
        ("tuf", tuf),
        ("decrypt", decrypt),
        ("records", records),
    ]
    out.report = verify_bundle(
        bundle, trust_roots, limits=limits, extra_checks=extra, tenant=tenant
    )
    return out
