"""The one verification report: what every offline verifier hands back, and what the CLI prints.

Both verifiers (export bundles in :mod:`export_center.bundle.verify`, devportal:offline bundles
in :mod:`export_center.devportal.verify`) report their checks by name, in the order they ran,
with a status and a detail line, plus the identity of what they verified. Exit codes stay with
the error tree (:class:`~export_center.errors.ExitCode`): a failed check is exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from export_center.errors import ExitCode

__all__ = ["CheckResult", "Status", "VerifyReport"]

#: The verified bundle's manifest model (export bundles: ``ExportManifest``).
M = TypeVar("M")

#: ``skipped`` is a check that did not apply (it says why); ``not run`` comes after a failure.
Status = Literal["pass", "fail", "skipped", "not run"]


@dataclass(frozen=True)
class CheckResult:
    """One named check and its outcome."""

    name: str
    status: Status
    detail: str = ""


@dataclass
class VerifyReport(Generic[M]):
    """The checks of one verification, in order, and what the verified bundle says it is.

    Mutable on purpose: a verifier appends each check as it runs and fills the identity fields
    as the signed documents are read, so a report cut short by a failure still shows how far
    verification got. Identity fields a verifier does not know stay ``None``.
    """

    bundle: str  # what was verified: the path, as given
    checks: list[CheckResult] = field(default_factory=list)
    root_hash: str | None = None  # "sha256:<hex>" of checksums.txt
    # export bundles (manifests/export.json)
    export_id: str | None = None
    manifest: M | None = None  # set once its signature and schema checked out
    # devportal:offline bundles (manifest.json)
    bundle_id: str | None = None
    generated_at: str | None = None
    entry_count: int | None = None

    @property
    def ok(self) -> bool:
        return all(c.status in ("pass", "skipped") for c in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.ok else ExitCode.VERIFICATION_FAILED

    @property
    def failed(self) -> CheckResult | None:
        """The first failed check, which decides the outcome."""
        return next((c for c in self.checks if c.status == "fail"), None)

    def as_json(self) -> dict[str, Any]:
        """The export verifier's JSON (``stella export verify --format json``)."""
        return {
            "bundle": self.bundle,
            "ok": self.ok,
            "exportId": self.export_id,
            "rootHash": self.root_hash,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }
