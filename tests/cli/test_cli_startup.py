"""``stella`` starts without importing its commands: the lazy table in ``cli/main.py``.

Timings belong to the benchmark (bench/suites.py, suite ``cli``); these tests pin what makes
start-up cheap (no command module, no database or web library imported for ``--help`` and
``--version``) and that every table entry leads to a working command.
"""

from __future__ import annotations

import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import export_center.cli
from export_center import TOOL_NAME, __version__
from export_center.cli import main
from export_center.errors import ExitCode

STELLA = str(Path(sys.executable).with_name("stella"))

# What `stella --help` and `stella --version` must not pay for.
HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "httpx", "pydantic", "yaml", "orjson")
HEAVY_OURS = ("export_center.store", "export_center.service", "export_center.settings")

# Runs the real entry point, then records what it imported (its exit is a SystemExit).
WRAPPER = """
import json, sys
out, sys.argv = sys.argv[1], ["stella", *sys.argv[2:]]
from export_center.cli.main import main
try:
    main()
finally:
    with open(out, "w") as fh:
        json.dump(sorted(sys.modules), fh)
"""


def _run_recording_imports(args: list[str], tmp_path: Path) -> tuple[int, str, list[str]]:
    record = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(record), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
    )
    return proc.returncode, proc.stdout, json.loads(record.read_text())


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["--help"], ExitCode.OK, id="help"),
        pytest.param(["--version"], ExitCode.OK, id="version"),
        pytest.param([], ExitCode.BAD_INPUT, id="no-arguments"),  # help, and a usage error
    ],
)
def test_top_level_imports_no_command(args: list[str], code: int, tmp_path: Path) -> None:
    rc, _, modules = _run_recording_imports(args, tmp_path)
    assert rc == code
    heavy = [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY_OURS)]
    assert heavy == []
    ours = {m for m in modules if m.startswith("export_center.cli.")}
    assert ours == {"export_center.cli.main"}


def test_help_lists_every_command_from_the_table(tmp_path: Path) -> None:
    rc, out, _ = _run_recording_imports(["--help"], tmp_path)
    assert rc == 0
    assert "Usage: stella [OPTIONS] COMMAND [ARGS]..." in out
    panel = out.split("─ Commands ─")[1].splitlines()
    # Each command's row starts with its name; a wrapped help line starts with spaces.
    listed = [line[2:].split()[0] for line in panel if line.startswith("│ ") and line[2] != " "]
    assert listed == [e.name for e in main.COMMANDS]
    for entry in main.COMMANDS:
        assert f"{entry.name:<10} {entry.help}" in out


def test_version() -> None:
    proc = subprocess.run([STELLA, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == f"{TOOL_NAME} {__version__}\n"
    assert TOOL_NAME == "stella-export-center"


@pytest.mark.parametrize("entry", main.COMMANDS, ids=lambda e: e.name)
def test_every_command_loads_and_helps(entry: main.Entry) -> None:
    command = main.load_command(entry)
    assert command.name == entry.name
    # The table's line is what the command's own help starts with (its first paragraph).
    first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
    assert first == entry.help
    result = CliRunner().invoke(main.app, [entry.name, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert f"Usage: stella {entry.name} [OPTIONS]" in result.stdout


def test_every_command_module_is_in_the_table() -> None:
    modules = {m.name for m in pkgutil.iter_modules(export_center.cli.__path__)}
    plumbing = {"main", "common", "remote"}
    assert {e.module for e in main.COMMANDS} == modules - plumbing


def test_airgap_has_trivy_install() -> None:
    result = CliRunner().invoke(main.app, ["airgap", "trivy-install", "--help"])
    assert result.exit_code == 0, result.output
    assert "--cache-dir" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus"], "stella: no such command 'bogus'."),
        (["exprt"], "stella: no such command 'exprt'. Did you mean 'export'?"),
        (["export", "bogus"], "stella export: no such command 'bogus'."),
        (["--bogus"], "stella: no such option: --bogus"),
    ],
)
def test_usage_errors_exit_4(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    assert main.run_app(main.app) == ExitCode.BAD_INPUT == 4
    # The one error shape (docs/cli.md): the error, then what to read.
    assert capsys.readouterr().err.splitlines() == [
        f"error: {message}",
        f"  hint: see '{' '.join(['stella', *args[:-1]])} --help'",
    ]
