"""Errors only the service raises, under the package's one error tree (``export_center.errors``).

The HTTP status of every error lives in :mod:`export_center.service.app` only; the CLI maps the
same classes to exit codes through ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from export_center.errors import (
    BadInputError,
    ConflictError,
    ExitCode,
    ExportCenterError,
    NotFoundError,
    QuotaExceededError,
)


class AuthenticationError(ExportCenterError):
    """No bearer token, or one that is unknown, revoked, expired or badly signed."""

    code = "ERR_EXPORT_UNAUTHENTICATED"
    exit_code = ExitCode.BAD_INPUT


class ForbiddenError(ExportCenterError):
    """The token lacks the scope, or does not carry the tenant asked for."""

    code = "ERR_EXPORT_FORBIDDEN"
    exit_code = ExitCode.BAD_INPUT


class RunNotReadyError(ConflictError):
    """The run has no published artifact (yet): it is pending, running, failed or cancelled."""

    code = "ERR_EXPORT_NOT_READY"


class ArtifactExpiredError(NotFoundError):
    """Retention removed the run's artifact."""

    code = "ERR_EXPORT_EXPIRED"


class IdempotencyConflictError(ConflictError):
    """The Idempotency-Key was used before with another request body (or is still in flight)."""

    code = "ERR_EXPORT_IDEMPOTENCY"


class ServiceUnavailableError(ExportCenterError):
    """A dependency of the service (database, artifact store) is not usable right now."""

    code = "ERR_EXPORT_UNAVAILABLE"


class RangeNotSatisfiableError(BadInputError):
    """A download ``Range`` starts at or past the end of the archive."""

    code = "ERR_EXPORT_RANGE_NOT_SATISFIABLE"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class QuotaError(QuotaExceededError):
    """A quota refusal with the numbers the HTTP layer turns into headers."""

    def __init__(
        self,
        message: str,
        *,
        quota: str,
        limit: int,
        remaining: int,
        reset_seconds: int,
        retry_after: int,
    ) -> None:
        super().__init__(message, hint=f"wait {retry_after} s or ask for a higher {quota} quota")
        self.quota = quota
        self.limit = limit
        self.remaining = remaining
        self.reset_seconds = reset_seconds
        self.retry_after = retry_after


class RequestValidationFailed(BadInputError):
    """A request did not match the API schema; ``details`` names each bad field."""

    def __init__(self, message: str, details: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.details = [dict(d) for d in details]
