"""``stella airgap import`` / ``verify-bundle``: verify a mirror bundle, then apply it in one
transaction as the tenant's next generation.

Rules (docs/mirror.md, "Import"):
- everything is verified first (:mod:`.verify`); nothing touches the store before that passed;
- one database transaction applies the records and records the generation: any failure rolls
  all of it back, so the store is untouched;
- a replay (the installed generation's own manifest) is a no-op;
- an older generation (lower as-of sequence than the installed one) is refused unless forced
  with a reason, which the generation row keeps;
- a delta must name the installed generation (export id and manifest digest) as its base,
  unless it is a ``resetBaseline`` delta (a full replacement); forcing does not lift this;
- a bundle that fails is copied to ``<data dir>/quarantine/`` with its reason and report.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson

from export_center.bundle.manifest import ExportManifest
from export_center.bundle.verify import BundleReport
from export_center.distribution.source import OpenedBundle, open_source
from export_center.errors import (
    BadInputError,
    ConflictError,
    ExitCode,
    ExportCenterError,
    VerificationError,
)
from export_center.importer import generations
from export_center.importer.apply import ApplyStats, apply_delta, apply_full
from export_center.importer.generations import GenerationView
from export_center.importer.records import iter_bundle_records
from export_center.importer.verify import MirrorVerification, verify_mirror_bundle
from export_center.mirror.crypto import KeyMaterial
from export_center.mirror.layout import POLICY_PREFIXES
from export_center.signing.interface import PublicKey
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
WORK_DIR = "airgap/work"


class ImportRefused(ExportCenterError):
    """A bundle was refused; the store is untouched. ``exit_code`` says why (2 verification,
    3 not found, 4 bad input, 6 conflict with the installed generation)."""

    code = "ERR_EXPORT_IMPORT_REFUSED"

    def __init__(
        self,
        message: str,
        *,
        exit_code: ExitCode,
        report: BundleReport | None = None,
        quarantine: Path | None = None,
        hint: str | None = None,
    ) -> None:
        if quarantine is not None:
            hint = f"{hint + '; ' if hint else ''}bundle quarantined in {quarantine}"
        super().__init__(message, hint=hint)
        self.exit_code = exit_code  # per instance, not per class
        self.report = report
        self.quarantine = quarantine


@dataclass(frozen=True)
class ImportOptions:
    trust_roots: dict[str, PublicKey]
    tuf_root: bytes | None = None
    keys: KeyMaterial = field(default_factory=KeyMaterial)
    force: bool = False
    reason: str | None = None
    imported_by: str = "unknown"
    tenant: str | None = None  # when given, the bundle must be for this tenant
    # (username, password) for pulling oci:// references from a registry.
    registry_credentials: tuple[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.force and not (self.reason and self.reason.strip()):
            raise BadInputError(
                "--force needs --reason: forcing an older generation is recorded with why"
            )


@dataclass(frozen=True)
class ImportOutcome:
    status: Literal["imported", "replay"]
    tenant: str
    export_id: str
    generation: GenerationView
    report: BundleReport
    stats: ApplyStats | None = None


def _work(data_dir: Path) -> Path:
    base = data_dir / WORK_DIR
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="import-", dir=base))


def quarantine(
    data_dir: Path,
    opened: OpenedBundle,
    reason: str,
    report: BundleReport | None,
    now: datetime,
) -> Path:
    """Copy the refused bundle (as received) with ``reason.txt`` and ``report.json``."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(opened.label.rstrip("/")).name)[-80:] or "bundle"
    root = data_dir / QUARANTINE_DIR
    root.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{now:%Y%m%dT%H%M%SZ}-{label}-", dir=root))
    if opened.is_archive:
        for p in opened.path.parent.iterdir():
            shutil.copyfile(p, dest / p.name)
    elif opened.path.is_dir():
        shutil.copytree(opened.path, dest / "bundle", symlinks=True)
    (dest / "reason.txt").write_text(
        f"source: {opened.label}\nrefused: {now:%Y-%m-%dT%H:%M:%SZ}\nreason: {reason}\n",
        encoding="utf-8",
    )
    if report is not None:
        (dest / "report.json").write_bytes(
            orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2)
        )
    # Info, not a warning: the refusal itself says where the bundle went (ImportRefused's hint).
    log.info("bundle %s quarantined in %s: %s", opened.label, dest, reason)
    return dest


