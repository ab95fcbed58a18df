"""One error tree for the whole tool, and the one table of its codes.

Every error class carries a stable ``code`` (the REST API's ``ERR_EXPORT_*`` codes), an
``exit_code`` (docs/cli.md) and an ``http_status``; subclasses inherit what they do not
redefine. Library code raises these and chains the cause with ``raise ... from``; the CLI turns
them into exit codes, the service into HTTP statuses, and :func:`error_class` turns a code that
crossed the wire (an API error body, a failed run's record) back into its class.

The classes of the service's own refusals (authentication, quotas, idempotency, ...) live here
too, so that the API client and the CLI know them without importing the web framework.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from enum import IntEnum
from functools import cache
from typing import Any, ClassVar, Self


class ExitCode(IntEnum):
    """CLI exit codes of docs/cli.md."""

    OK = 0
    UNEXPECTED = 1
    VERIFICATION_FAILED = 2
    NOT_FOUND = 3
    BAD_INPUT = 4
    OFFLINE_VIOLATION = 5
    QUOTA_OR_CONFLICT = 6


class ExportCenterError(Exception):
    """Root of every error this package raises on purpose."""

    code: ClassVar[str] = "ERR_EXPORT_INTERNAL"
    exit_code: ExitCode = ExitCode.UNEXPECTED
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message plus, when known, what the user can do about it."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    @classmethod
    def reported(cls, message: str) -> Self:
        """This error as another process reported it (an API error body, a failed run's
        record): only its message is known, so a subclass's constructor, which builds the
        message from parts, is bypassed and the message is kept as it came."""
        error = cls.__new__(cls)
        ExportCenterError.__init__(error, message)
        return error


class ConfigError(ExportCenterError):
    """Settings are missing or invalid."""

    code = "ERR_EXPORT_CONFIG"
    exit_code = ExitCode.BAD_INPUT


class BadInputError(ExportCenterError):
    """Input (a document, a profile, an argument) is malformed or invalid."""

    code = "ERR_EXPORT_BAD_INPUT"
    exit_code = ExitCode.BAD_INPUT
    http_status = 400


class DocumentRefused(BadInputError):
    """An evidence document was refused at ingestion.

    ``where`` names the file (and the record inside a multi-record file).
    """

    code = "ERR_EXPORT_DOCUMENT_REFUSED"

    # Reported by another process: the message is all there is.
    where = ""
    reason = ""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class UnsafeArchiveError(BadInputError):
    """An archive tries something hostile: traversal, links, devices, bombs, duplicates."""

    code = "ERR_EXPORT_UNSAFE_ARCHIVE"
    exit_code = ExitCode.VERIFICATION_FAILED


class NotFoundError(ExportCenterError):
    """A profile, run, record or key does not exist (or belongs to another tenant)."""

    code = "ERR_EXPORT_NOT_FOUND"
    exit_code = ExitCode.NOT_FOUND
    http_status = 404


class ConflictError(ExportCenterError):
    """The request conflicts with stored state (idempotency key reuse, generation order)."""

    code = "ERR_EXPORT_CONFLICT"
    exit_code = ExitCode.QUOTA_OR_CONFLICT
    http_status = 409


class QuotaExceededError(ExportCenterError):
    """A tenant quota is exhausted."""

    code = "ERR_EXPORT_QUOTA"
    exit_code = ExitCode.QUOTA_OR_CONFLICT
    http_status = 429


class VerificationError(ExportCenterError):
    """A hash, signature, manifest or TUF check failed. ``check`` names the failed check."""

    code = "ERR_EXPORT_VERIFICATION"
    exit_code = ExitCode.VERIFICATION_FAILED

    # Which check failed; "" when the error was reported by another process.
    check = ""

    def __init__(self, check: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{check}: {message}", hint=hint)
        self.check = check


class SigningError(ExportCenterError):
    """A key could not be loaded or used to sign."""

    code = "ERR_EXPORT_SIGNING"
    exit_code = ExitCode.BAD_INPUT


class OfflineViolationError(ExportCenterError):
    """A network call was attempted while running with ``--offline``."""

    code = "ERR_EXPORT_OFFLINE"
    exit_code = ExitCode.OFFLINE_VIOLATION


class CancelledError(ExportCenterError):
    """A run was cancelled; nothing was published."""

    code = "ERR_EXPORT_CANCELLED"
    http_status = 409


# ---- refusals of the REST API -------------------------------------------------------------


class AuthenticationError(ExportCenterError):
    """No bearer token, or one that is unknown, revoked, expired or badly signed."""

    code = "ERR_EXPORT_UNAUTHENTICATED"
    exit_code = ExitCode.BAD_INPUT
    http_status = 401


class ForbiddenError(ExportCenterError):
    """The token lacks the scope, or does not carry the tenant asked for."""

    code = "ERR_EXPORT_FORBIDDEN"
    exit_code = ExitCode.BAD_INPUT
    http_status = 403


class RunNotReadyError(ConflictError):
    """The run has no published artifact (yet): it is pending, running, failed or cancelled."""

    code = "ERR_EXPORT_NOT_READY"


class ArtifactExpiredError(NotFoundError):
    """Retention removed the run's artifact."""

    code = "ERR_EXPORT_EXPIRED"
    http_status = 410


class IdempotencyConflictError(ConflictError):
    """The Idempotency-Key was used before with another request body (or is still in flight)."""

    code = "ERR_EXPORT_IDEMPOTENCY"


