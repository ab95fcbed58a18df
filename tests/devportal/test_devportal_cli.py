"""``stella devportal build|verify`` through ``run_app`` (the spec's exit codes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer

from export_center.cli import main
from export_center.errors import ExitCode
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from support.devportal import DEMO, repack, unpack


@pytest.fixture
def app() -> typer.Typer:
    return main.app


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("STELLA_DATA_DIR", str(data))
    monkeypatch.setenv("STELLA_CONFIG", "")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return data


def run(app: typer.Typer, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    return main.run_app(app)


def test_build_then_verify(
    app: typer.Typer,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = KeyStore(data_dir / "keys")
    old = store.generate(KeyType.ED25519)
    store.generate(KeyType.ED25519)
    out = tmp_path / "out"
    args = ["devportal", "build", "--profile", str(DEMO / "profile.json"), "--out", str(out)]
    args += ["--key", old.keyid[:12], "--metadata", "release=0.1.0", "--format", "json"]
    assert run(app, args, monkeypatch) == 0
    captured = capsys.readouterr()
    built = json.loads(captured.out)
    assert built["keyid"] == old.keyid  # --key picks the key, not the newest
    assert built["skipped"] == [
        {"path": "profile.json", "reason": "not one of portal/, specs/, sdks/<name>/, changelog/"}
    ]
    assert "skipped: profile.json" in captured.err
    bundle = out / "devportal-offline-bundle.tgz"
    manifest = json.loads(unpack(bundle.read_bytes())["manifest.json"])
    assert manifest["metadata"] == {
        "portal": "export-center-api-docs",
        "product": "stella-export-center",
        "release": "0.1.0",
    }
    assert manifest["bundleId"] == built["bundleId"]

    keys = tmp_path / "trusted.pem"
    keys.write_bytes(old.public_path.read_bytes())
    assert (
        run(app, ["devportal", "verify", str(bundle), "--trust-roots", str(keys)], monkeypatch) == 0
    )
    output = capsys.readouterr().out
    assert "ok  dsse" in output and output.rstrip().endswith("verified")
    assert f"root hash  {built['rootHash']}" in output


def test_verify_failures_exit_2(
    app: typer.Typer,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = KeyStore(data_dir / "keys")
    store.generate(KeyType.ED25519)
    other = KeyStore(tmp_path / "other").generate(KeyType.ED25519)
    assert run(app, ["devportal", "build", str(DEMO), "--out", str(tmp_path)], monkeypatch) == 0
    bundle = tmp_path / "devportal-offline-bundle.tgz"
    code = run(
        app,
        ["devportal", "verify", str(bundle), "--trust-roots", str(other.public_path)],
        monkeypatch,
    )
    assert code == ExitCode.VERIFICATION_FAILED
    assert "dsse: 0 valid signature" in capsys.readouterr().err
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    trusted = store.newest().public_path
    code = run(
        app, ["devportal", "verify", str(bundle), "--trust-roots", str(trusted)], monkeypatch
    )
    assert code == ExitCode.VERIFICATION_FAILED


def test_a_bundle_whose_helper_script_was_replaced_is_not_verified(
    app: typer.Typer,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Signature and checksums fine, other code in verify-offline.sh: exit 2, not "verified"."""
    key = KeyStore(data_dir / "keys").generate(KeyType.ED25519)
    assert run(app, ["devportal", "build", str(DEMO), "--out", str(tmp_path)], monkeypatch) == 0
    bundle = tmp_path / "devportal-offline-bundle.tgz"
    files = unpack(bundle.read_bytes())
    files["verify-offline.sh"] = b"#!/bin/sh\necho 'VERIFIED  bundle authentic and intact'\n"
    bundle.write_bytes(repack(files, fix_checksums=True))
    capsys.readouterr()
    code = run(
        app,
        ["devportal", "verify", str(bundle), "--trust-roots", str(key.public_path)],
        monkeypatch,
    )
    captured = capsys.readouterr()
    assert code == ExitCode.VERIFICATION_FAILED
    assert "helpers: verify-offline.sh is not the one this version of the product writes" in (
        captured.err
    )
    assert not captured.out.rstrip().endswith("verified")


def test_build_refusal_exits_4_naming_the_file(
    app: typer.Typer,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    KeyStore(data_dir / "keys").generate(KeyType.ED25519)
    src = tmp_path / "in" / "portal"
    src.mkdir(parents=True)
    (src / "index.html").write_text(
        "<html>\n<head>\n<script src='https://cdn.example/x.js'></script>\n"
    )
    code = run(
        app, ["devportal", "build", str(tmp_path / "in"), "--out", str(tmp_path)], monkeypatch
    )
    assert code == ExitCode.BAD_INPUT
    assert "portal/index.html:3: <script src> loads https://cdn.example/x.js" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metadata", "novalue"], "expected KEY=VALUE"),
        (["--metadata", "a=1", "--metadata", "a=2"], "given twice"),
        (["--generated-at", "2026-01-01T00:00:00"], "needs a time zone"),
        (["--generated-at", "soon"], "not an RFC 3339 time"),
        (["--profile", str(DEMO / "profile.json")], "either INPUT_DIR or --profile"),
    ],
)
def test_bad_options_exit_4(
    app: typer.Typer,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    KeyStore(data_dir / "keys").generate(KeyType.ED25519)
    args = ["devportal", "build", str(DEMO), "--out", str(tmp_path), *extra]
    assert run(app, args, monkeypatch) == ExitCode.BAD_INPUT
    assert message in capsys.readouterr().err


def test_generated_at_and_source_date_epoch(
    app: typer.Typer,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    KeyStore(data_dir / "keys").generate(KeyType.ED25519)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    args = ["devportal", "build", str(DEMO), "--out", str(tmp_path)]
    assert run(app, [*args, "--generated-at", "2026-02-03T04:05:06+01:00"], monkeypatch) == 0
    manifest = json.loads(
        unpack((tmp_path / "devportal-offline-bundle.tgz").read_bytes())["manifest.json"]
    )
    assert manifest["generatedAt"] == "2026-02-03T03:05:06Z"


def test_no_key_in_the_store_exits_3(
    app: typer.Typer,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(app, ["devportal", "build", str(DEMO), "--out", str(tmp_path)], monkeypatch)
    assert code == ExitCode.NOT_FOUND
    assert "stella keys generate" in capsys.readouterr().err
