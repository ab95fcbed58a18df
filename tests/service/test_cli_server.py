"""The CLI against a server: `stella export ... --server URL --token T`, `stella tokens`."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from fastapi import FastAPI

from export_center.cli import main
from export_center.client import ApiClient
from export_center.errors import ExitCode, VerificationError
from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.service.auth import TokenStore
from export_center.settings import Settings
from export_center.signing.keystore import KeyStore
from export_center.worker.runtime import WorkerRuntime
from support.service import LiveServer, World, wait_for


@pytest.fixture
def cli() -> typer.Typer:
    return main.app


@pytest.fixture
def live(app: FastAPI, worker: WorkerRuntime) -> Iterator[LiveServer]:
    server = LiveServer.start(app)
    yield server
    server.stop()


def run(cli: typer.Typer, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    return main.run_app(cli)


@pytest.fixture
def local_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STELLA_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("STELLA_CONFIG", raising=False)
    monkeypatch.delenv("STELLA_SERVER", raising=False)
    monkeypatch.delenv("STELLA_TOKEN", raising=False)


def test_tokens_commands(
    cli: typer.Typer,
    services: Services,
    local_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["tokens", "create", "--tenant", "acme", "--scope", "export:read", "--format", "json"]
    assert run(cli, args, monkeypatch) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("stl_")
    assert TokenStore(services.store).verify(created["token"]).tenants == {"acme"}
    assert run(cli, ["tokens", "list", "--format", "json"], monkeypatch) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]
    assert run(cli, ["tokens", "revoke", created["id"]], monkeypatch) == 0
    bad = ["tokens", "create", "--tenant", "acme", "--scope", "export:everything"]
    assert run(cli, bad, monkeypatch) == ExitCode.BAD_INPUT
    assert "unknown scope" in capsys.readouterr().err


def test_profile_run_watch_download_through_the_server(
    cli: typer.Typer,
    live: LiveServer,
    world: World,
    tmp_path: Path,
    local_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STELLA_SERVER", live.url)
    monkeypatch.setenv("STELLA_TOKEN", world.acme)
    remote = ["--format", "json"]
    assert (
        run(
            cli,
            ["export", "profile", "create", "cli-made", "--kind", "json", "--variant", "raw"],
            monkeypatch,
        )
        == 0
    )
    assert "created profile cli-made r1" in capsys.readouterr().out
    assert (
        run(cli, ["export", "profile", "revise", "cli-made", "--compression", "gzip"], monkeypatch)
        == 0
    )
    assert "is at r2" in capsys.readouterr().out
    assert run(cli, ["export", "profile", "list", *remote], monkeypatch) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)["items"]]
    assert names == ["acme-json", "cli-made"]
    assert run(cli, ["export", "plan", "cli-made"], monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"advisory": 30}

    out = tmp_path / "bundles"
    code = run(
        cli, ["export", "run", "cli-made", "--wait", "--out", str(out), *remote], monkeypatch
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    saved = Path(result["downloaded"])
    assert saved.parent == out and saved.name.endswith(".tar.gz")
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == result["artifact"]["sha256"]

    assert run(cli, ["export", "watch", result["id"], *remote], monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"

    # Queue without waiting, then follow it and download it separately.
    assert run(cli, ["export", "run", "acme-json", *remote], monkeypatch) == 0
    queued = json.loads(capsys.readouterr().out)
    assert queued["status"] == "pending"
    assert run(cli, ["export", "watch", queued["id"]], monkeypatch) == 0
    assert (
        run(cli, ["export", "download", queued["id"], "--out", str(tmp_path / "dl")], monkeypatch)
        == 0
    )
    assert "saved as" in capsys.readouterr().out

    # Errors keep their exit codes across the wire.
    assert run(cli, ["export", "run", "no-such-profile"], monkeypatch) == ExitCode.NOT_FOUND
    assert run(cli, ["export", "watch", "no-such-run"], monkeypatch) == ExitCode.NOT_FOUND
    monkeypatch.setenv("STELLA_TOKEN", "stl_wrong")
    assert run(cli, ["export", "profile", "list"], monkeypatch) == ExitCode.BAD_INPUT
    monkeypatch.delenv("STELLA_TOKEN")
    assert run(cli, ["export", "profile", "list"], monkeypatch) == ExitCode.BAD_INPUT
    assert "--token" in capsys.readouterr().err


def test_failed_remote_run_exit_code(
    cli: typer.Typer,
    live: LiveServer,
    services: Services,
    world: World,
    local_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = KeyStore.from_settings(services.settings)
    (key,) = keys.tenant_keys("acme")
    spec = parse_profile_spec({"kind": "json", "variant": "raw", "signing": {"key": key.keyid}})
    services.registry.create("acme", "no-key", spec)
    # The operator takes the key away after the revision was written: the run fails.
    keys.unassign(key.keyid, "acme")
    args = ["export", "run", "no-key", "--wait", "--server", live.url, "--token", world.acme]
    assert run(cli, args, monkeypatch) == ExitCode.NOT_FOUND
    assert "ERR_EXPORT_NOT_FOUND" in capsys.readouterr().err


def test_download_resumes_and_checks_the_hash(
    live: LiveServer, world: World, tmp_path: Path
) -> None:
    seen: list[dict[str, str]] = []
    http = httpx.Client(
        base_url=live.url, event_hooks={"request": [lambda r: seen.append(dict(r.headers))]}
    )
    with ApiClient(live.url, token=world.acme, http=http) as client:
        run_id = client.create_run("acme-json")["id"]
        run = wait_for(lambda: (r := client.get_run(run_id))["status"] == "succeeded" and r)
        artifact = run["artifact"]
        whole = tmp_path / "whole"
        full = client.download(run_id, whole).read_bytes()
        assert hashlib.sha256(full).hexdigest() == artifact["sha256"]

        # An interrupted download left the first half: only the rest is fetched.
        resumed_dir = tmp_path / "resumed"
        resumed_dir.mkdir()
        half = len(full) // 2
        (resumed_dir / f"{artifact['name']}.part").write_bytes(full[:half])
        seen.clear()
        path = client.download(run_id, resumed_dir)
        assert path.read_bytes() == full
        ranged = [h for h in seen if "range" in h]
        assert ranged and ranged[0]["range"] == f"bytes={half}-"
        assert ranged[0]["if-range"] == f'"{artifact["sha256"]}"'
        assert not (resumed_dir / f"{artifact['name']}.part").exists()

        # A partial file that is not a prefix of the bundle: the hash check catches it.
        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        (bad_dir / f"{artifact['name']}.part").write_bytes(b"\0" * half)
        with pytest.raises(VerificationError, match="sha256"):
            client.download(run_id, bad_dir)
        assert list(bad_dir.iterdir()) == []


def test_policies_and_policy_profiles_through_the_server(
    cli: typer.Typer,
    live: LiveServer,
    world: World,
    tmp_path: Path,
    local_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STELLA_SERVER", live.url)
    monkeypatch.setenv("STELLA_TOKEN", world.acme)
    doc = tmp_path / "gate.yaml"
    doc.write_text('apiVersion: stella.policy/v1\nname: gate\nversion: "1"\n')
    assert run(cli, ["policy", "upload", "gate", str(doc)], monkeypatch) == 0
    assert "stored policy gate version 1" in capsys.readouterr().out
    assert run(cli, ["policy", "list", "--format", "json"], monkeypatch) == 0
    (item,) = json.loads(capsys.readouterr().out)["items"]
    assert (item["name"], item["version"], item["tenant"]) == ("gate", 1, "acme")
    create = ["export", "profile", "create", "gated", "--kind", "json", "--variant", "policy"]
    assert run(cli, [*create, "--policy", "gate"], monkeypatch) == 0
    capsys.readouterr()
    assert run(cli, ["export", "profile", "show", "gated"], monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["policy"]["digest"] == item["digest"]
    # The server's refusal names the field; the CLI exits 4 with it, and a bad document is
    # refused before it is sent.
    assert run(cli, [*create[:3], "gated-2", *create[4:]], monkeypatch) == ExitCode.BAD_INPUT
    assert "policy" in capsys.readouterr().err
    doc.write_text("apiVersion: stella.policy/v1\nname: gate\n")
    assert run(cli, ["policy", "upload", "gate", str(doc)], monkeypatch) == ExitCode.BAD_INPUT
    assert "version: Field required" in capsys.readouterr().err
    # zeta sees none of it.
    monkeypatch.setenv("STELLA_TOKEN", world.zeta)
    assert run(cli, ["policy", "show", "gate"], monkeypatch) == ExitCode.NOT_FOUND
