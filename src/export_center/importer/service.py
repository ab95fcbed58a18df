"""``stella airgap import`` / ``verify-bundle``: verify a mirror bundle, then apply it in one
transaction as the tenant's next generation.

Rules (docs/mirror.md, "Import"):
- everything is verified first (:mod:`.verify`); nothing touches the store before that passed;
- one database transaction applies the records and records the generation: any failure rolls
  all of it back, so the store is untouched;
- generations are per (tenant, mirror stream) (:mod:`.generations`): a full bundle belongs to
  the stream of its profile, a delta to the stream whose installed generation is its base;
- a replay (the stream's installed generation's own manifest) is a no-op;
- an older generation (lower as-of sequence than the stream's installed one) is refused unless
  forced with a reason, which the generation row keeps;
- a delta must name the stream's installed generation as its base, by export id, manifest
  digest *and* as-of sequence, unless it is a ``resetBaseline`` delta (a full replacement);
  forcing does not lift this: a delta computed from another sequence would silently miss the
  changes in between;
- a full bundle replaces its own stream's documents only; one that carries a document of
  another stream is refused unless the operator names that stream with ``--replace-stream``
  (and a reason, recorded): the other stream is then retired and its documents are this one's;
- a bundle that fails is copied to ``<data dir>/quarantine/`` with its reason and report,
  within the quarantine caps (:mod:`.quarantine`).
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

from sqlalchemy.orm import Session

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
from export_center.importer.apply import ApplyStats, Stream, apply_delta, apply_full
from export_center.importer.generations import GenerationView
from export_center.importer.quarantine import Quarantined, QuarantineLimits, quarantine
from export_center.importer.records import iter_bundle_records
from export_center.importer.verify import MirrorVerification, verify_mirror_bundle
from export_center.mirror.crypto import KeyMaterial
from export_center.mirror.layout import POLICY_PREFIXES
from export_center.signing.interface import PublicKey
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)

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
        quarantined: Quarantined | None = None,
        hint: str | None = None,
    ) -> None:
        notes = [hint] if hint else []
        if quarantined is not None:
            if quarantined.path is not None:
                notes.append(f"refusal recorded in {quarantined.path}")
            if quarantined.note:
                notes.append(quarantined.note)
        super().__init__(message, hint="; ".join(notes) or None)
        self.exit_code = exit_code  # per instance, not per class
        self.report = report
        self.quarantine = quarantined.path if quarantined is not None else None
        self.quarantined = quarantined


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
    # The installed stream a full bundle of another stream may take over (operator's decision).
    replace_stream: str | None = None
    quarantine: QuarantineLimits = field(default_factory=QuarantineLimits)

    def __post_init__(self) -> None:
        if self.force and not (self.reason and self.reason.strip()):
            raise BadInputError(
                "--force needs --reason: forcing an older generation is recorded with why"
            )
        if self.replace_stream is not None and not (self.reason and self.reason.strip()):
            raise BadInputError(
                "--replace-stream needs --reason: replacing a stream is recorded with why"
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
        # TUF roots are the exporting tenant's, shared by its streams: the newest one installed.
        if store is None:
            return None
        with store.session() as s:
            gen = generations.newest(s, tenant)
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
        tenant=options.tenant,
    )
    # The checks name the private copy; the user knows the bundle by the name they gave.
    private = str(opened.path)
    mv.report.checks[:] = [
        replace(c, detail=c.detail.replace(private, opened.label)) for c in mv.report.checks
    ]
    return opened, mv


_STREAM = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")


def _stream_name(name: str) -> str:
    if not _STREAM.match(name):
        raise BadInputError(f"mirror profile name {name!r} cannot name a stream")
    return name


def resolve_stream(
    session: Session, tenant: str, manifest: ExportManifest
) -> tuple[str, GenerationView | None]:
    """The stream ``manifest`` starts or continues, and that stream's installed generation.

    A full bundle (or a ``resetBaseline`` delta whose base was never imported) belongs to the
    stream of its profile; a delta to the stream whose installed generation is its base, else
    to the stream that imported its base earlier (so that the refusal names what is installed).

    Raises:
        ConflictError: a delta whose base no stream of the tenant knows, while several are
            installed; a delta of a stream that was replaced.
        BadInputError: a profile name that cannot name a stream.
    """
    delta = manifest.delta
    live = generations.active(session, tenant)
    if delta is not None and delta.base_export_id is not None:
        for g in live:
            if (g.export_id, g.manifest_digest) == (
                delta.base_export_id,
                delta.base_manifest_digest,
            ):
                return g.stream, g
        seen = generations.by_export(session, tenant, delta.base_export_id)
        if seen:
            stream = seen[0].stream
            if not delta.reset_baseline and stream not in {g.stream for g in live}:
                raise ConflictError(
                    f"delta {manifest.export_id} continues mirror stream {stream!r} of tenant "
                    f"{tenant}, which a later import replaced",
                    hint="import a full bundle of the stream that replaced it",
                )
            return stream, generations.latest(session, tenant, stream)
        if not delta.reset_baseline:
            if len(live) == 1:
                return live[0].stream, live[0]
            if len(live) > 1:
                names = ", ".join(f"{g.stream} (generation {g.generation})" for g in live)
                raise ConflictError(
                    f"delta {manifest.export_id} applies on {delta.base_export_id}, which no "
                    f"installed stream of tenant {tenant} has: {names}",
                    hint="import the missing bundles in order, or ask for a resetBaseline delta",
                )
    stream = _stream_name(manifest.profile.name)
    return stream, generations.latest(session, tenant, stream)


def state_check(
    latest: GenerationView | None,
    manifest: ExportManifest,
    manifest_digest: str,
    *,
    force: bool,
) -> Literal["replay", "apply"]:
    """Decide what to do against the stream's installed generation ``latest``.

    Raises:
        ConflictError: older generation (not forced), or a delta whose base (export id, manifest
            digest and as-of sequence) is not the installed generation.
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
        if delta.base_sequence != latest.source_seq:
            # Same base bundle, another sequence: the delta holds the changes after
            # base_sequence, so everything between the two would be lost without a trace.
            raise ConflictError(
                f"delta {manifest.export_id} says its base {base_id} is as of sequence "
                f"{delta.base_sequence}, but the installed generation {latest.generation} "
                f"({latest.export_id}) is as of sequence {latest.source_seq}: the changes in "
                "between would be lost",
                hint="the delta was computed from a wrong base; ask for a new delta or a "
                "resetBaseline one",
            )
    return "apply"


