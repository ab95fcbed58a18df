"""One error tree for the whole tool.

Every error carries a stable ``code`` (the REST API's ``ERR_EXPORT_*`` codes) and an
``exit_code`` (export-center.md §7). Only the CLI and the service map errors to exit codes or
HTTP statuses; library code raises these and chains the cause with ``raise ... from``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """CLI exit codes of export-center.md §7."""

    OK = 0
    UNEXPECTED = 1
    VERIFICATION_FAILED = 2
    NOT_FOUND = 3
    BAD_INPUT = 4
    OFFLINE_VIOLATION = 5
    QUOTA_OR_CONFLICT = 6


class ExportCenterError(Exception):
    """Root of every error this package raises on purpose."""

    code = "ERR_EXPORT_INTERNAL"
    exit_code = ExitCode.UNEXPECTED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message plus, when known, what the user can do about it."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(ExportCenterError):
    """Settings are missing or invalid."""

    code = "ERR_EXPORT_CONFIG"
    exit_code = ExitCode.BAD_INPUT


class BadInputError(ExportCenterError):
    """Input (a document, a profile, an argument) is malformed or invalid."""

    code = "ERR_EXPORT_BAD_INPUT"
    exit_code = ExitCode.BAD_INPUT


class DocumentRefused(BadInputError):
    """An evidence document was refused at ingestion.

    ``where`` names the file (and the record inside a multi-record file).
    """

    code = "ERR_EXPORT_DOCUMENT_REFUSED"

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


class ConflictError(ExportCenterError):
    """The request conflicts with stored state (idempotency key reuse, generation order)."""

    code = "ERR_EXPORT_CONFLICT"
    exit_code = ExitCode.QUOTA_OR_CONFLICT


class QuotaExceededError(ExportCenterError):
    """A tenant quota is exhausted."""

    code = "ERR_EXPORT_QUOTA"
    exit_code = ExitCode.QUOTA_OR_CONFLICT


class VerificationError(ExportCenterError):
    """A hash, signature, manifest or TUF check failed. ``check`` names the failed check."""

    code = "ERR_EXPORT_VERIFICATION"
    exit_code = ExitCode.VERIFICATION_FAILED

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
