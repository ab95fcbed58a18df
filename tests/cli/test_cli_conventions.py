"""The CLI-wide conventions of cli/main.py and cli/common.py (docs/cli.md).

Global ``--format`` before or after the command; ``--offline`` refusing the network with exit
code 5 and undone when the command ends; user data printed as it is (no Rich markup read in
it); readable help (no ``<str>``); the error shape of ``run_app``; the demo's shell hint.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from export_center import netpolicy
from export_center.cli import common, main
from export_center.errors import ExitCode, OfflineViolationError
from support.cli import run_cli

STELLA = str(Path(sys.executable).with_name("stella"))
SRC = Path(__file__).resolve().parents[2] / "src" / "export_center"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("STELLA_DATA_DIR", str(data))
    monkeypatch.setenv("STELLA_CONFIG", "")
    for name in ("STELLA_OFFLINE", "STELLA_DEBUG", "STELLA_SERVER", "STELLA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return data


run = run_cli


# ---- --format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "json_out"),
    [
        (["keys", "list"], False),
        (["--format", "json", "keys", "list"], True),
        (["keys", "list", "--format", "json"], True),
        (["--format", "json", "keys", "list", "--format", "table"], False),  # the nearer wins
        (["--format=json", "evidence", "stats"], True),
    ],
)
def test_format_before_or_after_the_command(
    args: list[str],
    json_out: bool,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(args, monkeypatch) == ExitCode.OK
    out = capsys.readouterr().out
    if json_out:
        json.loads(out)
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(out)


def test_format_is_read_by_commands_that_do_not_declare_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `export profile archive` has no --format of its own: it still accepts (and validates) it.
    seen: list[str] = []
    monkeypatch.setattr(
        "export_center.cli.export.profiles._registry",
        lambda: seen.append(common.output_format()) or _NoRegistry(),
    )
    assert run(["export", "profile", "archive", "x-y-z", "--format", "json"], monkeypatch) == 0
    assert run(["--format", "json", "export", "profile", "archive", "x-y-z"], monkeypatch) == 0
    assert run(["export", "profile", "archive", "x-y-z"], monkeypatch) == 0
    assert seen == ["json", "json", "table"]  # and no leak from one run to the next


class _NoRegistry:
    def archive(self, tenant: str, name: str) -> None:
        del tenant, name


# ---- --offline --------------------------------------------------------------------------------


def test_offline_refuses_every_request_naming_the_host() -> None:
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(200))
    restore = netpolicy.go_offline()
    try:
        with netpolicy.http_client(transport=transport) as client:
            with pytest.raises(OfflineViolationError, match=r"registry\.example\.com"):
                client.get("https://registry.example.com/v2/")
            with pytest.raises(OfflineViolationError, match=r"127\.0\.0\.1"):
                client.get("http://127.0.0.1:5000/v2/")  # loopback too: offline is no HTTP
        with pytest.raises(OfflineViolationError, match=r"api\.example\.com.*the server"):
            netpolicy.http_client(base_url="https://api.example.com", transport=transport)
    finally:
        restore()
    assert calls == []  # refused before the transport saw anything
    assert not netpolicy.is_offline()
    with netpolicy.http_client(transport=transport) as client:
        assert client.get("https://registry.example.com/v2/").status_code == 200
    assert len(calls) == 1


def test_no_module_builds_its_own_http_client() -> None:
    """netpolicy.http_client is the one place: a client built elsewhere would ignore --offline."""
    builders = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"\bhttpx\.(Client|AsyncClient|HTTPTransport)\(", path.read_text())
    }
    assert builders == {"netpolicy.py"}


@pytest.mark.parametrize(
    "args",
    [
        [
            "--offline",
            "airgap",
            "verify-bundle",
            "oci://127.0.0.1:9/m/x:1",
            "--trust-roots",
            "{pem}",
        ],
        ["airgap", "import", "oci://127.0.0.1:9/m/x:1", "--trust-roots", "{pem}", "--offline"],
        [
            "export",
            "profile",
            "list",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--offline",
        ],
    ],
)
def test_offline_is_exit_5_and_ends_with_the_command(
    args: list[str],
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from export_center.signing.interface import KeyType
    from export_center.signing.keystore import KeyStore

    keys = KeyStore(data_dir / "keys")
    pem = tmp_path / "trusted.pem"
    pem.write_bytes(keys.export_public(keys.generate(KeyType.ED25519).keyid))
    argv = [a.replace("{pem}", str(pem)) for a in args]
    assert run(argv, monkeypatch) == ExitCode.OFFLINE_VIOLATION == 5
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: network access to 127.0.0.1 refused: --offline is set")
    assert err[1].startswith("  hint: drop --offline")
    assert not netpolicy.is_offline()


def test_offline_from_the_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STELLA_OFFLINE", "1")
    args = ["export", "profile", "list", "--server", "http://127.0.0.1:9", "--token", "t"]
    assert run(args, monkeypatch) == ExitCode.OFFLINE_VIOLATION


# ---- output: user data is printed as it is ---------------------------------------------------


def test_brackets_in_user_data_are_printed_verbatim(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = str(tmp_path / "a[1].json")
    assert run(["ingest", name, "--source", "s"], monkeypatch) == ExitCode.NOT_FOUND
    assert capsys.readouterr().err == f"error: {name}: no such file or directory\n"
    common.print_error("needs [bold]x[/bold]", "pip install 'stella-export-center[service]'")
    assert capsys.readouterr().err == (
        "error: needs [bold]x[/bold]\n  hint: pip install 'stella-export-center[service]'\n"
    )


def test_check_lines_keep_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from export_center.verification import CheckResult

    common.print_checks([CheckResult("contents", "fail", "data/[red]x[/red].jsonl: differs")])
    assert capsys.readouterr().out == f"FAIL {'contents':<20} data/[red]x[/red].jsonl: differs\n"


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    common.print_error("first\nsecond\n\n  third", "a\nb")
    assert capsys.readouterr().err == "error: first; second; third\n  hint: a; b\n"


# ---- run_app: never a traceback --------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_exit_1(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(_self: object, _tenant: str | None = None) -> None:
        raise RuntimeError("the disk is made of cheese")

    monkeypatch.setattr("export_center.store.repository.EvidenceStore.stats", boom)
    assert run(["evidence", "stats"], monkeypatch) == ExitCode.UNEXPECTED
    assert capsys.readouterr().err.splitlines() == [
        "error: unexpected RuntimeError: the disk is made of cheese",
        "  hint: this is a bug; `stella --debug ...` prints the traceback to report it",
    ]
    assert run(["--debug", "evidence", "stats"], monkeypatch) == ExitCode.UNEXPECTED
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "cheese" in err


@pytest.mark.parametrize(
    ("errno_name", "code"),
    [("ENOENT", ExitCode.NOT_FOUND), ("EACCES", ExitCode.BAD_INPUT), ("EIO", 1)],
)
def test_a_stray_os_error_names_its_path(
    errno_name: str,
    code: int,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno

    number = getattr(errno, errno_name)

    def fail(_self: object, _tenant: str | None = None) -> None:
        raise OSError(number, os.strerror(number), "/some/where")

    monkeypatch.setattr("export_center.store.repository.EvidenceStore.stats", fail)
    assert run(["evidence", "stats"], monkeypatch) == code
    assert capsys.readouterr().err == f"error: /some/where: {os.strerror(number)}\n"


# ---- help ---------------------------------------------------------------------------------------


def _leaf_names() -> Iterator[list[str]]:
    from typer.core import TyperGroup

    def walk(path: list[str], command: object) -> Iterator[list[str]]:
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk([*path, name], sub)
        else:
            yield path

    for entry in main.COMMANDS:
        yield from walk([entry.name], main.load_command(entry))


def test_help_shows_readable_value_names() -> None:
    """No Typer type labels (<str>, <list[Path]>, <bool>) in any help page."""
    leaves = list(_leaf_names())
    for page in [[], *([e.name] for e in main.COMMANDS), *leaves]:
        result = CliRunner().invoke(main.app, [*page, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (page, result.output)
        labels = re.findall(r"<(?:str|int|float|bool|path|list\[)", result.stdout)
        assert labels == [], (page, result.stdout)
        if page in leaves or not page:  # the global options, on every command
            assert "--format" in result.stdout and "--offline" in result.stdout, page


def test_help_of_one_command() -> None:
    result = CliRunner().invoke(main.app, ["ingest", "--help"], env={"COLUMNS": "200"})
    rows = dict(re.findall(r"(--[a-z-]+) +(\S+)", result.stdout))
    assert "Usage: stella ingest [OPTIONS] {PATHS}..." in result.stdout
    assert rows["--source"] == "TEXT"
    assert rows["--tenant"] == "TENANT"
    assert rows["--format"] == "table|json"
    assert rows["--offline"] == "Refuse"  # a flag: no value name, its help follows


# ---- the demo's hint, pasted into a shell --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_hint_works_when_pasted(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    env |= {"STELLA_DATA_DIR": str(tmp_path / "data"), "STELLA_CONFIG": ""}
    proc = subprocess.Popen(
        [STELLA, "serve", "--demo", "--no-worker", "--port", str(port), "--log-level", "error"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not any(line.lstrip().startswith("curl ") for line in lines):
            line = proc.stderr.readline()
            assert line, f"serve --demo ended early: {lines}"
            lines.append(line.rstrip("\n"))
        export = next(line.strip() for line in lines if line.strip().startswith("export TOKEN="))
        curl = next(line.strip() for line in lines if line.strip().startswith("curl "))
        token = shlex.split(export)[1].removeprefix("TOKEN=")
        # What a shell makes of the two lines: curl's arguments, one per line.
        as_printf = curl.replace("curl ", "printf '%s\\n' ", 1)
        script = f"{export}\n{as_printf}\n"
        argv = subprocess.run(
            ["sh", "-c", script], capture_output=True, text=True, check=True, timeout=30
        ).stdout.splitlines()
        assert argv[:2] == ["-H", f"Authorization: Bearer {token}"]
        url = argv[2]
        assert url == f"http://127.0.0.1:{port}/api/export/profiles"
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo server did not start"
                time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        assert "demo-raw" in answer.text or answer.json()["items"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- import refusals: the checks that ran, the reason once ----------------------------------


def test_an_import_refusal_is_said_once(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from export_center.signing.interface import KeyType
    from export_center.signing.keystore import KeyStore

    keys = KeyStore(data_dir / "keys")
    pem = tmp_path / "trusted.pem"
    pem.write_bytes(keys.export_public(keys.generate(KeyType.ED25519).keyid))
    bundle = tmp_path / "not-a-bundle.tar.zst"
    bundle.write_bytes(b"\x00not an archive\x00" * 64)
    args = ["airgap", "import", str(bundle), "--trust-roots", str(pem)]
    assert run(args, monkeypatch) == ExitCode.VERIFICATION_FAILED
    out, err = capsys.readouterr()
    # stdout: the checks that ran, up to the failed one; none of the ones that did not run.
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["SKIP", "archive-digest"],
        ["SKIP", "archive-signature"],
        ["FAIL", "safe-read"],
    ]
    # stderr: the reason once, naming the bundle as given (not the private copy), and where
    # the refused bundle was kept.
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(f"error: safe-read: {bundle}: not a tar"), err
    assert lines[1].startswith(f"  hint: refusal recorded in {data_dir / 'quarantine'}/"), err
    assert "safe-read: safe-read" not in out + err
