"""``stella keys``: generate, list and export-public through the ``stella`` app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from export_center.cli import main
from export_center.errors import ExitCode
from export_center.signing.interface import keyid_of, load_public_key


@pytest.fixture
def app() -> typer.Typer:
    return main.app


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"STELLA_DATA_DIR": str(tmp_path / "data"), "STELLA_CONFIG": ""}


def run(app: typer.Typer, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Through ``run_app``, which maps our errors to the spec's exit codes."""
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    return main.run_app(app)


def test_generate_list_export(app: typer.Typer, env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["keys", "generate", "--type", "ecdsa-p256"], env=env)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["keys", "generate", "--format", "json"], env=env)
    assert second.exit_code == 0, second.output
    made = json.loads(second.stdout)
    assert made["type"] == "ed25519" and made["seq"] == 2 and not made["encrypted"]
    key_dir = tmp_path / "data" / "keys"
    assert Path(made["privateKey"]) == key_dir / f"{made['keyid']}.key.pem"
    first_keyid = first.stdout.split()[1]
    assert f"private key  {key_dir / first_keyid}.key.pem" in first.stdout

    listed = runner.invoke(app, ["keys", "list", "--format", "json"], env=env)
    assert [k["keyid"] for k in json.loads(listed.stdout)] == [first_keyid, made["keyid"]]
    table = runner.invoke(app, ["keys", "list"], env=env)
    assert first_keyid[:16] in table.stdout and made["keyid"][:16] in table.stdout
    # Both went to the default tenant; the newer is its default signer.
    assert made["tenants"] == ["default"] and table.stdout.count("default *") == 1

    exported = runner.invoke(app, ["keys", "export-public", made["keyid"][:10]], env=env)
    assert exported.exit_code == 0
    assert exported.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert keyid_of(load_public_key(exported.stdout.encode())) == made["keyid"]


def test_generate_with_passphrase_env_and_out_dir(
    app: typer.Typer, env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "elsewhere"
    result = runner.invoke(
        app,
        ["keys", "generate", "--out", str(out), "--passphrase-env", "MY_PASS", "--format", "json"],
        env={**env, "MY_PASS": "s3cret"},
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["encrypted"]
    # The key pair lives in the data directory's key store (the newest key signs) ...
    listed = runner.invoke(app, ["keys", "list", "--format", "json"], env=env)
    assert [k["keyid"] for k in json.loads(listed.stdout)] == [info["keyid"]]
    # ... and --out got a copy of both PEM files, still encrypted, private key 0600.
    copied_private = out / f"{info['keyid']}.key.pem"
    assert (out / f"{info['keyid']}.pub.pem").is_file()
    assert copied_private.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in copied_private.read_bytes()


def test_exit_codes(
    app: typer.Typer,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert run(app, ["keys", "generate"], monkeypatch) == 0
    assert run(app, ["keys", "export-public", "abcdef"], monkeypatch) == ExitCode.NOT_FOUND
    assert "no key 'abcdef'" in capsys.readouterr().err
    monkeypatch.delenv("UNSET_VAR", raising=False)
    code = run(app, ["keys", "generate", "--passphrase-env", "UNSET_VAR"], monkeypatch)
    assert code == ExitCode.BAD_INPUT
    assert "UNSET_VAR: the variable is unset or empty" in capsys.readouterr().err
    assert run(app, ["keys", "list", "--format", "xml"], monkeypatch) == ExitCode.BAD_INPUT
    assert "'--format': 'xml': choose table or json" in capsys.readouterr().err


def test_unknown_key_type_is_a_usage_error(app: typer.Typer, env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["keys", "generate", "--type", "rsa"], env=env)
    assert result.exit_code != 0
    assert "Invalid value for '--type'" in result.output and "'rsa'" in result.output


def test_list_empty(app: typer.Typer, env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["keys", "list", "--format", "json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = CliRunner().invoke(app, ["keys", "list"], env=env)
    assert "no keys in" in result.stdout
