"""The one verification report: outcome, exit code, first failure and the export JSON."""

from __future__ import annotations

import dataclasses

import pytest

from export_center.errors import ExitCode
from export_center.verification import CheckResult, VerifyReport


def test_passed_and_skipped_checks_are_ok() -> None:
    report = VerifyReport(bundle="b.tar.zst")
    report.checks += [CheckResult("archive-digest", "skipped", "skipped: no sidecar")]
    report.checks += [CheckResult("safe-read", "pass", "3 files")]
    assert report.ok and report.exit_code == ExitCode.OK and report.failed is None


def test_the_first_failure_decides() -> None:
    report = VerifyReport(bundle="b.tar.zst", export_id="exp-1", root_hash="sha256:00")
    report.checks += [
        CheckResult("safe-read", "pass", "3 files"),
        CheckResult("checksums", "fail", "a: sha256 does not match checksums.txt"),
        CheckResult("manifest-signature", "not run"),
    ]
    assert not report.ok
    assert report.exit_code == ExitCode.VERIFICATION_FAILED
    assert report.failed == report.checks[1]
    assert report.as_json() == {
        "bundle": "b.tar.zst",
        "ok": False,
        "exportId": "exp-1",
        "rootHash": "sha256:00",
        "checks": [
            {"name": "safe-read", "status": "pass", "detail": "3 files"},
            {
                "name": "checksums",
                "status": "fail",
                "detail": "a: sha256 does not match checksums.txt",
            },
            {"name": "manifest-signature", "status": "not run", "detail": ""},
        ],
    }


def test_a_check_result_is_a_value() -> None:
    check = CheckResult("dsse", "pass", "signed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        check.status = "fail"  # type: ignore[misc]
