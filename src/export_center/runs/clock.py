"""UTC time helpers: the one clock runs use by default, and the wire format of timestamps."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; we only ever store UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def rfc3339(value: datetime | None) -> str | None:
    value = aware(value)
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
