"""The PostgreSQL job queue: procrastinate.

procrastinate brings what a home-made queue would have to grow: ``FOR UPDATE SKIP LOCKED`` job
fetching, LISTEN/NOTIFY wake-ups, scheduled (delayed) jobs, queueing locks that keep one waiting
job per run, worker registration with heartbeats and stalled-job detection, and an operator CLI
(``procrastinate ... shell``) to inspect the queue. Its schema is applied by our Alembic revision
0004.

Division of labour: a job only carries a run id; the run table decides (lease, cancel flag,
attempts). A job delivered twice or late is harmless because the claim refuses it. Jobs of a
worker that stopped heartbeating are closed by :meth:`ProcrastinateQueue.recover_stalled`, and
the maintenance loop enqueues a fresh job for every due run that has none.

procrastinate's App is asynchronous; this module runs it on a private event loop thread and offers
the synchronous interface of :class:`~export_center.runs.queue.JobQueue`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import procrastinate
from procrastinate import exceptions as pexc
from procrastinate.app import WorkerOptions
from procrastinate.job_context import JobContext
from procrastinate.jobs import Status
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

TASK_NAME = "export_center.execute_run"
QUEUE_NAME = "exports"
_T = TypeVar("_T")


def conninfo(database_url: str) -> str:
    """The libpq URL of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def queueing_lock(run_id: str) -> str:
    return f"run:{run_id}"


class _LoopThread:
    """An asyncio loop on a daemon thread; synchronous callers submit coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="procrastinate-loop", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = 60) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class ProcrastinateQueue:
    """procrastinate on the run's PostgreSQL database. One per process."""

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 4,
        heartbeat_seconds: float = 5.0,
        stalled_seconds: float = 30.0,
        drain_seconds: float | None = None,
    ) -> None:
        self._executors: list[Callable[[str], str]] = []
        self._heartbeat = heartbeat_seconds
        self._stalled = stalled_seconds
        self._drain = drain_seconds
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=conninfo(database_url), min_size=1, max_size=pool_size
            )
        )
        self.app.task(name=TASK_NAME, queue=QUEUE_NAME, pass_context=True)(self._execute_job)
        self._loop = _LoopThread()
        try:
            self._loop.call(self._open())
        except BaseException:
            self._loop.close()
            raise

    async def _open(self) -> None:
        await self.app.open_async()

    @staticmethod
    def _execute_job(context: JobContext, run_id: str) -> str:
        execute = context.additional_context["execute"]
        return str(execute(run_id))

    # ---- JobQueue ------------------------------------------------------------------------

    async def _defer(self, run_id: str, not_before: datetime | None) -> None:
        deferrer = self.app.configure_task(
            TASK_NAME,
            queue=QUEUE_NAME,
            queueing_lock=queueing_lock(run_id),
            schedule_at=not_before,
        )
        # AlreadyEnqueued: a job for this run is already waiting; at most it starts earlier
        # than ``not_before``, and then the claim refuses it until the run is due.
        with contextlib.suppress(pexc.AlreadyEnqueued):
            await deferrer.defer_async(run_id=run_id)

    def enqueue(self, run_id: str, *, not_before: datetime | None = None) -> None:
        self._loop.call(self._defer(run_id, not_before))

    async def _active(self) -> set[str]:
        out: set[str] = set()
        for status in ("todo", "doing"):
            for job in await self.app.job_manager.list_jobs_async(task=TASK_NAME, status=status):
                run_id = job.task_kwargs.get("run_id")
                if isinstance(run_id, str):
                    out.add(run_id)
        return out

    def active_run_ids(self) -> set[str] | None:
        return self._loop.call(self._active())

    async def _recover(self, seconds: float) -> int:
        jm = self.app.job_manager
        n = 0
        for job in await jm.get_stalled_jobs(task_name=TASK_NAME, seconds_since_heartbeat=seconds):
            assert job.id is not None
            try:
                await jm.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=False)
                n += 1
            except pexc.ConnectorException as e:  # finished meanwhile by its worker
                log.info("stalled job %s could not be closed: %s", job.id, e)
        await jm.prune_stalled_workers(seconds)
        return n

    def recover_stalled(self, seconds_since_heartbeat: float) -> int:
        return self._loop.call(self._recover(seconds_since_heartbeat))

    def run_worker(
        self, execute: Callable[[str], str], *, concurrency: int, stop: threading.Event
    ) -> None:
        started = threading.Event()
        holder: dict[str, asyncio.Task[None]] = {}

        options: WorkerOptions = {
            "queues": [QUEUE_NAME],
            "concurrency": max(1, concurrency),
            "install_signal_handlers": False,
            "additional_context": {"execute": execute},
            "update_heartbeat_interval": self._heartbeat,
            "stalled_worker_timeout": self._stalled,
            "delete_jobs": "successful",
            "listen_notify": True,
            "fetch_job_polling_interval": 2.0,
        }
        if self._drain is not None:
            options["shutdown_graceful_timeout"] = self._drain

        async def main() -> None:
            task = asyncio.current_task()
            assert task is not None
            holder["task"] = task
            started.set()
            await self.app.run_worker_async(**options)

        future = self._loop.submit(main())
        started.wait(timeout=30)
        while not stop.wait(0.5):
            if future.done():
                break
        if not future.done():
            # Cancelling run_worker_async makes procrastinate stop fetching and wait for the
            # running jobs (up to shutdown_graceful_timeout, then they are aborted).
            self._loop.loop.call_soon_threadsafe(holder["task"].cancel)
        with contextlib.suppress(concurrent.futures.CancelledError, asyncio.CancelledError):
            future.result()

    def close(self) -> None:
        try:
            self._loop.call(self.app.close_async(), timeout=30)
        finally:
            self._loop.close()
