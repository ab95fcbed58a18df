"""Cron schedules of profiles: which slot a schedule owes at a given time (pure).

A slot is named by its UTC fire time; the runs table keeps that name per (tenant, profile)
unique, so a slot fires at most once whichever scheduler sees it first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter


def schedule_slot(expression: str, now: datetime) -> datetime:
    """The most recent cron fire time at or before ``now`` (UTC).

    Raises:
        ValueError: not a valid cron expression.
    """
    if not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {expression!r}")
    base = now.astimezone(UTC)
    it = croniter(expression, base + timedelta(microseconds=1))
    prev = it.get_prev(datetime)
    assert isinstance(prev, datetime)
    return prev if prev.tzinfo else prev.replace(tzinfo=UTC)


def owed_slot(expression: str, now: datetime, *, since: datetime) -> str | None:
    """The name of the slot the schedule owes at ``now``, or None when its latest slot is
    older than ``since`` (the revision that set the schedule: earlier slots are not owed).

    Raises:
        ValueError: not a valid cron expression.
    """
    slot_time = schedule_slot(expression, now)
    if slot_time < since:
        return None
    return slot_time.strftime("%Y-%m-%dT%H:%M:%SZ")
