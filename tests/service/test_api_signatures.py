"""Signatures over the API: a run's ``.sha256`` and ``.sig`` sidecars are served and linked,
``stella export download`` saves them next to the archive, and ``stella export verify`` checks
them (archive signature included) or says plainly what it could not check. sha256sum and
openssl check the same files independently."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from export_center.errors import ExitCode
from export_center.settings import Settings
from export_center.signing.keystore import KeyStore
from export_center.worker.runtime import WorkerRuntime
from support.cli import run_cli
from support.service import LiveServer, World, auth, wait_for
from support.tools import need_tool


@pytest.fixture
def live(app: FastAPI, worker: WorkerRuntime) -> Iterator[LiveServer]:
    server = LiveServer.start(app)
    yield server
    server.stop()


_cli = run_cli


def _succeeded(http: httpx.Client) -> dict[str, object]:
    run_id = http.post("/api/export/runs", json={"profile": "acme-json"}).json()["id"]
    run: dict[str, object] = wait_for(
        lambda: (r := http.get(f"/api/export/runs/{run_id}").json())["status"] == "succeeded" and r,
        timeout=60,
    )
    return run


def test_sidecars_are_served_saved_and_verified(
    live: LiveServer,
    world: World,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    openssl = need_tool("openssl")
    sha256sum = need_tool("sha256sum", "coreutils")
    monkeypatch.setenv("STELLA_DATA_DIR", str(settings.data_dir))
    keys = KeyStore.from_settings(settings)
    pem = tmp_path / "publisher.pem"
    pem.write_bytes(keys.export_public(keys.signer(None).keyid))

    with httpx.Client(base_url=live.url, headers=auth(world.acme), timeout=30) as http:
        run = _succeeded(http)
        links = run["links"]
        assert isinstance(links, dict)
        artifact = run["artifact"]
        assert isinstance(artifact, dict)
        name = str(artifact["name"])
        assert links["sha256"] == f"/api/export/runs/{run['id']}/download.sha256"
        assert links["signature"] == f"/api/export/runs/{run['id']}/download.sig"
        sha = http.get(str(links["sha256"]))
        assert sha.status_code == 200
        assert sha.text == f"{artifact['sha256']}  {name}\n"
        assert sha.headers["content-disposition"] == f'attachment; filename="{name}.sha256"'
        assert http.get(str(links["signature"])).status_code == 200
        # Another tenant sees nothing (404, never 403: existence does not leak).
        other = http.get(str(links["signature"]), headers=auth(world.zeta))
        assert other.status_code == 404

    out = tmp_path / "dl"
    args = ["export", "download", str(run["id"]), "--out", str(out)]
    args += ["--server", live.url, "--token", world.acme]
    assert _cli(args, monkeypatch) == 0
    archive = out / name
    assert sorted(p.name for p in out.iterdir()) == [name, f"{name}.sha256", f"{name}.sig"]

    # Independent checkers: sha256sum reads the sidecar; openssl verifies the signature.
    check = subprocess.run(
        [sha256sum, "-c", f"{name}.sha256"], cwd=out, capture_output=True, text=True
    )
    assert check.returncode == 0 and f"{name}: OK" in check.stdout
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == artifact["sha256"]
    raw_sig = tmp_path / "sig.bin"
    raw_sig.write_bytes(base64.b64decode((out / f"{name}.sig").read_bytes()))
    ossl = subprocess.run(
        [
            *(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin"),
            *("-in", str(archive), "-sigfile", str(raw_sig)),
        ],
        capture_output=True,
        text=True,
    )
    assert ossl.returncode == 0, ossl.stderr
    assert "Signature Verified Successfully" in ossl.stdout

    capsys.readouterr()
    verify = ["export", "verify", str(archive), "--trust-roots", str(pem)]
    assert _cli([*verify, "--require-signature"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert "archive-signature" in text and "signed by trusted key" in text
    assert "NOT CHECKED" not in text

    # Without the .sig: verification passes but says what it could not check, and why...
    (out / f"{name}.sig").unlink()
    assert _cli(verify, monkeypatch) == 0
    text = capsys.readouterr().out
    assert f"NOT CHECKED archive-signature: no {name}.sig next to the archive" in text
    # ...and --require-signature makes it a failure.
    assert _cli([*verify, "--require-signature"], monkeypatch) == ExitCode.VERIFICATION_FAILED
    assert "verification failed at archive-signature" in capsys.readouterr().err

    # A signature over other bytes is refused by us and by openssl alike.
    (out / f"{name}.sig").write_bytes(base64.b64encode(b"\x00" * 64))
    assert _cli(verify, monkeypatch) == ExitCode.VERIFICATION_FAILED
