"""External programs the tests use (Debian packages that .ci/run installs)."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str) -> NoReturn:
    """A required tool or service is absent: a failure in CI, a skip (with the reason) elsewhere.

    In CI a missing tool is a broken environment; letting it skip would turn real checks into
    silent passes.
    """
    if IN_CI:
        pytest.fail(f"{what} is required in CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed")


def need_tool(name: str, package: str | None = None) -> str:
    """The absolute path of program ``name`` on PATH, else :func:`missing`."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} (Debian package {package or name})")
    return path
