"""Runs in the database: leases, the event log, listings and the maintenance queries.

Every state change follows the transition table of :mod:`export_center.runs.states` and appends
its event in the same transaction, numbered per run (the SSE event id).

Workers hold a run through a lease (``lease_owner`` + ``lease_expires_at``), taken and renewed
by conditional UPDATEs: a claim succeeds only on a due pending run or a running run whose lease
lapsed, so two workers never hold one run at once, whichever queue delivered the job. Every
write a worker makes afterwards is conditional on still owning the lease, so a worker that lost
its lease (paused, partitioned) cannot overwrite its successor's result.

Each write transaction starts with a write: on PostgreSQL that locks the run row (so event
sequence numbers are taken in commit order), and on SQLite it takes the write lock before any
read, which keeps concurrent writers serialized instead of failing on a stale snapshot.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy import CursorResult, Row, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from export_center.errors import NotFoundError
from export_center.runs.clock import aware, rfc3339, utcnow
from export_center.runs.states import (
    ACTIVE,
    TERMINAL,
    RunStatus,
    Transition,
    next_status,
    sources,
    target,
)
from export_center.store.models import ExportRun, ExportRunEvent, Tenant
from export_center.store.repository import EvidenceStore

WORKER_LOST = "ERR_EXPORT_WORKER_LOST"

_PENDING: RunStatus = "pending"
_RUNNING: RunStatus = "running"


@dataclass(frozen=True)
class RunView:
    id: str
    tenant: str
    profile: str
    revision: int
    status: RunStatus
    trigger: str
    as_of_seq: int | None
    export_id: str | None
    root_hash: str | None
    archive_path: str | None  # relative to the artifact store root
    archive_sha256: str | None
    archive_bytes: int | None
    error_code: str | None
    error_message: str | None
    attempts: int
    cancel_requested: bool
    items_done: int
    items_total: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expired_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    next_attempt_at: datetime | None
    last_event_seq: int
    error_hint: str | None = None  # what the user can do about the error, when it said

    @property
    def percent(self) -> float:
        if self.status == "succeeded" or self.status == "expired":
            return 100.0
        if self.items_total <= 0:
            return 0.0
        return round(min(100.0, 100.0 * self.items_done / self.items_total), 1)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    seq: int
    type: str
    data: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True)
class Claim:
    run: RunView
    attempt: int
    takeover: bool


@dataclass(frozen=True)
class Artifact:
    """What a successful attempt published."""

    export_id: str
    path: str  # relative to the artifact store root
    sha256: str
    size: int
    root_hash: str
    items_total: int


# The API's frequent reads, built once (building a statement costs more than running it), of
# the table's rows rather than ORM objects (a page of runs loads twice as fast).
_RUNS = ExportRun.__table__
#: The columns of a RunView, in the order of its fields.
_VIEW_COLUMNS = [_RUNS.c[f.name] for f in fields(RunView)]
_VIEW_DATETIMES = [i for i, f in enumerate(fields(RunView)) if f.name.endswith("_at")]
_GET_RUN = select(*_VIEW_COLUMNS).where(
    _RUNS.c.id == bindparam("id"), _RUNS.c.tenant == bindparam("tenant")
)


@functools.cache
def _list_runs_statements(
    by_status: bool, by_profile: bool
) -> tuple[Select[int], Select[*tuple[Any, ...]]]:
    where = [ExportRun.tenant == bindparam("tenant")]
    if by_status:
        where.append(ExportRun.status.in_(bindparam("statuses", expanding=True)))
    if by_profile:
        where.append(ExportRun.profile == bindparam("profile"))
    count = select(func.count()).select_from(ExportRun).where(*where)
    page = (
        select(*_VIEW_COLUMNS)
        .where(*where)
        .order_by(ExportRun.created_at.desc(), ExportRun.id.desc())
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    return count, page


def _row_view(row: Row[Any]) -> RunView:
    """A RunView from a row of ``_VIEW_COLUMNS``."""
    values = list(row)
    for i in _VIEW_DATETIMES:
        values[i] = aware(values[i])
    return RunView(*values)


def _view(r: ExportRun) -> RunView:
    created = aware(r.created_at)
    assert created is not None
    return RunView(
        id=r.id,
        tenant=r.tenant,
        profile=r.profile,
        revision=r.revision,
        status=r.status,  # type: ignore[arg-type]
        trigger=r.trigger,
        as_of_seq=r.as_of_seq,
        export_id=r.export_id,
        root_hash=r.root_hash,
        archive_path=r.archive_path,
        archive_sha256=r.archive_sha256,
        archive_bytes=r.archive_bytes,
        error_code=r.error_code,
        error_message=r.error_message,
        attempts=r.attempts,
        cancel_requested=r.cancel_requested,
        items_done=r.items_done,
        items_total=r.items_total,
        created_at=created,
        started_at=aware(r.started_at),
        finished_at=aware(r.finished_at),
        expired_at=aware(r.expired_at),
        lease_owner=r.lease_owner,
        lease_expires_at=aware(r.lease_expires_at),
        next_attempt_at=aware(r.next_attempt_at),
        last_event_seq=r.last_event_seq,
        error_hint=r.error_hint,
    )


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


class RunRepository:
    """Every read and write of ``export_runs`` and ``export_run_events``. Thread-safe."""

    def __init__(self, store: EvidenceStore, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock

    # ---- events --------------------------------------------------------------------------

    def _event(
        self, s: Session, run_id: str, type_: str, data: Mapping[str, Any], at: datetime
    ) -> int:
        """Append an event; the caller's transaction already wrote (and so locked) the run."""
        seq = s.execute(
            update(ExportRun)
            .where(ExportRun.id == run_id)
            .values(last_event_seq=ExportRun.last_event_seq + 1)
            .returning(ExportRun.last_event_seq)
        ).scalar_one()
        s.add(
            ExportRunEvent(
                run_id=run_id,
                seq=seq,
                type=str(type_),
                data=orjson.dumps(dict(data), option=orjson.OPT_SORT_KEYS).decode(),
                at=at,
            )
        )
        return int(seq)

    def add_event(self, run_id: str, type_: str, data: Mapping[str, Any]) -> int:
        """Append an event outside a state transition (e.g. after publication)."""
        with self.store.session() as s, s.begin():
            return self._event(s, run_id, type_, data, self.clock())

    def events_after(self, run_id: str, after: int, *, limit: int = 500) -> list[RunEvent]:
        with self.store.session() as s:
            rows = s.execute(
                select(ExportRunEvent)
                .where(ExportRunEvent.run_id == run_id, ExportRunEvent.seq > after)
                .order_by(ExportRunEvent.seq)
                .limit(limit)
            ).scalars()
            return [
                RunEvent(e.run_id, e.seq, e.type, orjson.loads(e.data), aware(e.at) or e.at)
                for e in rows
            ]

    # ---- API side ------------------------------------------------------------------------

    def ensure_tenant(self, tenant: str) -> None:
        """Create the tenant's row if missing, so that :meth:`lock_tenant` has a row to lock."""
        # One explicit transaction: a lookup first would autobegin one, and begin() would then
        # refuse (a tenant with profiles but no evidence yet has no row).
        # A concurrent creator may win the race: then the row exists, which is all we need.
        with self.store.session() as s, contextlib.suppress(IntegrityError), s.begin():
            if s.get(Tenant, tenant) is None:
                s.add(Tenant(name=tenant, last_seq=0))

    @staticmethod
    def lock_tenant(s: Session, tenant: str) -> None:
        """Serialize run creation per tenant (quota checks) for the rest of ``s``'s transaction.

        A no-op UPDATE is a row lock on PostgreSQL and the write lock on SQLite.
        """
        s.execute(update(Tenant).where(Tenant.name == tenant).values(last_seq=Tenant.last_seq))

    def create(
        self,
        s: Session,
        *,
        run_id: str,
        tenant: str,
        profile: str,
        revision: int,
        as_of_seq: int,
        export_id: str,
        items_total: int,
        trigger: str,
        requested_by: str | None,
        schedule_slot: str | None = None,
    ) -> RunView:
        """Insert a pending run and its ``queued`` event inside the caller's transaction."""
        now = self.clock()
        row = ExportRun(
            id=run_id,
            tenant=tenant,
            profile=profile,
            revision=revision,
            status="pending",
            as_of_seq=as_of_seq,
            export_id=export_id,
            attempts=0,
            cancel_requested=False,
            items_done=0,
            items_total=items_total,
            created_at=now,
            trigger=trigger,
            schedule_slot=schedule_slot,
            requested_by=requested_by,
            last_event_seq=0,
        )
        s.add(row)
        s.flush()
        self._event(
            s,
            run_id,
            "queued",
            {"status": "pending", "profile": profile, "revision": revision, "asOf": as_of_seq},
            now,
        )
        s.flush()
        s.refresh(row)
        return _view(row)

    def get(self, tenant: str, run_id: str) -> RunView:
        """The tenant's run.

        Raises:
            NotFoundError: no such run for this tenant (another tenant's run included).
        """
        with self.store.session() as s:
            row = s.execute(_GET_RUN, {"id": run_id, "tenant": tenant}).one_or_none()
            if row is None:
                raise NotFoundError(f"no run {run_id!r}")
            return _row_view(row)

    def find(self, run_id: str) -> RunView | None:
        with self.store.session() as s:
            row = s.get(ExportRun, run_id)
            return None if row is None else _view(row)

    def list_runs(
        self,
        tenant: str,
        *,
        statuses: Sequence[str] = (),
        profile: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[RunView], int]:
        count, page = _list_runs_statements(bool(statuses), bool(profile))
        params = {"tenant": tenant, "statuses": list(statuses), "profile": profile}
        with self.store.session() as s:
            total = s.execute(count, params).scalar_one()
            rows = s.execute(page, params | {"offset": offset, "limit": limit})
            return [_row_view(r) for r in rows], int(total)

    def request_cancel(self, tenant: str, run_id: str) -> RunView:
        """Cancel a pending run now, or flag a running one for its worker.

        Raises:
            NotFoundError: no such run for this tenant.
            ConflictError: the run already finished (succeeded, failed or expired).
        """
        now = self.clock()
        cancel = Transition.CANCELLED
        with self.store.session() as s, s.begin():
            flagged = s.execute(
                update(ExportRun)
                .where(
                    ExportRun.id == run_id,
                    ExportRun.tenant == tenant,
                    ExportRun.status.in_(sorted(sources(cancel))),
                )
                .values(cancel_requested=True)
            )
            row = s.execute(
                select(ExportRun).where(ExportRun.id == run_id, ExportRun.tenant == tenant)
            ).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"no run {run_id!r}")
            # Cancelling a cancelled run again is a no-op; any other refusal is a conflict.
            if _rowcount(flagged) == 0 and row.status != target(cancel):
                next_status(row.status, cancel, run_id=run_id)  # raises ConflictError
            # A pending run has no worker to stop: it is cancelled at once. A running one is
            # only flagged; its worker (or recovery, if the worker is lost) makes the move.
            if row.status == _PENDING:
                status = next_status(row.status, cancel, run_id=run_id)
                row.status = status
                row.finished_at = now
                row.next_attempt_at = None
                s.flush()
                self._event(s, run_id, cancel, {"status": status, "stage": "queued"}, now)
            s.flush()
            s.refresh(row)
            return _view(row)

    # ---- worker side ---------------------------------------------------------------------

    def claim(self, run_id: str, owner: str, *, lease_seconds: float) -> Claim | None:
        """Take the run if it is due and unclaimed, or if its holder's lease lapsed.

        Returns None when someone else holds it or it needs no work (finished, cancelled).
        """
        now = self.clock()
        until = now + timedelta(seconds=lease_seconds)
        values = {
            "status": target(Transition.STARTED),
            "lease_owner": owner,
            "lease_expires_at": until,
            "attempts": ExportRun.attempts + 1,
            "started_at": func.coalesce(ExportRun.started_at, now),
            "next_attempt_at": None,
        }
        with self.store.session() as s, s.begin():
            fresh = s.execute(
                update(ExportRun)
                .where(
                    ExportRun.id == run_id,
                    ExportRun.status == _PENDING,
                    ExportRun.cancel_requested.is_(False),
                    or_(ExportRun.next_attempt_at.is_(None), ExportRun.next_attempt_at <= now),
                )
                .values(**values)
            )
            takeover = False
            if _rowcount(fresh) == 0:
                lapsed = s.execute(
                    update(ExportRun)
                    .where(
                        ExportRun.id == run_id,
                        ExportRun.status == _RUNNING,
                        ExportRun.cancel_requested.is_(False),
                        ExportRun.lease_expires_at < now,
                    )
                    .values(**values)
                )
                if _rowcount(lapsed) == 0:
                    return None
                takeover = True
            row = s.execute(select(ExportRun).where(ExportRun.id == run_id)).scalar_one()
            self._event(
                s,
                run_id,
                Transition.STARTED,
                {
                    "status": row.status,
                    "attempt": row.attempts,
                    "takeover": takeover,
                    "worker": owner,
                },
                now,
            )
            s.flush()
            s.refresh(row)
            return Claim(_view(row), row.attempts, takeover)

    def _owned(self, run_id: str, owner: str) -> Any:
        return and_(
            ExportRun.id == run_id, ExportRun.lease_owner == owner, ExportRun.status == _RUNNING
        )

    def heartbeat(self, run_id: str, owner: str, *, lease_seconds: float) -> bool:
        """Extend the lease; False when it is no longer ours."""
        until = self.clock() + timedelta(seconds=lease_seconds)
        with self.store.session() as s, s.begin():
            done = s.execute(
                update(ExportRun).where(self._owned(run_id, owner)).values(lease_expires_at=until)
            )
            return _rowcount(done) == 1

    def should_stop(self, run_id: str, owner: str) -> bool:
        """True when the run was cancelled or the lease is no longer ours."""
        with self.store.session() as s:
            row = s.execute(
                select(ExportRun.cancel_requested, ExportRun.lease_owner, ExportRun.status).where(
                    ExportRun.id == run_id
                )
            ).one_or_none()
        if row is None:
            return True
        cancel, lease_owner, status = row
        return bool(cancel) or lease_owner != owner or status != _RUNNING

    def progress(self, run_id: str, owner: str, done: int, total: int, *, event: bool) -> bool:
        now = self.clock()
        with self.store.session() as s, s.begin():
            ok = s.execute(
                update(ExportRun)
                .where(self._owned(run_id, owner))
                .values(items_done=done, items_total=total)
            )
            if _rowcount(ok) == 0:
                return False
            if event:
                percent = round(min(100.0, 100.0 * done / total), 1) if total > 0 else 0.0
                self._event(
                    s,
                    run_id,
                    "progress",
                    {"itemsCompleted": done, "itemsTotal": total, "percent": percent},
                    now,
                )
            return True

    def succeed(self, run_id: str, owner: str, artifact: Artifact) -> RunStatus | None:
        """Record the published artifact: ``succeeded`` — or ``cancelled`` when a cancel request
        arrived meanwhile (the caller then deletes the artifact). None when the lease was lost.
        """
        now = self.clock()
        with self.store.session() as s, s.begin():
            cancel, succeed = Transition.CANCELLED, Transition.SUCCEEDED
            cancelled = s.execute(
                update(ExportRun)
                .where(self._owned(run_id, owner), ExportRun.cancel_requested.is_(True))
                .values(status=target(cancel), finished_at=now, lease_owner=None)
            )
            if _rowcount(cancelled) == 1:
                self._event(s, run_id, cancel, {"status": target(cancel), "stage": "publish"}, now)
                return target(cancel)
            ok = s.execute(
                update(ExportRun)
                .where(self._owned(run_id, owner))
                .values(
                    status=target(succeed),
                    finished_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    export_id=artifact.export_id,
                    archive_path=artifact.path,
                    archive_sha256=artifact.sha256,
                    archive_bytes=artifact.size,
                    root_hash=artifact.root_hash,
                    items_done=artifact.items_total,
                    items_total=artifact.items_total,
                    error_code=None,
                    error_message=None,
                    error_hint=None,
                )
            )
            if _rowcount(ok) == 0:
                return None
            self._event(
                s,
                run_id,
                "artifact_ready",
                {
                    "name": artifact.path.rsplit("/", 1)[-1],
                    "sha256": artifact.sha256,
                    "bytes": artifact.size,
                    "rootHash": artifact.root_hash,
                    "exportId": artifact.export_id,
                },
                now,
            )
            self._event(s, run_id, succeed, {"status": target(succeed)}, now)
            return target(succeed)

    def finish(
        self,
        run_id: str,
        owner: str,
        status: Literal["failed", "cancelled"],
        *,
        code: str | None = None,
        message: str | None = None,
        hint: str | None = None,
    ) -> bool:
        now = self.clock()
        transition = Transition(status)
        with self.store.session() as s, s.begin():
            ok = s.execute(
                update(ExportRun)
                .where(self._owned(run_id, owner))
                .values(
                    status=target(transition),
                    finished_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    error_code=code,
                    error_message=message,
                    error_hint=hint,
                )
            )
            if _rowcount(ok) == 0:
                return False
            data: dict[str, Any] = {"status": target(transition)}
            if code:
                data["error"] = {"code": code, "message": message}
                if hint:
                    data["error"]["hint"] = hint
            self._event(s, run_id, transition, data, now)
            return True

    def retry_later(
        self, run_id: str, owner: str, *, at: datetime, code: str, message: str
    ) -> bool:
        """Back to ``pending`` until ``at`` after a transient failure."""
        now = self.clock()
        with self.store.session() as s, s.begin():
            ok = s.execute(
                update(ExportRun)
                .where(self._owned(run_id, owner))
                .values(
                    status=target(Transition.RETRYING),
                    lease_owner=None,
                    lease_expires_at=None,
                    next_attempt_at=at,
                    error_code=code,
                    error_message=message,
                    items_done=0,
                )
            )
            if _rowcount(ok) == 0:
                return False
            self._event(
                s,
                run_id,
                Transition.RETRYING,
                {
                    "status": target(Transition.RETRYING),
                    "notBefore": rfc3339(at),
                    "error": {"code": code, "message": message},
                },
                now,
            )
            return True

    def release(self, run_id: str, owner: str) -> bool:
        """Give a run back (worker shutting down mid-run): due again at once."""
        with self.store.session() as s, s.begin():
            ok = s.execute(
                update(ExportRun)
                .where(self._owned(run_id, owner))
                .values(
                    status=target(Transition.RETRYING),
                    lease_owner=None,
                    lease_expires_at=None,
                    items_done=0,
                )
            )
            if _rowcount(ok) == 0:
                return False
            self._event(
                s,
                run_id,
                Transition.RETRYING,
                {"status": target(Transition.RETRYING), "reason": "released"},
                self.clock(),
            )
            return True

    # ---- maintenance ---------------------------------------------------------------------

    def due(self, *, limit: int = 50) -> list[str]:
        """Runs a worker could claim now, oldest first: due pending and lapsed running runs."""
        now = self.clock()
        with self.store.session() as s:
            return list(
                s.execute(
                    select(ExportRun.id)
                    .where(
                        or_(
                            and_(
                                ExportRun.status == _PENDING,
                                or_(
                                    ExportRun.next_attempt_at.is_(None),
                                    ExportRun.next_attempt_at <= now,
                                ),
                            ),
                            and_(ExportRun.status == _RUNNING, ExportRun.lease_expires_at < now),
                        )
                    )
                    .order_by(ExportRun.created_at, ExportRun.id)
                    .limit(limit)
                ).scalars()
            )

    def settle_lapsed(self, *, max_attempts: int) -> list[tuple[str, str]]:
        """Finish lapsed runs that must not run again: cancel requested, or attempts used up.

        Returns (run id, new status) pairs.
        """
        now = self.clock()
        out: list[tuple[str, str]] = []
        with self.store.session() as s:
            ids = list(
                s.execute(
                    select(ExportRun.id, ExportRun.cancel_requested).where(
                        ExportRun.status == _RUNNING,
                        ExportRun.lease_expires_at < now,
                        or_(
                            ExportRun.cancel_requested.is_(True),
                            ExportRun.attempts >= max_attempts,
                        ),
                    )
                )
            )
        for run_id, cancel in ids:
            transition = Transition.CANCELLED if cancel else Transition.FAILED
            status = target(transition)
            with self.store.session() as s, s.begin():
                ok = s.execute(
                    update(ExportRun)
                    .where(
                        ExportRun.id == run_id,
                        ExportRun.status == _RUNNING,
                        ExportRun.lease_expires_at < now,
                    )
                    .values(
                        status=status,
                        finished_at=now,
                        lease_owner=None,
                        lease_expires_at=None,
                        error_code=None if cancel else WORKER_LOST,
                        error_message=None
                        if cancel
                        else f"the worker was lost and the run used its {max_attempts} attempts",
                    )
                )
                if _rowcount(ok) == 1:
                    data: dict[str, Any] = {"status": status}
                    if not cancel:
                        data["error"] = {"code": WORKER_LOST, "message": "attempts exhausted"}
                    self._event(s, run_id, transition, data, now)
                    out.append((run_id, status))
        return out

    def queue_stats(self) -> dict[str, float]:
        """The queue gauges of :mod:`export_center.runtime.metrics` (whole cluster)."""
        now = self.clock()
        due = or_(ExportRun.next_attempt_at.is_(None), ExportRun.next_attempt_at <= now)
        with self.store.session() as s:
            counts = dict(
                s.execute(
                    select(ExportRun.status, func.count())
                    .where(ExportRun.status.in_(sorted(ACTIVE)))
                    .group_by(ExportRun.status)
                ).all()
            )
            lapsed = s.execute(
                select(func.count()).where(
                    ExportRun.status == _RUNNING, ExportRun.lease_expires_at < now
                )
            ).scalar_one()
            oldest, due_count = s.execute(
                select(func.min(ExportRun.created_at), func.count()).where(
                    ExportRun.status == _PENDING, due
                )
            ).one()
            # A running run writes an event when claimed and on progress; the stalest of
            # those is how long the most stuck export has been silent.
            last_events = (
                select(func.max(ExportRunEvent.at).label("last"))
                .join(ExportRun, ExportRun.id == ExportRunEvent.run_id)
                .where(ExportRun.status == _RUNNING)
                .group_by(ExportRunEvent.run_id)
                .subquery()
            )
            stalest = s.execute(select(func.min(last_events.c.last))).scalar_one()
        oldest_at, stalest_at = aware(oldest), aware(stalest)
        running = float(counts.get("running", 0))
        return {
            "pending": float(counts.get("pending", 0)),
            "running": running,
            "due": float(due_count),
            "leases_active": running - float(lapsed),
            "lease_expired": float(lapsed),
            "oldest_pending_age": (now - oldest_at).total_seconds() if oldest_at else 0.0,
            "running_idle": max(0.0, (now - stalest_at).total_seconds()) if stalest_at else 0.0,
        }

    def succeeded_runs(self, tenant: str, profile: str) -> list[RunView]:
        """The profile's succeeded runs, newest first (retention's input)."""
        with self.store.session() as s:
            rows = s.execute(
                select(ExportRun)
                .where(
                    ExportRun.tenant == tenant,
                    ExportRun.profile == profile,
                    ExportRun.status == "succeeded",
                )
                .order_by(ExportRun.finished_at.desc(), ExportRun.id.desc())
            ).scalars()
            return [_view(r) for r in rows]

    def expire(self, run_id: str, reason: str) -> bool:
        now = self.clock()
        expire = Transition.EXPIRED
        with self.store.session() as s, s.begin():
            ok = s.execute(
                update(ExportRun)
                .where(ExportRun.id == run_id, ExportRun.status.in_(sorted(sources(expire))))
                .values(status=target(expire), expired_at=now)
            )
            if _rowcount(ok) == 0:
                return False
            self._event(s, run_id, expire, {"status": target(expire), "reason": reason}, now)
            return True

    def schedule_slot_taken(self, tenant: str, profile: str, slot: str) -> bool:
        with self.store.session() as s:
            return (
                s.execute(
                    select(ExportRun.id).where(
                        ExportRun.tenant == tenant,
                        ExportRun.profile == profile,
                        ExportRun.schedule_slot == slot,
                    )
                ).first()
                is not None
            )
