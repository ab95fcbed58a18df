"""The maintenance loop: recover runs of lost workers, expire old artifacts, fire schedules.

Every worker process (and ``stella serve``) runs it; on PostgreSQL an advisory lock lets one
pass run at a time across the cluster, on SQLite a process-local lock does (a schedule slot is
also unique in the database, so two schedulers can never fire it twice).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from export_center.errors import ExportCenterError, QuotaError
from export_center.planner.profiles import parse_profile_spec
from export_center.runs.artifacts import ArtifactStore
from export_center.runs.clock import aware
from export_center.runs.operations import RunService
from export_center.runs.queue import JobQueue
from export_center.runs.repository import WORKER_LOST, RunRepository
from export_center.runs.schedules import owed_slot
from export_center.runtime.metrics import Metrics
from export_center.settings import ServiceSettings
from export_center.store.models import IdempotencyRecord, Profile, ProfileRevision
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)

# pg_advisory_lock key: "stella maintenance" in ASCII, folded into a signed 64-bit integer.
_LOCK_KEY = int.from_bytes(b"stellamt", "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class SweepReport:
    skipped: bool = False
    settled: list[tuple[str, str]] = field(default_factory=list)
    stalled_jobs: int = 0
    enqueued: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    idempotency_purged: int = 0


@dataclass(frozen=True)
class _ProfilePolicy:
    tenant: str
    name: str
    archived: bool
    revision_created: datetime
    schedule: str | None
    retention_days: int | None
    retention_count: int | None


class Maintenance:
    def __init__(
        self,
        *,
        store: EvidenceStore,
        repo: RunRepository,
        runs: RunService,
        artifacts: ArtifactStore,
        queue: Callable[[], JobQueue],
        service: ServiceSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.repo = repo
        self.runs = runs
        self.artifacts = artifacts
        self._queue = queue
        self.service = service
        self._local = threading.Lock()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        if not self._local.acquire(blocking=False):
            yield False
            return
        try:
            if self.store.engine.dialect.name != "postgresql":
                yield True
                return
            with self.store.engine.connect() as conn:
                got = bool(conn.execute(select(func.pg_try_advisory_lock(_LOCK_KEY))).scalar())
                try:
                    yield got
                finally:
                    if got:
                        conn.execute(select(func.pg_advisory_unlock(_LOCK_KEY)))
                    conn.commit()
        finally:
            self._local.release()

    def sweep(self) -> SweepReport:
        report = SweepReport()
        with self._exclusive() as mine:
            if not mine:
                report.skipped = True
                return report
            self._recover(report)
            self._retention(report)
            self._schedules(report)
            report.idempotency_purged = self._purge_idempotency()
        return report

    # ---- recovery ------------------------------------------------------------------------

    def _recover(self, report: SweepReport) -> None:
        queue = self._queue()
        report.settled = self.repo.settle_lapsed(max_attempts=self.service.max_attempts)
        for run_id, status in report.settled:
            run = self.repo.find(run_id)
            if run is not None:
                self.artifacts.delete_run(run.tenant, run.id)
                self._count_settled(run.profile, run.tenant, status)
            log.warning("run %s of a lost worker settled as %s", run_id, status)
        report.stalled_jobs = queue.recover_stalled(self.service.lease_seconds)
        due = self.repo.due(limit=500)
        if not due:
            return
        active = queue.active_run_ids()
        for run_id in due:
            if active is None or run_id not in active:
                queue.enqueue(run_id)
                if active is not None:
                    report.enqueued.append(run_id)
        if report.enqueued:
            log.info("re-enqueued %d due runs without a job", len(report.enqueued))

    def _count_settled(self, profile: str, tenant: str, status: str) -> None:
        # The worker that would have counted this outcome is gone; without this, runs that
        # ran out of attempts on dying workers would never show in export_runs_total.
        if self.metrics is None:
            return
        self.metrics.profile_seen(profile, tenant)
        self.metrics.runs_total.labels(profile, tenant, status).inc()
        if status == "failed":
            self.metrics.failures_total.labels(WORKER_LOST).inc()

    # ---- profiles: retention and schedules ------------------------------------------------

    def _policies(self) -> list[_ProfilePolicy]:
        latest = (
            select(ProfileRevision.profile_id, func.max(ProfileRevision.revision).label("rev"))
            .group_by(ProfileRevision.profile_id)
            .subquery()
        )
        stmt = (
            select(Profile, ProfileRevision)
            .join(latest, latest.c.profile_id == Profile.id)
            .join(
                ProfileRevision,
                (ProfileRevision.profile_id == Profile.id)
                & (ProfileRevision.revision == latest.c.rev),
            )
            .order_by(Profile.tenant, Profile.name)
        )
        out: list[_ProfilePolicy] = []
        with self.store.session() as s:
            for prof, rev in s.execute(stmt):
                try:
                    spec = parse_profile_spec(orjson.loads(rev.spec), f"profile {prof.name}")
                except ExportCenterError as e:
                    log.error("skipping profile %s/%s: %s", prof.tenant, prof.name, e)
                    continue
                out.append(
                    _ProfilePolicy(
                        tenant=prof.tenant,
                        name=prof.name,
                        archived=prof.archived,
                        revision_created=aware(rev.created_at) or rev.created_at,
                        schedule=spec.schedule,
                        retention_days=spec.retention.days,
                        retention_count=spec.retention.count,
                    )
                )
        return out

    def _retention(self, report: SweepReport) -> None:
        now = self.repo.clock()
        for p in self._policies():
            if p.retention_days is None and p.retention_count is None:
                continue
            cutoff = now - timedelta(days=p.retention_days) if p.retention_days else None
            for i, run in enumerate(self.repo.succeeded_runs(p.tenant, p.name)):
                reason = None
                if p.retention_count is not None and i >= p.retention_count:
                    reason = f"retention keeps the newest {p.retention_count} bundles"
                elif cutoff is not None and run.finished_at and run.finished_at < cutoff:
                    reason = f"retention keeps bundles {p.retention_days} days"
                if reason and self.repo.expire(run.id, reason):
                    self.artifacts.delete_run(run.tenant, run.id)
                    report.expired.append(run.id)
                    log.info("run %s expired: %s", run.id, reason)

    def _schedules(self, report: SweepReport) -> None:
        now = self.repo.clock()
        for p in self._policies():
            if not p.schedule or p.archived:
                continue
            try:
                slot = owed_slot(p.schedule, now, since=p.revision_created)
            except ValueError as e:
                log.error("profile %s/%s: %s", p.tenant, p.name, e)
                continue
            if slot is None or self.repo.schedule_slot_taken(p.tenant, p.name, slot):
                continue
            try:
                run, _ = self.runs.create(
                    p.tenant,
                    p.name,
                    trigger="schedule",
                    requested_by="schedule",
                    schedule_slot=slot,
                    now=now,
                )
            except IntegrityError:
                continue  # another scheduler fired this slot first
            except QuotaError as e:
                log.warning("schedule slot %s of %s/%s skipped: %s", slot, p.tenant, p.name, e)
                continue
            except ExportCenterError as e:
                log.error("schedule slot %s of %s/%s failed: %s", slot, p.tenant, p.name, e)
                continue
            report.scheduled.append(run.id)
            log.info("schedule %r fired run %s for %s/%s", p.schedule, run.id, p.tenant, p.name)

    def _purge_idempotency(self) -> int:
        cutoff = self.repo.clock() - timedelta(hours=self.service.idempotency_ttl_hours)
        with self.store.session() as s, s.begin():
            result = s.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    # ---- the loop ------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.service.sweep_seconds):
            try:
                self.sweep()
            except Exception:  # one bad pass must not end maintenance
                log.exception("maintenance pass failed")
