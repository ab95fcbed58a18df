"""Worker threads and the maintenance loop inside one process.

``stella worker`` runs only this; ``stella serve`` runs it beside the API (the embedded default:
one process does everything). Stopping drains: no new job is taken, running exports finish
(up to ``drain_seconds``), and what is still running after that is given back to the queue.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from export_center.runtime.container import Services
from export_center.worker.maintenance import Maintenance
from export_center.worker.runner import ExportFunction, RunExecutor

log = logging.getLogger(__name__)


class WorkerRuntime:
    def __init__(
        self,
        services: Services,
        *,
        concurrency: int | None = None,
        export: ExportFunction | None = None,
        maintenance: bool = True,
        owner: str | None = None,
    ) -> None:
        self.services = services
        self.concurrency = concurrency or services.service.worker_concurrency
        self.executor = RunExecutor(
            settings=services.settings,
            service=services.service,
            store=services.store,
            repo=services.repo,
            artifacts=services.artifacts,
            metrics=services.metrics,
            owner=owner,
            enqueue=self._enqueue,
            export=export,
        )
        self.maintenance = (
            Maintenance(
                store=services.store,
                repo=services.repo,
                runs=services.runs,
                artifacts=services.artifacts,
                queue=lambda: services.queue,
                service=services.service,
                metrics=services.metrics,
            )
            if maintenance
            else None
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _enqueue(self, run_id: str, *, not_before: datetime | None = None) -> None:
        self.services.queue.enqueue(run_id, not_before=not_before)

    def _work(self) -> None:
        try:
            self.services.queue.run_worker(
                self.executor.execute, concurrency=self.concurrency, stop=self._stop
            )
        except Exception:
            log.exception("the worker loop ended with an error")
            raise

    def _maintain(self) -> None:
        assert self.maintenance is not None
        try:
            self.maintenance.sweep()
        except Exception:
            log.exception("maintenance pass failed")
        self.maintenance.run_forever(self._stop)

    def start(self) -> None:
        log.info(
            "worker %s starting: %d concurrent run(s), queue %s",
            self.executor.owner,
            self.concurrency,
            type(self.services.queue).__name__,
        )
        self.services.metrics.worker_slots.set(self.concurrency)
        targets = [("export-worker", self._work)]
        if self.maintenance is not None:
            targets.append(("maintenance", self._maintain))
        for name, target in targets:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, *, drain_seconds: float = 60.0) -> None:
        """Stop taking jobs, let running exports finish for ``drain_seconds``, then release
        what is left (another worker resumes it from the start)."""
        self._stop.set()
        worker = self._threads[0] if self._threads else None
        if worker is not None:
            worker.join(drain_seconds)
            if worker.is_alive():
                log.warning("drain timeout: releasing the runs still in progress")
                self.executor.aborting.set()
                worker.join(60)
        for t in self._threads[1:]:
            t.join(30)
        self.services.metrics.worker_slots.set(0)
        log.info("worker %s stopped", self.executor.owner)

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)
