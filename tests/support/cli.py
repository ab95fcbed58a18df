"""Running ``stella`` in the test process, as a user's shell would (through ``run_app``, which
maps errors to exit codes and prints the one error line)."""

from __future__ import annotations

import sys

import pytest

from export_center.cli import main


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``stella ARGS``; its exit code."""
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    return main.run_app(main.app)


def run_cli_captured(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``stella ARGS``; its exit code, stdout and stderr."""
    code = run_cli(args, monkeypatch)
    out = capsys.readouterr()
    return code, out.out, out.err
