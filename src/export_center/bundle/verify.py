"""Offline bundle verification: every check of docs/bundle-format.md, "Verification".

Steps 1-7 are here; step 8 (a mirror bundle's TUF chain, with expiry) is an extra check the
caller adds (:func:`export_center.mirror.tuf.tuf_check`: the mirror layer sits above this
one), and ``stella export verify`` always adds it.

Works on the archive (streamed member by member through the one safe reader, never extracted)
and on an extracted directory. Never touches the network. Each check is reported by name; the
first failure stops the run and decides the exit code (2). Anything not listed by the signed
manifest is a failure: we accept only the paths the signature covers.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from export_center.archive.reader import Limits, iter_members
from export_center.bundle._mapped import mapped
from export_center.bundle.manifest import (
    CHECKSUMS,
    EXPORT_DSSE,
    EXPORT_JSON,
    MANIFEST_PAYLOAD_TYPE,
    PROVENANCE_DSSE,
    PROVENANCE_JSON,
    SIGNED_FILES,
    ExportManifest,
    parse_manifest,
    rerun_hash,
)
from export_center.bundle.provenance import (
    PROVENANCE_PAYLOAD_TYPE,
    SLSA_PROVENANCE_V1,
    STATEMENT_TYPE,
)
from export_center.checksums import parse_checksums
from export_center.digests import prefixed, sha256_file, sha256_hex
from export_center.errors import ExportCenterError, UnsafeArchiveError, VerificationError
from export_center.signing.dsse import verify_detached_signature, verify_envelope
from export_center.signing.interface import PublicKey
from export_center.verification import CheckResult, VerifyReport

#: What the export verifier reports: the checks, and the signed manifest once it is trusted.
BundleReport = VerifyReport[ExportManifest]

# Files small enough to keep in memory while streaming (they are read again by later checks):
# the signed files, checksums.txt and a mirror bundle's TUF metadata (step 8). Each is bounded,
# and so is their sum: a hostile archive full of tuf/*.json must not fill the memory.
_KEEP = frozenset({CHECKSUMS, *SIGNED_FILES})
_MAX_KEEP_BYTES = 64 * 1024 * 1024
_MAX_KEEP_TOTAL = 256 * 1024 * 1024


def _keep(name: str) -> bool:
    return name in _KEEP or (name.startswith("tuf/") and name.endswith(".json"))


_MEMBER_CHUNK = 4 << 20  # hashed per call: hashing releases the GIL, decompression runs beside

#: A profile-specific check run after the generic ones: (signed manifest, files read) -> detail.
ExtraCheck = Callable[[ExportManifest, "CollectedFiles"], str | None]

CHECK_ORDER = (
    "archive-digest",
    "archive-signature",
    "safe-read",
    "checksums",
    "manifest-signature",
    "contents",
    "rerun-hash",
    "provenance",
)


@dataclass
class CollectedFiles:
    """What the safe read saw: every file's (sha256 hex, size), and the small signed files."""

    digests: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (hex, size)
    kept: dict[str, bytes] = field(default_factory=dict)


def _collect_archive(path: Path, limits: Limits) -> CollectedFiles:
    out = CollectedFiles()
    kept = 0
    for member in iter_members(path, limits):
        if member.is_dir:
            continue
        h = hashlib.sha256()
        keep = _keep(member.name)
        buf = bytearray()
        for chunk in member.chunks(_MEMBER_CHUNK):
            h.update(chunk)
            if keep:
                buf += chunk
                kept += len(chunk)
                if len(buf) > _MAX_KEEP_BYTES:
                    raise UnsafeArchiveError(f"{member.name}: larger than {_MAX_KEEP_BYTES} bytes")
                if kept > _MAX_KEEP_TOTAL:
                    raise UnsafeArchiveError(
                        f"{member.name}: manifests and metadata over {_MAX_KEEP_TOTAL} bytes"
                    )
        out.digests[member.name] = (h.hexdigest(), member.size)
        if keep:
            out.kept[member.name] = bytes(buf)
    return out