class ServiceUnavailableError(ExportCenterError):
    """A dependency of the service (database, artifact store) is not usable right now, or the
    client cannot reach the server."""

    code = "ERR_EXPORT_UNAVAILABLE"
    http_status = 503


class RangeNotSatisfiableError(BadInputError):
    """A download ``Range`` starts at or past the end of the archive."""

    code = "ERR_EXPORT_RANGE_NOT_SATISFIABLE"
    http_status = 416
    size = 0  # of the archive; 0 when reported by another process

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


# The HTTP layer's own refusals (no route matched the method, the body is too large, ...):
# raised by the web framework, answered with these codes.


class MethodNotAllowedError(BadInputError):
    """The path exists, the method does not."""

    code = "ERR_EXPORT_METHOD_NOT_ALLOWED"
    http_status = 405


class NotAcceptableError(BadInputError):
    """The ``Accept`` header asks for a representation the endpoint does not have."""

    code = "ERR_EXPORT_NOT_ACCEPTABLE"
    http_status = 406


class PayloadTooLargeError(BadInputError):
    """The request body is over the endpoint's limit."""

    code = "ERR_EXPORT_TOO_LARGE"
    http_status = 413


class UnsupportedMediaTypeError(BadInputError):
    """The request body is not of a media type the endpoint reads."""

    code = "ERR_EXPORT_UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class InsecureTransportError(BadInputError):
    """An outbound request would leave over plain HTTP to a non-loopback host (or another
    scheme): refused before connecting (docs/security.md, "Registry ↔ client")."""

    code = "ERR_EXPORT_INSECURE_TRANSPORT"


# ---- the code table ---------------------------------------------------------------------------

# Modules that declare error classes with their own code besides this one. They are imported
# when the table is built, so that a code maps to its class whatever the caller imported
# (tests/core/test_errors.py checks this list against the whole package).
_DECLARING_MODULES = (
    "export_center.devportal.errors",
    "export_center.importer.service",
    "export_center.kit.apply",
    "export_center.oci.registry",
)

# The class that stands for an HTTP status when an answer carries no code of ours (a proxy's
# error page, a status the web framework raised itself).
_STATUS_CLASSES = (
    BadInputError,
    AuthenticationError,
    ForbiddenError,
    NotFoundError,
    MethodNotAllowedError,
    NotAcceptableError,
    ConflictError,
    ArtifactExpiredError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    RangeNotSatisfiableError,
    QuotaExceededError,
    ServiceUnavailableError,
)


def _subclasses(cls: type[ExportCenterError]) -> list[type[ExportCenterError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


@cache
def error_classes() -> Mapping[str, type[ExportCenterError]]:
    """Every error code, with the class that declares it.

    A subclass that does not declare its own ``code`` (``QuotaError``, ``KmsError``) shares
    its parent's, and the code stands for the parent.

    Raises:
        AssertionError: two classes declare the same code.
    """
    for module in _DECLARING_MODULES:
        importlib.import_module(module)
    table: dict[str, type[ExportCenterError]] = {}
    for cls in _subclasses(ExportCenterError):
        if "code" not in vars(cls):
            continue
        other = table.setdefault(cls.code, cls)
        assert other is cls, f"{cls.__qualname__} and {other.__qualname__} both use {cls.code}"
    return table


def error_class(code: str) -> type[ExportCenterError] | None:
    """The class of an error code; None for a code this build does not know."""
    return error_classes().get(code)


def error_class_for_status(status: int) -> type[ExportCenterError]:
    """The class an HTTP error status stands for when no code says more
    (:class:`ExportCenterError` for any other status)."""
    for cls in _STATUS_CLASSES:
        if cls.http_status == status:
            return cls
    return ExportCenterError


def _reason(e: OSError) -> str:
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


def input_error(path: object, what: str, cause: OSError) -> ExportCenterError:
    """The error for an input file or directory that cannot be read: a missing one is
    :class:`NotFoundError` (exit 3, as for any missing input), anything else (a directory
    where a file is expected, no permission, a loop of links) :class:`BadInputError`.

    ``what`` says what the path was meant to be ("trust roots", "profile file").
    """
    import errno

    message = f"{path}: cannot read {what}: {_reason(cause)}"
    if cause.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFoundError(message)
    if cause.errno == errno.EISDIR:
        return BadInputError(f"{path}: cannot read {what}: a directory, not a file")
    return BadInputError(message)


def output_error(path: object, what: str, cause: OSError) -> ExportCenterError:
    """The error for an output path that cannot be created or written (``--out`` naming a
    file, a read-only or pseudo file system): bad input (exit 4), except a full disk, which
    is no fault of the input (exit 1)."""
    import errno

    message = f"{path}: cannot write {what}: {_reason(cause)}"
    if cause.errno == errno.EEXIST:
        message = f"{path}: cannot write {what}: a file is in the way (expected a directory)"
    if cause.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExportCenterError(message)
    return BadInputError(message)


def missing_extra(extra: str, what: str, cause: ImportError) -> ConfigError:
    """The error for a feature whose optional dependencies are not installed.

    The base install is the air-gapped verifier/importer; the service, PostgreSQL and HSM
    support are extras (``pip install 'stella-export-center[service]'`` and so on).
    """
    return ConfigError(
        f"{what} needs the '{extra}' extra, which is not installed ({cause.name or cause})",
        hint=f"pip install 'stella-export-center[{extra}]'",
    )
