"""The job queue interface, and its embedded implementation (SQLite, one process).

A queue delivers run ids to workers; it decides nothing about runs. What a run's state is,
whether it may start, and who holds it is the run table's business
(:mod:`export_center.runs.repository`), so a queue that delivers a job twice, late, or after its
run was cancelled does no harm: the claim refuses. The database URL chooses the implementation
(:func:`open_queue`): procrastinate on PostgreSQL (:mod:`export_center.runs.pgqueue`), the
in-process poller here on SQLite.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.engine import make_url

from export_center.errors import missing_extra

log = logging.getLogger(__name__)


class JobQueue(Protocol):
    def enqueue(self, run_id: str, *, not_before: datetime | None = None) -> None:
        """Ask for ``run_id`` to be executed (no earlier than ``not_before``). Idempotent."""
        ...

    def active_run_ids(self) -> set[str] | None:
        """Runs that have a job waiting or running; None when the queue cannot tell."""
        ...

    def recover_stalled(self, seconds_since_heartbeat: float) -> int:
        """Close jobs whose worker stopped heartbeating; returns how many."""
        ...

    def run_worker(
        self, execute: Callable[[str], str], *, concurrency: int, stop: threading.Event
    ) -> None:
        """Execute jobs with ``execute`` until ``stop`` is set; returns when drained."""
        ...

    def close(self) -> None: ...


class LocalQueue:
    """Embedded queue: the run table is the queue; ``enqueue`` only wakes the pollers.

    Workers (threads of ``stella serve``, or ``stella worker`` processes on the same SQLite file)
    poll for due runs and claim them through the lease, so any number of them is safe.
    """

    def __init__(self, due: Callable[[], list[str]], *, poll_seconds: float = 1.0) -> None:
        self._due = due
        self._poll = poll_seconds
        self._wake = threading.Condition()
        self._generation = 0

    def enqueue(self, run_id: str, *, not_before: datetime | None = None) -> None:
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def active_run_ids(self) -> set[str] | None:
        return None

    def recover_stalled(self, seconds_since_heartbeat: float) -> int:
        return 0

    def _wait(self, seen: int, stop: threading.Event) -> int:
        with self._wake:
            if self._generation == seen and not stop.is_set():
                self._wake.wait(self._poll)
            return self._generation

    def run_worker(
        self, execute: Callable[[str], str], *, concurrency: int, stop: threading.Event
    ) -> None:
        def loop(n: int) -> None:
            seen = -1
            # Every log line of this thread names its poller (see runtime.logs.bind).
            with structlog.contextvars.bound_contextvars(worker=f"local-{n}"):
                while not stop.is_set():
                    ran = False
                    try:
                        for run_id in self._due():
                            if stop.is_set():
                                break
                            if execute(run_id) != "skipped":
                                ran = True
                                break
                    except Exception:  # keep polling: the database may be back next round
                        log.exception("worker loop error")
                    if not ran:
                        seen = self._wait(seen, stop)

        threads = [
            threading.Thread(target=loop, args=(n,), name=f"export-worker-{n}", daemon=True)
            for n in range(max(1, concurrency))
        ]
        for t in threads:
            t.start()
        stop.wait()
        with self._wake:
            self._wake.notify_all()
        for t in threads:
            t.join()

    def close(self) -> None:
        return None


def open_queue(
    database_url: str,
    due: Callable[[], list[str]],
    *,
    heartbeat_seconds: float,
    stalled_seconds: float,
    drain_seconds: float | None = None,
) -> JobQueue:
    """The queue that goes with the database: procrastinate on PostgreSQL, else local."""
    if make_url(database_url).get_backend_name() == "postgresql":
        try:
            from export_center.runs.pgqueue import ProcrastinateQueue
        except ImportError as e:
            raise missing_extra("postgres", "the PostgreSQL job queue", e) from e

        return ProcrastinateQueue(
            database_url,
            heartbeat_seconds=heartbeat_seconds,
            stalled_seconds=stalled_seconds,
            drain_seconds=drain_seconds,
        )
    return LocalQueue(due)
