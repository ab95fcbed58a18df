"""Execute one run: claim its lease, heartbeat, export, publish, record the outcome.

Whatever queue delivered the job (procrastinate on PostgreSQL, the in-process poller on SQLite),
this is the code that runs it, so both behave the same:

- the claim is a lease on the run row (:mod:`export_center.runs.repository`); a heartbeat thread
  renews it; a worker that loses it stops and writes nothing;
- the bundle writer's ``is_cancelled`` polls the run's cancel flag every
  ``cancel_poll_seconds``, so a cancel stops the export within about that long (plus the time to
  the adapter's next check) and the writer publishes nothing;
- transient failures go back to ``pending`` with exponential back-off until ``max_attempts``;
  other failures are final.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from export_center.errors import CancelledError, ExportCenterError
from export_center.exporter import ExportOutcome, record_outcome, run_export
from export_center.planner.plan import ExportPlan
from export_center.planner.registry import ProfileRegistry
from export_center.runs.artifacts import ArtifactStore
from export_center.runs.repository import Artifact, Claim, RunRepository
from export_center.runtime.logs import bind
from export_center.runtime.metrics import Metrics
from export_center.settings import ServiceSettings, Settings
from export_center.store.repository import EvidenceStore
from export_center.worker.retry import backoff_seconds, classify

log = logging.getLogger(__name__)

Outcome = Literal["skipped", "succeeded", "failed", "cancelled", "retrying", "released", "lost"]


class ExportFunction(Protocol):
    """:func:`export_center.exporter.run_export`'s shape (tests wrap it)."""

    def __call__(
        self,
        settings: Settings,
        store: EvidenceStore,
        profile: Any,
        out_dir: Path,
        *,
        as_of_seq: int | None = ...,
        progress: Callable[[int], None] = ...,
        is_cancelled: Callable[[], bool] = ...,
        on_plan: Callable[[ExportPlan], None] = ...,
        record: bool = ...,
    ) -> ExportOutcome: ...


class Enqueue(Protocol):
    def __call__(self, run_id: str, *, not_before: Any = None) -> None: ...