def import_state(
    store: EvidenceStore, tenant: str, manifest: ExportManifest, manifest_digest: str
) -> tuple[Literal["replay", "apply"], str, GenerationView | None]:
    """What an import would do now (``verify-bundle``): replay or apply, to which stream, on
    top of which installed generation. Another stream's documents are only found while
    applying.

    Raises:
        ConflictError, BadInputError: as :func:`resolve_stream` and :func:`state_check`.
    """
    with store.session() as session:
        stream, latest = resolve_stream(session, tenant, manifest)
    return state_check(latest, manifest, manifest_digest, force=False), stream, latest


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
            q = quarantine(data_dir, opened, reason, mv.report, now, options.quarantine)
            if mv.missing_key:
                raise ImportRefused(
                    reason,
                    exit_code=ExitCode.BAD_INPUT,
                    report=mv.report,
                    quarantined=q,
                    hint="pass --identity AGE_IDENTITY_FILE, or --kms with STELLA_PKCS11_* set",
                )
            raise ImportRefused(
                reason, exit_code=ExitCode.VERIFICATION_FAILED, report=mv.report, quarantined=q
            )
        return _apply(store, opened, mv, data_dir, options, now)
    except ImportRefused:
        raise
    except ExportCenterError as e:
        if opened is None:
            raise
        q = quarantine(
            data_dir, opened, e.message, mv.report if mv else None, now, options.quarantine
        )
        raise ImportRefused(
            e.message,
            exit_code=e.exit_code,
            report=mv.report if mv else None,
            quarantined=q,
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
            _install_policy(staged_policy, policy_dir(data_dir, tenant, outcome.generation.stream))
        else:
            shutil.rmtree(staged_policy, ignore_errors=True)
    return outcome


def policy_dir(data_dir: Path, tenant: str, stream: str) -> Path:
    """Where the policy parts of a stream's installed generation are kept."""
    return data_dir / "airgap" / "tenants" / tenant / "streams" / stream / "policy"


def _stage_policy(mv: MirrorVerification, data_dir: Path, tenant: str) -> Path | None:
    """Copy the bundle's (verified) policy parts next to their final place, before the commit."""
    assert mv.plain_root is not None
    parts = [p for p in mv.data_paths if p.startswith(POLICY_PREFIXES)]
    if not parts:
        return None
    # Staged in the tenant's directory (the stream is known once the import's transaction
    # decided it); the same file system as the final place, so the install is a rename.
    parent = data_dir / "airgap" / "tenants" / tenant
    parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".policy-", dir=parent))
    for path in parts:
        target = staged / path.removeprefix("data/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mv.plain_root / path, target)
    return staged


def _install_policy(staged: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
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
        stream, latest = resolve_stream(session, tenant, manifest)
        if state_check(latest, manifest, mv.manifest_digest, force=options.force) == "replay":
            assert latest is not None
            log.info(
                "replay of generation %d of %s/%s: nothing to do",
                latest.generation,
                tenant,
                stream,
            )
            return ImportOutcome("replay", tenant, latest.export_id, latest, mv.report)
        takes = _replacement(session, tenant, stream, manifest, options)
        forced = latest is not None and manifest.as_of.sequence < latest.source_seq
        records = iter_bundle_records(mv.plain_root, tenant, mv.doc_types, mv.data_paths)
        conn = session.connection()
        target = Stream(stream, takes)
        if delta is not None and not delta.reset_baseline:
            stats, seq = apply_delta(store, conn, cursor, records, delta.removed, now, target)
        else:
            stats, seq = apply_full(store, conn, cursor, records, mv.doc_types, now, target)
        number = (latest.generation if latest else 0) + 1
        generations.record(
            session,
            tenant=tenant,
            stream=stream,
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
            base_seq=delta.base_sequence if delta is not None else None,
            replaced_stream=options.replace_stream if takes else None,
            store_seq=seq,
            added=stats.added,
            updated=stats.updated,
            removed=stats.removed,
            tuf_root=mv.tuf_root.decode("utf-8"),
            imported_by=options.imported_by[:128],
            imported_at=now,
            forced=forced,
            reason=options.reason if forced or takes else None,
        )
        gen = generations.latest(session, tenant, stream)
    assert gen is not None
    log.info(
        "imported %s as generation %d of %s/%s: +%d ~%d -%d",
        gen.export_id,
        gen.generation,
        tenant,
        gen.stream,
        stats.added,
        stats.updated,
        stats.removed,
    )
    return ImportOutcome("imported", tenant, gen.export_id, gen, mv.report, stats)


def _replacement(
    session: Session,
    tenant: str,
    stream: str,
    manifest: ExportManifest,
    options: ImportOptions,
) -> frozenset[str]:
    """The streams this import may take over: ``--replace-stream``, checked.

    Raises:
        BadInputError: not a full (or reset) bundle, the bundle's own stream, or no such
            installed stream.
    """
    old = options.replace_stream
    if old is None:
        return frozenset()
    delta = manifest.delta
    if delta is not None and not delta.reset_baseline:
        raise BadInputError(
            f"--replace-stream {old}: only a full bundle replaces a stream; "
            f"{manifest.export_id} is a delta"
        )
    if old == stream:
        raise BadInputError(
            f"--replace-stream {old}: that is this bundle's own stream; a full bundle replaces "
            "its own stream without it"
        )
    live = [g.stream for g in generations.active(session, tenant)]
    if old not in live:
        raise BadInputError(
            f"--replace-stream {old}: tenant {tenant} has no installed stream of that name "
            f"(installed: {', '.join(live) or 'none'})"
        )
    return frozenset({old})
