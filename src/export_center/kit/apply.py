"""``stella kit import``: verify the whole kit first, then apply its bundles in the kit's order.

1. every part (:func:`~export_center.kit.verify.verify_part`), that they form one complete kit,
   the joined archive and every bundle in it (:func:`~export_center.kit.verify.verify_kit_archive`);
2. before anything is applied, each bundle's own import checks: mirror bundles through the
   importer's verification (TUF, records), Trivy bundles through the Trivy checks; a kit with
   Trivy databases needs a cache directory, one with carried bundles may name a directory to
   deliver them to;
3. then, in order, each bundle atomically: mirror bundles with
   :func:`~export_center.importer.service.import_bundle` (one transaction: a new generation,
   or a replay that changes nothing), Trivy databases with
   :func:`~export_center.importer.trivy_install.install_trivy_bundle` (files renamed into the
   cache), carried bundles (devportal, json) copied whole into the delivery directory.

A refusal stops the import: what was applied before stays (each bundle is whole), the report
says what was done and which bundle was refused, and nothing after it is touched.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from export_center.distribution.trivy import open_trivy_bundle
from export_center.errors import BadInputError, ExportCenterError, VerificationError
from export_center.importer import generations
from export_center.importer.service import ImportOptions, import_bundle, verify_source
from export_center.importer.trivy_install import install_trivy_bundle
from export_center.kit.manifest import KitBundle
from export_center.kit.verify import (
    VerifiedKit,
    VerifiedPart,
    check_parts,
    join_parts,
    verify_kit_archive,
    verify_part,
)
from export_center.signing.interface import PublicKey
from export_center.store.repository import EvidenceStore

__all__ = ["BundleOutcome", "KitImportError", "KitImportReport", "import_kit", "open_kit"]

log = logging.getLogger(__name__)

WORK_DIR = "airgap/kit-work"


@dataclass(frozen=True)
class BundleOutcome:
    """What happened to one bundle of the kit."""

    order: int
    profile: str
    tenant: str
    export_id: str
    action: str
    # imported | replay | already imported | installed | delivered | skipped | refused |
    # not reached
    status: str
    detail: str


@dataclass
class KitImportReport:
    kit_id: str
    outcomes: list[BundleOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status not in ("refused", "not reached") for o in self.outcomes)


class KitImportError(ExportCenterError):
    """A bundle of the kit was refused during import; ``report`` says what was done before."""

    code = "ERR_EXPORT_KIT_IMPORT"

    def __init__(self, message: str, report: KitImportReport, cause: ExportCenterError) -> None:
        super().__init__(message, hint=cause.hint)
        self.exit_code = cause.exit_code
        self.report = report


def open_kit(
    parts: Sequence[Path] | Sequence[VerifiedPart],
    trust_roots: Mapping[str, PublicKey],
    work: Path,
    *,
    expect_kit: str | None = None,
) -> VerifiedKit:
    """Verify ``parts`` (all the kit's part directories, or those parts already verified by
    :func:`verify_part`), join them in ``work`` and verify the kit and its bundles, extracted
    under ``work/kit``.

    Raises:
        VerificationError: a part, the kit or a bundle failed (the message names it).
    """
    verified = check_parts(
        [p if isinstance(p, VerifiedPart) else verify_part(p, trust_roots) for p in parts],
        expect_kit,
    )
    joined = work / "kit.tar"
    join_parts(verified, joined)
    root = work / "kit"
    root.mkdir()
    kit = verify_kit_archive(joined, trust_roots, root, expect=verified[0].manifest)
    joined.unlink()
    return kit


def _outcome(entry: KitBundle, status: str, detail: str) -> BundleOutcome:
    return BundleOutcome(
        entry.order, entry.profile, entry.tenant, entry.export_id, entry.action, status, detail
    )


def _preflight(
    kit: VerifiedKit,
    store: EvidenceStore,
    data_dir: Path,
    options: ImportOptions,
    trivy_cache: Path | None,
    now: datetime,
    work: Path,
) -> None:
    """Each bundle's own import checks, before anything is applied."""
    for entry, archive in kit.bundles:
        where = f"bundle {entry.order} ({archive.name})"
        if entry.action == "trivy-install":
            if trivy_cache is None:
                raise BadInputError(
                    f"{where} is a Trivy database: --trivy-cache-dir is needed to install it"
                )
            scratch = Path(tempfile.mkdtemp(prefix="trivy-", dir=work))
            try:
                open_trivy_bundle(archive, options.trust_roots, scratch, part="archive")
            except ExportCenterError as e:
                raise VerificationError("bundle", f"{where}: {e.message}") from e
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        elif entry.action == "mirror-import":
            scratch = Path(tempfile.mkdtemp(prefix="mirror-", dir=work))
            try:
                _, mv = verify_source(
                    store,
                    str(archive),
                    data_dir,
                    options,
                    require_plaintext=True,
                    now=now,
                    work=scratch,
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            failed = mv.report.failed
            if not mv.ok:
                reason = f"{failed.name}: {failed.detail}" if failed else "verification failed"
                raise VerificationError("bundle", f"{where}: {reason}")


def _deliver(entry: KitBundle, archive: Path, kit_root: Path, target_root: Path) -> Path:
    """Copy a carried bundle and its sidecars into ``target_root/<tenant>/`` (whole or not)."""
    target = target_root / entry.tenant
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".kit-", dir=target))
    try:
        names = [entry.archive.path, *(s.path for s in entry.sidecars)]
        for rel in names:
            shutil.copyfile(kit_root / rel, stage / Path(rel).name)
        # Sidecars first, the archive last: its appearance says the delivery is complete.
        for rel in [*names[1:], names[0]]:
            (stage / Path(rel).name).replace(target / Path(rel).name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target / archive.name


def import_kit(
    parts: Sequence[Path],
    trust_roots: Mapping[str, PublicKey],
    *,
    store: EvidenceStore,
    data_dir: Path,
    trivy_cache: Path | None = None,
    deliver_dir: Path | None = None,
    imported_by: str = "unknown",
    expect_kit: str | None = None,
    now: datetime | None = None,
) -> KitImportReport:
    """Verify the kit made of ``parts``, then import its bundles in order.

    Raises:
        VerificationError: the kit, a part or a bundle does not verify; nothing was applied.
        BadInputError: a Trivy database but no ``trivy_cache``; nothing was applied.
        KitImportError: a bundle was refused while importing; its ``report`` lists what was
            applied before (each bundle whole) and what was not reached.
    """
    now = (now or datetime.now(UTC)).replace(microsecond=0)  # the clock, read once
    base = data_dir / WORK_DIR
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kit-", dir=base))
    options = ImportOptions(trust_roots=dict(trust_roots), imported_by=imported_by)
    try:
        kit = open_kit(parts, trust_roots, work, expect_kit=expect_kit)
        _preflight(kit, store, data_dir, options, trivy_cache, now, work)
        report = KitImportReport(kit.kit_id)
        for i, (entry, archive) in enumerate(kit.bundles):
            try:
                report.outcomes.append(
                    _apply(entry, archive, kit, store, data_dir, options, trivy_cache, deliver_dir)
                )
            except ExportCenterError as e:
                report.outcomes.append(_outcome(entry, "refused", e.message))
                report.outcomes.extend(
                    _outcome(rest, "not reached", "an earlier bundle was refused")
                    for rest, _ in kit.bundles[i + 1 :]
                )
                raise KitImportError(
                    f"kit {kit.kit_id}: bundle {entry.order} ({archive.name}) refused: {e.message}",
                    report,
                    e,
                ) from e
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _apply(
    entry: KitBundle,
    archive: Path,
    kit: VerifiedKit,
    store: EvidenceStore,
    data_dir: Path,
    options: ImportOptions,
    trivy_cache: Path | None,
    deliver_dir: Path | None,
) -> BundleOutcome:
    if entry.action == "mirror-import":
        # A kit imported again (after an interruption, or twice): a bundle already in the
        # tenant's history is done; the importer would call an older one a downgrade.
        for gen in generations.history(store, entry.tenant):
            if gen.manifest_digest == entry.manifest_digest:
                return _outcome(
                    entry, "already imported", f"generation {gen.generation} of {entry.tenant}"
                )
        done = import_bundle(store, str(archive), data_dir, options)
        gen = done.generation
        detail = f"generation {gen.generation} of {done.tenant}"
        if done.stats is not None:
            detail += f": +{done.stats.added} ~{done.stats.updated} -{done.stats.removed}"
        log.info("kit %s: bundle %d %s", kit.kit_id, entry.order, done.status)
        return _outcome(entry, done.status, detail)
    if entry.action == "trivy-install":
        assert trivy_cache is not None  # checked before anything was applied
        result = install_trivy_bundle(archive, trivy_cache, options.trust_roots)
        db = result.installed
        return _outcome(
            entry, "installed", f"{db.directory} (UpdatedAt {db.metadata.get('UpdatedAt')})"
        )
    if deliver_dir is None:
        return _outcome(entry, "skipped", "verified; no --deliver-dir to copy it to")
    path = _deliver(entry, archive, kit.root, deliver_dir)
    return _outcome(entry, "delivered", str(path))