def worker_identity() -> str:
    """``host:pid:random``: unique per process start, readable in the runs table."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Attempt:
    """The mutable state of one attempt, shared by the export thread and the heartbeat."""

    executor: RunExecutor
    claim: Claim
    done: int = 0
    total: int = 0
    last_flush: float = 0.0
    last_poll: float = 0.0

    def __post_init__(self) -> None:
        self.total = self.claim.run.items_total
        self.stop = threading.Event()  # cancel requested or lease lost
        self.lost = threading.Event()

    @property
    def run_id(self) -> str:
        return self.claim.run.id

    def on_plan(self, plan: ExportPlan) -> None:
        self.total = sum(plan.counts.values())

    def is_cancelled(self) -> bool:
        ex = self.executor
        if self.stop.is_set() or ex.aborting.is_set():
            return True
        now = time.monotonic()
        if now - self.last_poll >= ex.service.cancel_poll_seconds:
            self.last_poll = now
            if ex.repo.should_stop(self.run_id, ex.owner):
                self.stop.set()
                return True
        return False

    def progress(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last_flush < self.executor.progress_seconds:
            return
        self.last_flush = now
        ok = self.executor.repo.progress(
            self.run_id, self.executor.owner, self.done, max(self.total, self.done), event=True
        )
        if not ok:
            self.lost.set()
            self.stop.set()


class _Heartbeat:
    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt
        self._halt = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-{attempt.run_id[:8]}", daemon=True
        )
        self._context = {
            "run_id": attempt.claim.run.id,
            "tenant": attempt.claim.run.tenant,
            "profile": attempt.claim.run.profile,
        }

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        ex = self._attempt.executor
        with bind(**self._context):
            while not self._halt.wait(ex.service.heartbeat_seconds):
                try:
                    ok = ex.repo.heartbeat(
                        self._attempt.run_id, ex.owner, lease_seconds=ex.service.lease_seconds
                    )
                except Exception:  # the database may come back before the lease lapses
                    log.warning("heartbeat failed; retrying", exc_info=True)
                    continue
                if not ok:
                    log.warning("lease lost: another worker took the run over; stopping")
                    self._attempt.lost.set()
                    self._attempt.stop.set()
                    return


class RunExecutor:
    """Runs claimed exports. One per worker process; thread-safe (one attempt per thread)."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: ServiceSettings,
        store: EvidenceStore,
        repo: RunRepository,
        artifacts: ArtifactStore,
        metrics: Metrics,
        owner: str | None = None,
        enqueue: Enqueue | None = None,
        export: ExportFunction | None = None,
        progress_seconds: float = 1.0,
    ) -> None:
        self.settings = settings
        self.service = service
        self.store = store
        self.repo = repo
        self.artifacts = artifacts
        self.metrics = metrics
        self.owner = owner or worker_identity()
        self.enqueue = enqueue
        self.export: ExportFunction = export or run_export
        self.progress_seconds = progress_seconds
        # Set on a hard shutdown: running attempts stop and give their runs back.
        self.aborting = threading.Event()

    def execute(self, run_id: str) -> Outcome:
        """Claim and run ``run_id``; "skipped" when it is not ours to run (now)."""
        if self.aborting.is_set():
            return "skipped"
        claim = self.repo.claim(run_id, self.owner, lease_seconds=self.service.lease_seconds)
        if claim is None:
            return "skipped"
        run = claim.run
        with bind(run_id=run.id, tenant=run.tenant, profile=run.profile):
            return self._attempt(claim)

    def _attempt(self, claim: Claim) -> Outcome:
        run = claim.run
        log.info(
            "run claimed (attempt %d%s) by %s",
            claim.attempt,
            ", takeover" if claim.takeover else "",
            self.owner,
        )
        if claim.takeover:
            self.metrics.takeovers.inc()
            self.metrics.retries_total.labels("worker_lost").inc()
        self.metrics.profile_seen(run.profile, run.tenant)
        attempt = _Attempt(self, claim)
        started = time.monotonic()
        self.metrics.worker_active.inc()
        try:
            with _Heartbeat(attempt):
                profile = ProfileRegistry(self.store).get(run.tenant, run.profile, run.revision)
                out_dir = self.artifacts.run_dir(run.tenant, run.id)
                if self.artifacts.clean_staging(run.tenant, run.id):
                    log.info("removed the staging left by an earlier attempt")
                outcome = self.export(
                    self.settings,
                    self.store,
                    profile,
                    out_dir,
                    as_of_seq=run.as_of_seq,
                    progress=attempt.progress,
                    is_cancelled=attempt.is_cancelled,
                    on_plan=attempt.on_plan,
                    # Into the ledger of published exports once the run has succeeded (below):
                    # a bundle removed by a cancel must never become a delta's base.
                    record=False,
                )
        except CancelledError:
            return self._stopped(attempt, started)
        except Exception as e:
            if attempt.lost.is_set():
                log.warning("attempt ended after the lease was lost: %s", e)
                return "lost"
            return self._failed(attempt, e, started)
        else:
            return self._published(attempt, outcome, started)
        finally:
            self.metrics.worker_active.dec()

    def _stopped(self, attempt: _Attempt, started: float) -> Outcome:
        run = attempt.claim.run
        if attempt.lost.is_set():
            log.warning("stopped: the lease was lost; nothing written")
            return "lost"
        if self.aborting.is_set() and not self.repo.should_stop(run.id, self.owner):
            if self.repo.release(run.id, self.owner):
                self.metrics.retries_total.labels("released").inc()
            log.warning("worker shutting down: run released for another worker")
            return "released"
        if not self.repo.finish(run.id, self.owner, "cancelled"):
            return "lost"
        self.artifacts.delete_run(run.tenant, run.id)
        self._count(run.profile, run.tenant, "cancelled", started)
        log.info("run cancelled; nothing published")
        return "cancelled"

    def _failed(self, attempt: _Attempt, exc: Exception, started: float) -> Outcome:
        run = attempt.claim.run
        transient, code = classify(exc)
        message = str(exc)[:2000] or type(exc).__name__
        self.metrics.failures_total.labels(code).inc()
        if transient and attempt.claim.attempt < self.service.max_attempts:
            delay = backoff_seconds(
                run.id,
                attempt.claim.attempt,
                base=self.service.retry_base_seconds,
                cap=self.service.retry_max_seconds,
            )
            at = self.repo.clock() + timedelta(seconds=delay)
            if self.repo.retry_later(run.id, self.owner, at=at, code=code, message=message):
                self.metrics.retries_total.labels(code).inc()
                log.warning("transient failure (%s: %s); retry in %.1f s", code, message, delay)
                if self.enqueue is not None:
                    self.enqueue(run.id, not_before=at)
                return "retrying"
            return "lost"
        if code == "ERR_EXPORT_INTERNAL":
            log.error("run failed unexpectedly", exc_info=exc)
        else:
            log.warning("run failed: %s: %s", code, message)
        # The hint (what to do about it) is kept apart from the message, for the API and console.
        hint = exc.hint if isinstance(exc, ExportCenterError) else None
        if not self.repo.finish(
            run.id, self.owner, "failed", code=code, message=message, hint=hint
        ):
            return "lost"
        self.artifacts.delete_run(run.tenant, run.id)
        self._count(run.profile, run.tenant, "failed", started)
        return "failed"

    def _published(self, attempt: _Attempt, outcome: ExportOutcome, started: float) -> Outcome:
        run = attempt.claim.run
        b = outcome.bundle
        total = max(attempt.total, attempt.done)
        artifact = Artifact(
            export_id=b.export_id,
            path=self.artifacts.relative(b.archive_path),
            sha256=b.archive_sha256,
            size=b.archive_bytes,
            root_hash=b.root_hash,
            items_total=total,
        )
        status = self.repo.succeed(run.id, self.owner, artifact)
        if status is None:
            # Our successor publishes into the same run directory the same bytes: leave them.
            log.warning("published, but the lease was lost meanwhile; the new holder records it")
            return "lost"
        if status == "cancelled":
            self.artifacts.delete_run(run.tenant, run.id)
            self._count(run.profile, run.tenant, "cancelled", started)
            log.info("cancel arrived during publication; the bundle was removed")
            return "cancelled"
        record_outcome(self.store, outcome)
        self.metrics.bytes_total.labels(run.profile, run.tenant).inc(b.archive_bytes)
        self._count(run.profile, run.tenant, "succeeded", started)
        log.info(
            "run succeeded: %s (%d bytes, sha256 %s)",
            artifact.path,
            b.archive_bytes,
            b.archive_sha256,
        )
        if self.service.oci_repository:
            self._push(run.id, b.archive_path, b.export_id, self.service.oci_repository)
        return "succeeded"

    def _push(self, run_id: str, archive: Path, export_id: str, repository: str) -> None:
        """Distribute the published bundle to the OCI registry as well.

        Only after the run succeeded (so a cancelled run never reaches the registry); the
        filesystem copy stays the run's artifact, so a registry outage is reported as an
        ``artifact_push_failed`` event and a metric, not a failed export.
        """
        from export_center.distribution.push import push_bundle

        ref = f"{repository.rstrip('/')}:{export_id}"
        try:
            with tempfile.TemporaryDirectory(prefix=".oci-push-", dir=archive.parent) as work:
                pushed = push_bundle(
                    archive, ref, Path(work), credentials=self.settings.registry_credentials
                )
        except (ExportCenterError, OSError, httpx.HTTPError) as e:  # RegistryError included
            log.error("pushing %s to %s failed: %s", archive.name, ref, e)
            self.metrics.failures_total.labels("ERR_EXPORT_OCI_PUSH").inc()
            self.metrics.pushes_total.labels("failed").inc()
            self.repo.add_event(run_id, "artifact_push_failed", {"ref": ref, "error": str(e)})
            return
        self.metrics.pushes_total.labels("pushed").inc()
        log.info("pushed %s to %s (%s)", archive.name, ref, pushed.manifest_digest)
        self.repo.add_event(
            run_id, "artifact_pushed", {"ref": ref, "digest": pushed.manifest_digest}
        )

    def _count(self, profile: str, tenant: str, status: str, started: float) -> None:
        self.metrics.runs_total.labels(profile, tenant, status).inc()
        self.metrics.run_duration.labels(profile, tenant, status).observe(
            time.monotonic() - started
        )