def _collect_dir(root: Path) -> CollectedFiles:
    out = CollectedFiles()
    kept = 0
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            raise UnsafeArchiveError(f"{rel}: symbolic link in the bundle directory")
        if p.is_dir():
            continue
        if not p.is_file():
            raise UnsafeArchiveError(f"{rel}: not a regular file")
        size = p.stat().st_size
        out.digests[rel] = (sha256_file(p)[0], size)
        if _keep(rel):
            kept += size
            if size > _MAX_KEEP_BYTES:
                raise UnsafeArchiveError(f"{rel}: larger than {_MAX_KEEP_BYTES} bytes")
            if kept > _MAX_KEEP_TOTAL:
                raise UnsafeArchiveError(
                    f"{rel}: manifests and metadata over {_MAX_KEEP_TOTAL} bytes"
                )
            out.kept[rel] = p.read_bytes()
    return out


class _Run:
    """Runs checks in order; after the first failure the rest are 'not run'."""

    def __init__(self, report: BundleReport) -> None:
        self.report = report
        self.stopped = False

    def check(self, name: str, fn: Callable[[], str | None]) -> None:
        if self.stopped:
            self.report.checks.append(CheckResult(name, "not run"))
            return
        try:
            detail = fn()
        except VerificationError as e:
            # The line names the check already: "safe-read: safe-read: ..." said it twice.
            detail = e.message.removeprefix(f"{name}: ")
            self.report.checks.append(CheckResult(name, "fail", detail))
            self.stopped = True
            return
        except (ExportCenterError, ValueError, KeyError, TypeError, AttributeError) as e:
            msg = e.message if isinstance(e, ExportCenterError) else f"{type(e).__name__}: {e}"
            self.report.checks.append(CheckResult(name, "fail", msg))
            self.stopped = True
            return
        if detail is not None and detail.startswith("skipped"):
            self.report.checks.append(CheckResult(name, "skipped", detail))
        else:
            self.report.checks.append(CheckResult(name, "pass", detail or ""))


def _fail(check: str, msg: str) -> VerificationError:
    return VerificationError(check, msg)


