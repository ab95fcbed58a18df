"""External programs the tests use (Debian packages that .ci/run installs)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
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


TESTS_DIR = Path(__file__).resolve().parents[1]


def support_module_cmd(module: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Command and environment that run ``support.<module>`` as a script in a child process
    (for work that needs a process of its own), with ``tests/`` importable there."""
    path = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", f"support.{module}"], {**env, "PYTHONPATH": path}