def verify_source(
    store: EvidenceStore | None,
    ref: str,
    data_dir: Path,
    options: ImportOptions,
    *,
    require_plaintext: bool,
    now: datetime,
    work: Path,
) -> tuple[OpenedBundle, MirrorVerification]:
    """Open and verify ``ref`` (a private copy under ``work``)."""
    opened = open_source(ref, work / "src", registry_credentials=options.registry_credentials)

    def installed_root(tenant: str) -> bytes | None:
        if store is None:
            return None
        gen = generations.installed(store, tenant)
        return gen.tuf_root.encode() if gen is not None else None

    mv = verify_mirror_bundle(
        opened.path,
        is_archive=opened.is_archive,
        trust_roots=options.trust_roots,
        work=work / "verify",
        now=now,
        tuf_root=options.tuf_root,
        installed_tuf_root=installed_root,
        keys=options.keys,
        require_plaintext=require_plaintext,
    )
    # The checks name the private copy; the user knows the bundle by the name they gave.
    private = str(opened.path)
    mv.report.checks[:] = [
        replace(c, detail=c.detail.replace(private, opened.label)) for c in mv.report.checks
    ]
    return opened, mv


def state_check(
    latest: GenerationView | None,
    manifest: ExportManifest,
    manifest_digest: str,
    *,
    force: bool,
) -> Literal["replay", "apply"]:
    """Decide what to do against the installed generation.

    Raises:
        ConflictError: older generation (not forced), or a delta whose base is not installed.
    """
    if latest is not None and latest.manifest_digest == manifest_digest:
        return "replay"
    seq = manifest.as_of.sequence
    if latest is not None and seq < latest.source_seq and not force:
        raise ConflictError(
            f"export {manifest.export_id} is as of sequence {seq}, older than the installed "
            f"generation {latest.generation} ({latest.export_id}, sequence {latest.source_seq})",
            hint="an older bundle is refused; --force --reason TEXT installs it anyway",
        )
    delta = manifest.delta
    if delta is not None and not delta.reset_baseline:
        base_id, base_digest = delta.base_export_id, delta.base_manifest_digest
        if latest is None:
            raise ConflictError(
                f"delta {manifest.export_id} applies on {base_id}, and nothing is installed",
                hint="import the base mirror:full first",
            )
        if latest.export_id != base_id or latest.manifest_digest != base_digest:
            raise ConflictError(
                f"delta {manifest.export_id} applies on {base_id} ({base_digest}), but the "
                f"installed generation {latest.generation} is {latest.export_id} "
                f"({latest.manifest_digest})",
                hint="import the missing bundles in order, or ask for a resetBaseline delta",
            )
    return "apply"


def _kind(manifest: ExportManifest) -> str:
    delta = manifest.delta
    if delta is None:
        return "full"
    return "reset" if delta.reset_baseline else "delta"


def import_bundle(
    store: EvidenceStore,
    ref: str,
    data_dir: Path,
    options: ImportOptions,
    *,
    now: datetime | None = None,
) -> ImportOutcome:
    """Verify ``ref`` and apply it to ``store`` as the tenant's next generation.

    Raises:
        ImportRefused: verification failed (2), missing key or wrong tenant (4), older
            generation or wrong delta base (6); the bundle is quarantined, the store untouched.
        NotFoundError: nothing at ``ref`` (3).
    """
    now = (now or datetime.now(UTC)).replace(microsecond=0)  # the clock, read once
    work = _work(data_dir)
    opened: OpenedBundle | None = None
    mv: MirrorVerification | None = None
    try:
        try:
            opened, mv = verify_source(
                store, ref, data_dir, options, require_plaintext=True, now=now, work=work
            )
        except VerificationError as e:
            # The OCI readers refuse a blob or manifest before there is a report.
            raise ImportRefused(e.message, exit_code=e.exit_code) from e
        if not mv.ok:
            failed = mv.report.failed
            reason = f"{failed.name}: {failed.detail}" if failed else "verification failed"
            q = quarantine(data_dir, opened, reason, mv.report, now)
            if mv.missing_key:
                raise ImportRefused(
                    reason,
                    exit_code=ExitCode.BAD_INPUT,
                    report=mv.report,
                    quarantine=q,
                    hint="pass --identity AGE_IDENTITY_FILE, or --kms with STELLA_PKCS11_* set",
                )
            raise ImportRefused(
                reason, exit_code=ExitCode.VERIFICATION_FAILED, report=mv.report, quarantine=q
            )
        return _apply(store, opened, mv, data_dir, options, now)
    except ImportRefused:
        raise
    except ExportCenterError as e:
        if opened is None:
            raise
        q = quarantine(data_dir, opened, e.message, mv.report if mv else None, now)
        raise ImportRefused(
            e.message,
            exit_code=e.exit_code,
            report=mv.report if mv else None,
            quarantine=q,
            hint=e.hint,
        ) from e
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _apply(
    store: EvidenceStore,
    opened: OpenedBundle,
    mv: MirrorVerification,
    data_dir: Path,
    options: ImportOptions,
    now: datetime,
) -> ImportOutcome:
    tenant = mv.tenant
    if options.tenant is not None and options.tenant != tenant:
        raise BadInputError(f"the bundle is for tenant {tenant!r}, not {options.tenant!r}")
    assert mv.manifest_digest is not None and mv.plain_root is not None and mv.tuf_root
    staged_policy = _stage_policy(mv, data_dir, tenant)
    try:
        outcome = _transaction(store, mv, options, now)
    except BaseException:
        if staged_policy is not None:
            shutil.rmtree(staged_policy, ignore_errors=True)
        raise
    if staged_policy is not None:
        if outcome.status == "imported":
            _install_policy(staged_policy, policy_dir(data_dir, tenant))
        else:
            shutil.rmtree(staged_policy, ignore_errors=True)
    return outcome


