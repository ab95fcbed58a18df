"""The objects a service, worker or CLI process shares, built once from the settings.

What only the HTTP API needs (authentication, idempotency) is added by the API itself
(:class:`export_center.service.context.ApiContext`), so that a worker never loads it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import func, select, text

from export_center.adapters.registry import EXPORTABLE
from export_center.exporter import ProfileReferences
from export_center.planner.registry import ProfileRegistry
from export_center.runs.artifacts import ArtifactStore, FilesystemArtifactStore
from export_center.runs.operations import RunService
from export_center.runs.queue import JobQueue, open_queue
from export_center.runs.repository import RunRepository
from export_center.runtime.metrics import Metrics
from export_center.settings import ServiceSettings, Settings
from export_center.store.db import make_engine, migrate
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)

# pg_advisory_lock key serializing schema migrations of processes starting together.
_MIGRATE_LOCK = int.from_bytes(b"stellamg", "big") & 0x7FFF_FFFF_FFFF_FFFF


@contextlib.contextmanager
def _migration_lock(store: EvidenceStore) -> Iterator[None]:
    if store.engine.dialect.name != "postgresql":
        yield
        return
    with store.engine.connect() as conn:
        conn.execute(select(func.pg_advisory_lock(_MIGRATE_LOCK)))
        conn.commit()
        try:
            yield
        finally:
            conn.execute(select(func.pg_advisory_unlock(_MIGRATE_LOCK)))
            conn.commit()


def open_store(
    settings: Settings, *, run_migrations: bool = True, pool_size: int | None = None
) -> EvidenceStore:
    """The store, migrated (one process at a time on PostgreSQL: workers start together).

    ``pool_size``: database connections kept open; a server passes the number of its threads
    that use the database at once (see :func:`export_center.store.db.make_engine`).
    """
    store = EvidenceStore(make_engine(settings.database_url, pool_size=pool_size))
    if run_migrations:
        with _migration_lock(store):
            migrate(store.engine)
    return store


@dataclass
class Services:
    settings: Settings
    service: ServiceSettings
    store: EvidenceStore
    repo: RunRepository
    registry: ProfileRegistry
    runs: RunService
    artifacts: ArtifactStore
    metrics: Metrics
    _queue: JobQueue | None = None
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        queue: JobQueue | None = None,
        run_migrations: bool = True,
        pool_size: int | None = None,
    ) -> Services:
        """Open the store (migrating it) and wire everything. ``pool_size``: database
        connections to keep open (the process's threads that use the database at once).

        Raises:
            ConfigError: an unsupported database.
        """
        service = settings.service
        store = open_store(settings, run_migrations=run_migrations, pool_size=pool_size)
        repo = RunRepository(store)
        # Revisions are checked against the tenant's keys, policies and published exports, and
        # only kinds a run can export are accepted (issue: never accepted, then failing).
        registry = ProfileRegistry(
            store, references=ProfileReferences(settings, store), exportable=EXPORTABLE
        )
        settings.artifact_dir.mkdir(parents=True, exist_ok=True)
        holder: list[Services] = []
        runs = RunService(
            store=store,
            repo=repo,
            registry=registry,
            queue=lambda: holder[0].queue,
            service=service,
        )
        out = cls(
            settings=settings,
            service=service,
            store=store,
            repo=repo,
            registry=registry,
            runs=runs,
            artifacts=FilesystemArtifactStore(settings.artifact_dir),
            metrics=metrics or Metrics(),
            _queue=queue,
        )
        holder.append(out)
        return out

    @property
    def queue(self) -> JobQueue:
        """The job queue, opened on first use (commands that never enqueue never connect)."""
        with self._queue_lock:
            if self._queue is None:
                self._queue = open_queue(
                    self.settings.database_url,
                    self.repo.due,
                    heartbeat_seconds=self.service.heartbeat_seconds,
                    stalled_seconds=self.service.lease_seconds,
                )
            return self._queue

    def ready(self) -> dict[str, str]:
        """Readiness checks by name: "ok" or what is wrong."""
        checks: dict[str, str] = {}
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as e:  # reported, not raised: this is the health endpoint
            checks["database"] = f"unreachable: {type(e).__name__}"
        root = self.artifacts.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".ready-probe"
            probe.write_bytes(b"")
            probe.unlink()
            checks["artifacts"] = "ok"
        except OSError as e:
            checks["artifacts"] = f"not writable: {e.strerror}"
        return checks

    def close(self) -> None:
        with self._queue_lock:
            if self._queue is not None:
                self._queue.close()
                self._queue = None
        self.store.engine.dispose()
