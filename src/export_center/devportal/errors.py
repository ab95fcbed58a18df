"""The devportal error root: what the builder refuses, and why.

Every refusal names the offending file (and line, where there is one) so that the portal's
authors can fix it; all of them are :class:`~export_center.errors.BadInputError` (exit code 4).
Verification failures are the project's :class:`~export_center.errors.VerificationError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from export_center.errors import BadInputError

__all__ = ["AssetFinding", "DevportalInputError", "ExternalAssetError", "InvalidSpecError"]


class DevportalInputError(BadInputError):
    """The input tree of a devportal:offline bundle is unusable."""

    code = "ERR_EXPORT_DEVPORTAL_INPUT"


@dataclass(frozen=True)
class AssetFinding:
    """One place where a portal file would load something from the network."""

    path: str  # bundle-relative, e.g. "portal/css/site.css"
    line: int  # 1-based
    url: str
    what: str  # e.g. "CSS url()", "<script src>"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what} loads {self.url}"


class ExternalAssetError(DevportalInputError):
    """A portal page, style sheet or script loads a resource from http(s):// or //host."""

    code = "ERR_EXPORT_DEVPORTAL_EXTERNAL_ASSET"

    def __init__(self, findings: Sequence[AssetFinding]) -> None:
        shown = "\n  ".join(str(f) for f in findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        super().__init__(
            f"the portal loads external resources (it must work offline):\n  {shown}{more}",
            hint="copy the resource into portal/ and reference it by a relative path",
        )
        self.findings = tuple(findings)


class InvalidSpecError(DevportalInputError):
    """A file under ``specs/`` is not a valid OpenAPI document."""

    code = "ERR_EXPORT_DEVPORTAL_INVALID_SPEC"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
