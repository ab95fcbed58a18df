"""Per-tenant quotas (docs/api.md): concurrent runs, runs per hour, bytes per day.

Checked when a run is created, inside the transaction that inserts it, with the tenant's row
locked: two requests racing for the last slot cannot both get it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from export_center.errors import QuotaError
from export_center.runs.clock import aware
from export_center.runs.states import ACTIVE
from export_center.settings import Quotas
from export_center.store.models import ExportRun

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# No run can tell when a concurrency slot frees up: a short, fixed wait.
CONCURRENCY_RETRY_AFTER = 15


@dataclass(frozen=True)
class QuotaStatus:
    """The runs-per-hour window, reported in the X-Stella-Quota-* headers."""

    limit: int
    remaining: int
    reset_seconds: int


def usage(
    s: Session, tenant: str, *, hour_ago: datetime, day_ago: datetime
) -> tuple[int, list[datetime], int]:
    """(active runs, creation times within the hour, bytes published within the day)."""
    active = s.execute(
        select(func.count()).where(ExportRun.tenant == tenant, ExportRun.status.in_(sorted(ACTIVE)))
    ).scalar_one()
    recent = [
        aware(t) or t
        for t in s.execute(
            select(ExportRun.created_at)
            .where(ExportRun.tenant == tenant, ExportRun.created_at > hour_ago)
            .order_by(ExportRun.created_at)
        ).scalars()
    ]
    published = s.execute(
        select(func.coalesce(func.sum(ExportRun.archive_bytes), 0)).where(
            ExportRun.tenant == tenant,
            ExportRun.finished_at > day_ago,
            ExportRun.archive_bytes.is_not(None),
        )
    ).scalar_one()
    return int(active), recent, int(published or 0)


def check_and_reserve(s: Session, tenant: str, quotas: Quotas, now: datetime) -> QuotaStatus | None:
    """Refuse a new run over quota; else the hourly window's state after this run.

    Call it in the transaction that inserts the run, with the tenant's row locked
    (:meth:`~export_center.runs.repository.RunRepository.lock_tenant`).

    Raises:
        QuotaError: a quota is exhausted (with the numbers for the 429 headers).
    """
    active, recent, published = usage(s, tenant, hour_ago=now - HOUR, day_ago=now - DAY)
    reset = math.ceil((recent[0] + HOUR - now).total_seconds()) if recent else 3600
    reset = max(1, reset)
    hourly = quotas.runs_per_hour
    if hourly and len(recent) >= hourly:
        raise QuotaError(
            f"tenant {tenant!r} created {len(recent)} runs in the last hour (limit {hourly})",
            quota="runsPerHour",
            limit=hourly,
            remaining=0,
            reset_seconds=reset,
            retry_after=reset,
        )
    status = (
        QuotaStatus(limit=hourly, remaining=hourly - len(recent) - 1, reset_seconds=reset)
        if hourly
        else None
    )
    if quotas.concurrent_runs and active >= quotas.concurrent_runs:
        raise QuotaError(
            f"tenant {tenant!r} has {active} runs pending or running "
            f"(limit {quotas.concurrent_runs})",
            quota="concurrentRuns",
            limit=quotas.concurrent_runs,
            remaining=0,
            reset_seconds=CONCURRENCY_RETRY_AFTER,
            retry_after=CONCURRENCY_RETRY_AFTER,
        )
    if quotas.bytes_per_day and published >= quotas.bytes_per_day:
        raise QuotaError(
            f"tenant {tenant!r} published {published} bytes in the last day "
            f"(limit {quotas.bytes_per_day})",
            quota="bytesPerDay",
            limit=quotas.bytes_per_day,
            remaining=0,
            reset_seconds=3600,
            retry_after=3600,
        )
    return status