def policy_dir(data_dir: Path, tenant: str) -> Path:
    """Where the policy parts of the installed generation are kept."""
    return data_dir / "airgap" / "tenants" / tenant / "policy"


def _stage_policy(mv: MirrorVerification, data_dir: Path, tenant: str) -> Path | None:
    """Copy the bundle's (verified) policy parts next to their final place, before the commit."""
    assert mv.plain_root is not None
    parts = [p for p in mv.data_paths if p.startswith(POLICY_PREFIXES)]
    if not parts:
        return None
    final = policy_dir(data_dir, tenant)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".policy-", dir=final.parent))
    for path in parts:
        target = staged / path.removeprefix("data/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mv.plain_root / path, target)
    return staged


def _install_policy(staged: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.replace(old)
    staged.replace(final)
    shutil.rmtree(old, ignore_errors=True)


def _transaction(
    store: EvidenceStore,
    mv: MirrorVerification,
    options: ImportOptions,
    now: datetime,
) -> ImportOutcome:
    manifest = mv.manifest
    tenant = mv.tenant
    assert manifest is not None and mv.manifest_digest is not None
    assert mv.plain_root is not None and mv.tuf_root
    delta = manifest.delta
    with store.session() as session, session.begin():
        cursor = store.lock_tenant(session, tenant)
        latest = generations.latest(session, tenant)
        if state_check(latest, manifest, mv.manifest_digest, force=options.force) == "replay":
            assert latest is not None
            log.info("replay of generation %d (%s): nothing to do", latest.generation, tenant)
            return ImportOutcome("replay", tenant, latest.export_id, latest, mv.report)
        forced = latest is not None and manifest.as_of.sequence < latest.source_seq
        records = iter_bundle_records(mv.plain_root, tenant, mv.doc_types, mv.data_paths)
        conn = session.connection()
        if delta is not None and not delta.reset_baseline:
            stats, seq = apply_delta(store, conn, cursor, records, delta.removed, now)
        else:
            stats, seq = apply_full(store, conn, cursor, records, mv.doc_types, now)
        number = (latest.generation if latest else 0) + 1
        generations.record(
            session,
            tenant=tenant,
            generation=number,
            export_id=manifest.export_id,
            profile=manifest.profile.name,
            kind=_kind(manifest),
            manifest_digest=mv.manifest_digest,
            root_hash=mv.report.root_hash or "",
            rerun_hash=manifest.rerun_hash,
            source_seq=manifest.as_of.sequence,
            source_time=datetime.strptime(manifest.as_of.time, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=UTC
            ),
            base_export_id=delta.base_export_id if delta is not None else None,
            base_manifest_digest=delta.base_manifest_digest if delta is not None else None,
            store_seq=seq,
            added=stats.added,
            updated=stats.updated,
            removed=stats.removed,
            tuf_root=mv.tuf_root.decode("utf-8"),
            imported_by=options.imported_by[:128],
            imported_at=now,
            forced=forced,
            reason=options.reason if forced else None,
        )
        gen = generations.latest(session, tenant)
    assert gen is not None
    log.info(
        "imported %s as generation %d of %s: +%d ~%d -%d",
        gen.export_id,
        gen.generation,
        tenant,
        stats.added,
        stats.updated,
        stats.removed,
    )
    return ImportOutcome("imported", tenant, gen.export_id, gen, mv.report, stats)
