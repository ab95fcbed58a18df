"""Which failures are worth another attempt, and how long to wait before it (pure)."""

from __future__ import annotations

import errno
import hashlib

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from export_center.errors import ExportCenterError

# A full disk can clear (retention, an operator); the others are the usual passing I/O troubles.
_TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.EINTR, errno.EIO}
)


def classify(exc: BaseException) -> tuple[bool, str]:
    """(transient?, error code) of an exception that ended a run attempt.

    Our own errors are verdicts about the input (bad profile, missing key, ...): retrying cannot
    change them. Lost database connections, timeouts and some I/O errors can pass.
    """
    if isinstance(exc, ExportCenterError):
        return False, exc.code
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True, "ERR_EXPORT_DATABASE"
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated), "ERR_EXPORT_DATABASE"
    if isinstance(exc, TimeoutError | ConnectionError):
        return True, "ERR_EXPORT_IO"
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS, "ERR_EXPORT_IO"
    return False, "ERR_EXPORT_INTERNAL"


def backoff_seconds(run_id: str, attempt: int, *, base: float, cap: float) -> float:
    """Exponential back-off (base · 2^(attempt-1), at most ``cap``) with ±20 % jitter.

    The jitter is derived from the run id, so that runs failing together spread out while one
    run's schedule stays reproducible.
    """
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    spread = int.from_bytes(hashlib.sha256(f"{run_id}:{attempt}".encode()).digest()[:2], "big")
    return float(max(0.0, raw * (0.8 + 0.4 * spread / 0xFFFF)))
