"""Untrusted input that once passed or crashed (issue 13, item 9): an expired mirror bundle that
`export verify` called verified (no TUF step), checksums.txt reordered or with CRLF (the root
hash is the sha256 of that file: it must have one form), OCI layouts and registry manifests of
the wrong shape (tracebacks before). Each: the documented exit code, one clear line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from export_center.errors import ExitCode, UnsafeArchiveError
from export_center.oci.layout import read_oci_layout, write_oci_layout
from export_center.oci.registry import pull_bundle
from export_center.signing.keyfile import FileSigner
from support.cli import run_cli_captured
from support.fakehttp import Answer, Seen, serve
from support.mirror import TENANT, Instance, advisory, extract, new_signer, options, snapshot

FULL = {"kind": "mirror", "variant": "full"}
LONG_AGO = datetime(2020, 3, 1, tzinfo=UTC)


def _cli(
    args: list[str], inst: Instance, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, str, str]:
    monkeypatch.setenv("STELLA_DATA_DIR", str(inst.data_dir))
    monkeypatch.setenv("STELLA_CONFIG", "")
    return run_cli_captured(args, monkeypatch, capsys)


def _trust(signer: FileSigner, tmp_path: Path) -> Path:
    path = tmp_path / "trust.pem"
    path.write_bytes(signer.public_key_pem())
    return path


def test_export_verify_checks_tuf_expiry(
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = make_instance("A")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(3)), now=LONG_AGO)
    old = a.export(a.profile("mirror-full", FULL), signer)  # TUF metadata expired long ago
    trust = _trust(signer, tmp_path)
    verify = ["export", "verify", "--trust-roots", str(trust), "--format", "json"]
    code, out, _ = _cli([*verify, str(old.archive_path)], a, monkeypatch, capsys)
    report = json.loads(out)
    assert code == ExitCode.VERIFICATION_FAILED
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed[0]["name"] == "tuf" and "expired" in failed[0]["detail"]
    # The same for the importer (it always checked), and the store stays empty.
    b = make_instance("B")
    with pytest.raises(Exception, match="expired"):
        b.import_(old.archive_path, options(signer))
    assert b.store.current_sequence(TENANT) == 0
    # A current mirror bundle passes step 8; for other bundles it does not apply, and says so.
    a.put("feed", advisory("NEW-1"))
    fresh = a.export(a.profile("mirror-full", FULL), signer, a.root / "fresh")
    code, out, _ = _cli([*verify, str(fresh.archive_path)], a, monkeypatch, capsys)
    checks = {c["name"]: c["status"] for c in json.loads(out)["checks"]}
    assert code == 0 and checks["tuf"] == "pass"
    raw = a.export(a.profile("raw", {"kind": "json", "variant": "raw"}), signer)
    code, out, _ = _cli([*verify, str(raw.archive_path)], a, monkeypatch, capsys)
    tuf = next(c for c in json.loads(out)["checks"] if c["name"] == "tuf")
    assert code == 0 and tuf["status"] == "pass" and "does not apply" in tuf["detail"]
    # A root pinned out of band that is not the bundle's: refused, whatever the keys.
    c = make_instance("C")
    c.put("feed", advisory("C-1"))
    other_signer = new_signer()
    foreign = c.export(c.profile("mirror-full", FULL), other_signer)
    pinned_root = tmp_path / "pinned-root.json"
    pinned_root.write_bytes(
        (extract(foreign.archive_path, tmp_path / "c") / "tuf/root.json").read_bytes()
    )
    pinned = [*verify, "--tuf-root", str(pinned_root), str(fresh.archive_path)]
    code, out, _ = _cli(pinned, a, monkeypatch, capsys)
    failed = [c for c in json.loads(out)["checks"] if c["status"] == "fail"]
    assert code == ExitCode.VERIFICATION_FAILED and failed[0]["name"] == "tuf"
    unreadable = [*verify, "--tuf-root", str(tmp_path / "nope.json"), str(fresh.archive_path)]
    code, _, err = _cli(unreadable, a, monkeypatch, capsys)
    assert code == ExitCode.BAD_INPUT and "cannot read the TUF root" in err


def _reorder(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))


def _crlf(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


@pytest.mark.parametrize("mangle", [_reorder, _crlf], ids=["reordered", "crlf"])
def test_checksums_has_one_form(
    mangle: Callable[[Path], None],
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = make_instance("A"), make_instance("B")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(3)))
    trust = _trust(signer, tmp_path)
    # An export bundle (json:raw), with stella export verify.
    raw = extract(
        a.export(a.profile("raw", {"kind": "json", "variant": "raw"}), signer).archive_path,
        tmp_path / "raw",
    )
    mangle(raw / "checksums.txt")
    verify = ["export", "verify", str(raw), "--trust-roots", str(trust), "--format", "json"]
    code, out, _ = _cli(verify, a, monkeypatch, capsys)
    failed = [c for c in json.loads(out)["checks"] if c["status"] == "fail"]
    assert code == ExitCode.VERIFICATION_FAILED and failed[0]["name"] == "checksums"
    # A mirror bundle, with the importer: refused, store untouched.
    mirror = extract(a.export(a.profile("mirror-full", FULL), signer).archive_path, tmp_path / "m")
    mangle(mirror / "checksums.txt")
    before = snapshot(b.store)
    with pytest.raises(Exception, match="checksums") as e:
        b.import_(mirror, options(signer))
    assert getattr(e.value, "exit_code", None) == ExitCode.VERIFICATION_FAILED
    assert snapshot(b.store) == before


def _layout(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path
) -> tuple[Instance, Path]:
    a = make_instance("A")
    a.put("feed", advisory("ADV-1"))
    full = a.export(a.profile("mirror-full", FULL), signer)
    layout = tmp_path / "layout"
    write_oci_layout(full.archive_path, layout, tag="t")
    return a, layout


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (b"[]", "image index is not a JSON object"),
        (b'{"schemaVersion":2,"manifests":{}}', "manifests: Input should be a valid list"),
        (b'{"schemaVersion":"2","manifests":[]}', "schemaVersion"),
        (None, "annotations: Input should be a valid dictionary"),
        (b"\xff", "image index is not JSON"),
    ],
)
def test_oci_layouts_of_the_wrong_shape(
    index: bytes | None,
    message: str,
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, layout = _layout(make_instance, signer, tmp_path)
    path = layout / "index.json"
    if index is None:  # annotations as a list
        doc = json.loads(path.read_bytes())
        doc["manifests"][0]["annotations"] = [["org.opencontainers.image.ref.name", "t"]]
        index = json.dumps(doc).encode()
    path.write_bytes(index)
    with pytest.raises(UnsafeArchiveError, match=message):
        read_oci_layout(layout, "t", tmp_path / "out")
    b = make_instance("B")
    trust = _trust(signer, tmp_path)
    code, _, err = _cli(
        ["airgap", "import", f"oci:{layout}:t", "--trust-roots", str(trust)], b, monkeypatch, capsys
    )
    assert code == ExitCode.VERIFICATION_FAILED, err
    assert "Traceback" not in err and "index.json" in err and len(err.strip().splitlines()) <= 2
    assert b.store.current_sequence(TENANT) == 0


def test_manifests_of_the_wrong_shape(tmp_path: Path) -> None:
    """From a layout's blob or from a registry: the manifest is typed before it is used."""
    bad = [
        (
            {
                "schemaVersion": 2,
                "layers": [{"digest": "sha256:" + "0" * 64, "size": 1, "annotations": ["x"]}],
            },
            "layers.0.annotations",
        ),
        ({"schemaVersion": 2, "layers": [{"digest": "sha256:" + "0" * 64, "size": "1"}]}, "size"),
        ({"schemaVersion": 2, "layers": [{"digest": "sha256:" + "0" * 64, "size": True}]}, "size"),
        ({"schemaVersion": 2, "layers": [{"digest": "sha256:" + "0" * 64, "size": -1}]}, "size"),
        ({"schemaVersion": 2, "layers": "all"}, "layers"),
        ({"schemaVersion": 2, "layers": [], "annotations": []}, "annotations"),
    ]
    for doc, field in bad:
        body = json.dumps(doc).encode()

        def script(_req: Seen, body: bytes = body) -> Answer:
            return Answer(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body)

        with serve(script) as reg, pytest.raises(UnsafeArchiveError, match=field):
            pull_bundle(f"oci://{reg.host}/stella/m:t", tmp_path / f"out-{field}")