def _archive_sidecar(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


def _trusted_signer(archive: Path, sig: Path, trust_roots: Mapping[str, PublicKey]) -> str | None:
    """The id of the trusted key whose signature ``sig`` is over ``archive`` (None: none)."""
    sidecar = sig.read_bytes()
    with mapped(archive) as data:
        for keyid, key in sorted(trust_roots.items()):
            try:
                verify_detached_signature(key, data, sidecar, where=sig.name)
            except VerificationError:
                continue
            return keyid
    return None


def verify_bundle(
    bundle: Path,
    trust_roots: Mapping[str, PublicKey],
    *,
    limits: Limits | None = None,
    extra_checks: Sequence[tuple[str, ExtraCheck]] = (),
    tenant: str | None = None,
    require_signature: bool = False,
) -> BundleReport:
    """Verify ``bundle`` (an archive file or an extracted directory) against ``trust_roots``.

    With ``tenant``, a ``tenant`` check after the manifest's signature refuses a bundle whose
    signed manifest names another tenant: a key trusted for several tenants (or a key a
    tenant should never have had) cannot pass one tenant's bundle off as another's.

    Never raises for a bad bundle: failures are in the report (``report.exit_code``). A check
    that cannot run (no ``.sha256`` or ``.sig`` next to the archive, a directory) is
    ``skipped`` with the reason; with ``require_signature`` a missing archive signature (or a
    directory, which has none) fails ``archive-signature`` instead.

    Raises:
        VerificationError: ``trust_roots`` is empty (fail closed, before reading anything).
    """
    if not trust_roots:
        raise VerificationError("trust-roots", "no trusted public keys given")
    report: BundleReport = VerifyReport(bundle=str(bundle))
    run = _Run(report)
    limits = limits or Limits()
    is_dir = bundle.is_dir()
    collected = CollectedFiles()
    state: dict[str, Any] = {}

    # The whole-archive checks read the archive on their own: they run in threads beside the
    # safe read (hashing and signature checks release the GIL), and report in order.
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stella-verify")
    digest_job: Future[tuple[str, int]] | None = None
    signer_job: Future[str | None] | None = None
    sig = bundle.with_name(bundle.name + ".sig")
    if not is_dir:
        digest_job = pool.submit(sha256_file, bundle)
        if sig.is_file():
            signer_job = pool.submit(_trusted_signer, bundle, sig, trust_roots)

    def archive_digest() -> str | None:
        if is_dir or digest_job is None:
            return "skipped: a directory has no archive digest"
        sidecar = _archive_sidecar(bundle)
        actual = digest_job.result()[0]
        state["archive_sha256"] = actual
        if not sidecar.is_file():
            return f"skipped: no {sidecar.name} next to the archive (sha256 {actual})"
        line = sidecar.read_text(encoding="utf-8", errors="replace").strip()
        expected = line.split()[0] if line else ""
        if expected != actual:
            raise _fail("archive-digest", f"archive sha256 {actual} != {sidecar.name} {expected}")
        return f"sha256 {actual}"

    def archive_signature() -> str | None:
        if is_dir:
            if require_signature:
                raise _fail("archive-signature", "a directory has no archive signature")
            return "skipped: a directory has no archive signature"
        if signer_job is None:
            if require_signature:
                raise _fail(
                    "archive-signature",
                    f"no {sig.name} next to the archive, and a signature is required",
                )
            return f"skipped: no {sig.name} next to the archive"
        keyid = signer_job.result()
        if keyid is not None:
            return f"signed by trusted key {keyid}"
        raise _fail("archive-signature", f"{sig.name} is not a valid signature by a trusted key")

    def safe_read() -> str | None:
        nonlocal collected
        try:
            collected = _collect_dir(bundle) if is_dir else _collect_archive(bundle, limits)
        except UnsafeArchiveError as e:
            raise _fail("safe-read", e.message) from e
        return f"{len(collected.digests)} files"

    def checksums() -> str | None:
        raw = collected.kept.get(CHECKSUMS)
        if raw is None:
            raise _fail("checksums", f"{CHECKSUMS} is missing")
        report.root_hash = prefixed(sha256_hex(raw))
        try:
            listed = parse_checksums(raw)
        except ValueError as e:
            raise _fail("checksums", f"{CHECKSUMS}: {e}") from e
        present = set(collected.digests) - {CHECKSUMS}
        if missing := sorted(set(listed) - present):
            raise _fail("checksums", f"listed but missing: {', '.join(missing[:5])}")
        if extra := sorted(present - set(listed)):
            raise _fail("checksums", f"present but not listed: {', '.join(extra[:5])}")
        for path, digest in sorted(listed.items()):
            if collected.digests[path][0] != digest:
                raise _fail("checksums", f"{path}: sha256 does not match {CHECKSUMS}")
        return f"{len(listed)} files match; root hash {report.root_hash}"

    def manifest_signature() -> str | None:
        env = collected.kept.get(EXPORT_DSSE)
        body = collected.kept.get(EXPORT_JSON)
        if env is None or body is None:
            raise _fail("manifest-signature", f"{EXPORT_JSON} or {EXPORT_DSSE} is missing")
        payload = verify_envelope(env, trust_roots, MANIFEST_PAYLOAD_TYPE)
        if payload != body:
            raise _fail("manifest-signature", f"{EXPORT_JSON} differs from the signed payload")
        manifest = parse_manifest(payload, check="manifest-signature")
        report.manifest = manifest
        report.export_id = manifest.export_id
        return f"export {report.export_id}"

    def tenant_check() -> str | None:
        assert report.manifest is not None and tenant is not None
        if report.manifest.tenant != tenant:
            raise _fail(
                "tenant",
                f"the bundle is for tenant {report.manifest.tenant!r}, not {tenant!r}",
            )
        return f"tenant {tenant}"

    def contents() -> str | None:
        assert report.manifest is not None
        listed: dict[str, tuple[str, int]] = {}
        for e in report.manifest.contents:
            path, digest, size = e.path, e.digest, e.size
            if path in listed:
                raise _fail("contents", f"{path} listed twice")
            listed[path] = (digest, size)
            actual = collected.digests.get(path)
            if actual is None:
                raise _fail("contents", f"{path} is in the manifest but not in the bundle")
            if prefixed(actual[0]) != digest:
                raise _fail("contents", f"{path}: sha256 does not match the signed manifest")
            if actual[1] != size:
                raise _fail("contents", f"{path}: {actual[1]} bytes, manifest says {size}")
        allowed = set(listed) | SIGNED_FILES | {CHECKSUMS}
        if unlisted := sorted(set(collected.digests) - allowed):
            raise _fail(
                "contents", f"not covered by the signed manifest: {', '.join(unlisted[:5])}"
            )
        return f"{len(listed)} files match the signed manifest"

    def rerun() -> str | None:
        assert report.manifest is not None
        digests = [e.digest for e in report.manifest.contents]
        expected = rerun_hash(digests)
        if report.manifest.rerun_hash != expected:
            raise _fail("rerun-hash", f"manifest rerunHash != {expected}")
        return expected

    def provenance() -> str | None:
        env = collected.kept.get(PROVENANCE_DSSE)
        body = collected.kept.get(PROVENANCE_JSON)
        if env is None or body is None:
            raise _fail("provenance", f"{PROVENANCE_JSON} or {PROVENANCE_DSSE} is missing")
        payload = verify_envelope(env, trust_roots, PROVENANCE_PAYLOAD_TYPE)
        if payload != body:
            raise _fail("provenance", f"{PROVENANCE_JSON} differs from the signed payload")
        stmt = orjson.loads(payload)
        if not isinstance(stmt, dict):
            raise _fail("provenance", f"{PROVENANCE_JSON} is not a JSON object")
        if stmt.get("_type") != STATEMENT_TYPE or stmt.get("predicateType") != SLSA_PROVENANCE_V1:
            raise _fail("provenance", "not an in-toto Statement v1 with a SLSA v1 predicate")
        subjects = {s["name"]: s["digest"]["sha256"] for s in stmt.get("subject", [])}
        assert report.manifest is not None
        expected = {e.path for e in report.manifest.contents} | {EXPORT_JSON}
        if set(subjects) != expected:
            diff = sorted(set(subjects) ^ expected)
            raise _fail("provenance", f"subjects differ from the manifest: {', '.join(diff[:5])}")
        for name, digest in subjects.items():
            if collected.digests[name][0] != digest:
                raise _fail("provenance", f"subject {name}: sha256 does not match")
        return f"{len(subjects)} subjects"

    steps: list[tuple[str, Callable[[], str | None]]] = [
        ("archive-digest", archive_digest),
        ("archive-signature", archive_signature),
        ("safe-read", safe_read),
        ("checksums", checksums),
        ("manifest-signature", manifest_signature),
        *([("tenant", tenant_check)] if tenant is not None else []),
        ("contents", contents),
        ("rerun-hash", rerun),
        ("provenance", provenance),
    ]
    try:
        for name, fn in steps:
            run.check(name, fn)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for name, extra in extra_checks:
        run.check(name, functools.partial(_run_extra, extra, report, collected))
    return report


def _run_extra(extra: ExtraCheck, report: BundleReport, files: CollectedFiles) -> str | None:
    # Extra checks run only after the generic ones passed, the manifest's parse among them.
    assert report.manifest is not None
    return extra(report.manifest, files)
