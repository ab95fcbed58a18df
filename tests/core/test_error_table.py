"""The one error table: unique codes, the code table of docs/api.md, and the API client's
mapping of codes back to classes (without the web framework)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import export_center
from export_center import errors
from export_center.errors import (
    ConflictError,
    ExitCode,
    ExportCenterError,
    NotFoundError,
    QuotaError,
    QuotaExceededError,
    RangeNotSatisfiableError,
    VerificationError,
    error_class,
    error_class_for_status,
    error_classes,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _all_error_classes() -> list[type[ExportCenterError]]:
    for info in pkgutil.walk_packages(export_center.__path__, "export_center."):
        if ".store.migrations" not in info.name:
            importlib.import_module(info.name)
    return errors._subclasses(ExportCenterError)


def test_codes_are_unique_and_their_modules_listed() -> None:
    declared = [c for c in _all_error_classes() if "code" in vars(c)]
    codes = [c.code for c in declared]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(re.fullmatch(r"ERR_EXPORT_[A-Z_]+", code) for code in codes)
    # The table finds every declaring class, whatever was imported: their modules are listed.
    outside = {c.__module__ for c in declared} - {"export_center.errors"}
    assert outside == set(errors._DECLARING_MODULES)
    assert {c.code: c for c in declared} == dict(error_classes())


def test_codes_map_back_to_classes() -> None:
    assert error_class("ERR_EXPORT_NOT_FOUND") is NotFoundError
    assert error_class("ERR_EXPORT_QUOTA") is QuotaExceededError  # QuotaError shares it
    assert QuotaError.code == "ERR_EXPORT_QUOTA"
    assert error_class("ERR_EXPORT_WORKER_LOST") is None  # a run's code outside the tree
    assert error_class_for_status(409) is ConflictError
    assert error_class_for_status(502) is ExportCenterError


def test_reported_errors_keep_the_message() -> None:
    err = VerificationError.reported("server answered 500 ERR_EXPORT_VERIFICATION: bad")
    assert (err.message, err.check, err.exit_code) == (
        "server answered 500 ERR_EXPORT_VERIFICATION: bad",
        "",
        ExitCode.VERIFICATION_FAILED,
    )
    assert RangeNotSatisfiableError.reported("past the end").size == 0


def test_docs_code_table_matches_the_tree() -> None:
    rows = re.findall(
        r"^\| `(ERR_EXPORT_[A-Z_]+)` \| (\d{3}) \| .* \| (\d) \|$",
        DOCS.read_text(),
        flags=re.MULTILINE,
    )
    assert len(rows) >= 13
    for code, status, exit_code in rows:
        cls = error_class(code)
        assert cls is not None, code
        assert (cls.http_status, int(cls.exit_code)) == (int(status), int(exit_code)), code


@pytest.mark.parametrize("module", ["export_center.client"])
def test_client_imports_no_web_framework(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "from export_center.errors import error_classes\n"
        "error_classes()\n"
        "web = {'fastapi', 'starlette', 'uvicorn'}\n"
        "ours = ('export_center.service', 'export_center.runtime', 'export_center.worker')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in web or m.startswith(ours))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
