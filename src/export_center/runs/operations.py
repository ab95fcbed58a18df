"""Run operations shared by the REST API, the scheduler and the CLI: create, plan, cancel.

A run is planned when it is created: the profile revision and the store's as-of sequence are
pinned then, so every attempt (a retry, a takeover after a lost worker) exports exactly the same
content and produces the same bundle bytes. The job is enqueued only after the transaction that
created the run committed; a crash in between leaves a pending run without a job, which the
maintenance loop enqueues.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from export_center.exporter import runnable_profile
from export_center.planner.plan import ExportPlan, make_plan
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView
from export_center.runs.queue import JobQueue
from export_center.runs.quotas import QuotaStatus, check_and_reserve
from export_center.runs.repository import RunRepository, RunView
from export_center.settings import ServiceSettings
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanPreview:
    plan: ExportPlan
    estimated_bytes: int


class RunService:
    def __init__(
        self,
        *,
        store: EvidenceStore,
        repo: RunRepository,
        registry: ProfileRegistry,
        queue: Callable[[], JobQueue],
        service: ServiceSettings,
    ) -> None:
        self.store = store
        self.repo = repo
        self.registry = registry
        self._queue = queue
        self.service = service

    def _profile(self, tenant: str, name: str, revision: int | None) -> ProfileRevisionView:
        return runnable_profile(self.registry, tenant, name, revision)

    def preview(
        self, tenant: str, name: str, *, revision: int | None = None, as_of: int | None = None
    ) -> PlanPreview:
        """What a run would export now (a dry run: nothing is stored).

        Raises:
            NotFoundError: no such profile, revision or as-of sequence.
            ConflictError: the profile is archived.
            BadInputError: the profile cannot be exported.
        """
        profile = self._profile(tenant, name, revision)
        plan = make_plan(self.store, profile, as_of_seq=as_of)
        sources = set(plan.selectors.sources)
        estimated = sum(
            row.bytes
            for row in self.store.stats(tenant, as_of=plan.as_of_seq)
            if not sources or row.source in sources
        )
        return PlanPreview(plan, estimated)

    def create(
        self,
        tenant: str,
        name: str,
        *,
        revision: int | None = None,
        as_of: int | None = None,
        trigger: str = "api",
        requested_by: str | None = None,
        schedule_slot: str | None = None,
        now: datetime | None = None,
    ) -> tuple[RunView, QuotaStatus | None]:
        """Plan and queue a run.

        Raises:
            NotFoundError: no such profile, revision or as-of sequence.
            ConflictError: the profile is archived.
            BadInputError: the profile cannot be exported.
            QuotaError: a tenant quota is exhausted.
        """
        profile = self._profile(tenant, name, revision)
        plan = make_plan(self.store, profile, as_of_seq=as_of)
        self.repo.ensure_tenant(tenant)
        run_id = str(uuid.uuid4())
        with self.store.session() as s, s.begin():
            self.repo.lock_tenant(s, tenant)
            quota = check_and_reserve(
                s, tenant, self.service.quotas_for(tenant), now or self.repo.clock()
            )
            run = self.repo.create(
                s,
                run_id=run_id,
                tenant=tenant,
                profile=profile.name,
                revision=profile.revision,
                as_of_seq=plan.as_of_seq,
                export_id=plan.export_id,
                items_total=sum(plan.counts.values()),
                trigger=trigger,
                requested_by=requested_by,
                schedule_slot=schedule_slot,
            )
        try:
            self._queue().enqueue(run.id)
        except Exception:  # the run is stored: the maintenance loop will enqueue it
            log.exception("could not enqueue run %s; maintenance will retry", run.id)
        log.info("run %s queued for %s r%d as of %d", run.id, name, run.revision, plan.as_of_seq)
        return run, quota

    def cancel(self, tenant: str, run_id: str) -> RunView:
        """Cancel a pending run, or ask the worker to stop a running one.

        Raises:
            NotFoundError: no such run for this tenant.
            ConflictError: the run already finished.
        """
        run = self.repo.request_cancel(tenant, run_id)
        log.info("cancel requested for run %s (now %s)", run_id, run.status)
        return run
