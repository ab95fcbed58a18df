"""OCI output: the layout skopeo accepts, a copy to a real registry (Debian's docker-registry on
127.0.0.1), `stella export push`, and imports from the registry equal to imports from the file."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from export_center.bundle.writer import BundleResult
from export_center.distribution.push import push_bundle
from export_center.errors import BadInputError, UnsafeArchiveError, VerificationError
from export_center.oci.layout import (
    ARTIFACT_TYPE,
    LAYER_TYPE,
    TITLE,
    build_manifest,
    read_oci_layout,
    write_oci_layout,
)
from export_center.oci.registry import RegistryClient, is_loopback, parse_ref
from export_center.signing.keyfile import FileSigner
from support.mirror import TENANT, Instance, advisory, evidence, options, snapshot, stella


def _bundle(a: Instance, signer: FileSigner) -> BundleResult:
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(12)))
    a.put("other", advisory("OTHER-1"), advisory("ADV-3", version="3.0"))
    return a.export(a.profile("oci-full", {"kind": "mirror", "variant": "full"}), signer)


def _skopeo(skopeo: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([skopeo, *args], capture_output=True, text=True, check=False, timeout=300)


def test_layout_is_deterministic_and_skopeo_inspects_it(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path, skopeo: str
) -> None:
    built = _bundle(make_instance("A"), signer)
    one = write_oci_layout(built.archive_path, tmp_path / "one", tag="v1")
    two = write_oci_layout(built.archive_path, tmp_path / "two", tag="v1")
    assert one.manifest == two.manifest
    assert (tmp_path / "one/index.json").read_bytes() == (tmp_path / "two/index.json").read_bytes()
    manifest = orjson.loads(one.manifest)
    assert manifest["artifactType"] == ARTIFACT_TYPE
    titles = [layer["annotations"][TITLE] for layer in manifest["layers"]]
    assert titles == sorted(titles, key=str.encode)
    assert "manifests/export.json" in titles and "tuf/root.json" in titles
    assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_TYPE}
    assert b"created" not in one.manifest  # no timestamps

    raw = _skopeo(skopeo, "inspect", "--raw", f"oci:{tmp_path / 'one'}:v1")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.encode() == one.manifest
    info = _skopeo(skopeo, "inspect", f"oci:{tmp_path / 'one'}:v1")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["Digest"] == one.manifest_digest
    assert len(json.loads(info.stdout)["Layers"]) == len(titles)


def test_skopeo_copy_to_registry_and_import_equals_file_import(
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    skopeo: str,
    registry: str,
) -> None:
    a = make_instance("A")
    built = _bundle(a, signer)
    layout = write_oci_layout(built.archive_path, tmp_path / "layout", tag="gen1")
    ref = f"{registry}/stella/mirror:gen1"
    copy = _skopeo(
        skopeo,
        "copy",
        "--dest-tls-verify=false",
        f"oci:{tmp_path / 'layout'}:gen1",
        f"docker://{ref}",
    )
    assert copy.returncode == 0, copy.stderr
    remote = _skopeo(skopeo, "inspect", "--tls-verify=false", f"docker://{ref}")
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["Digest"] == layout.manifest_digest

    from_file, from_registry = make_instance("B1"), make_instance("B2")
    from_file.import_(built.archive_path, options(signer))
    got = from_registry.import_(f"oci://{ref}", options(signer))
    assert got.status == "imported"
    assert evidence(from_registry.store) == evidence(from_file.store) == evidence(a.store)
    # Pinned by digest works too, and is a replay.
    again = from_registry.import_(
        f"oci://{registry}/stella/mirror@{layout.manifest_digest}", options(signer)
    )
    assert again.status == "replay"
    # And from the layout on disk.
    from_layout = make_instance("B3")
    from_layout.import_(f"oci:{tmp_path / 'layout'}:gen1", options(signer))
    assert evidence(from_layout.store) == evidence(a.store)


def test_stella_export_push_and_airgap_import_from_registry(
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    skopeo: str,
    registry: str,
) -> None:
    a, b = make_instance("A"), make_instance("B")
    built = _bundle(a, signer)
    ref = f"oci://{registry}/stella/pushed:v1"
    pushed = stella("export", "push", str(built.archive_path), ref, "--format", "json", env=a.env())
    assert pushed.returncode == 0, pushed.stderr
    digest = json.loads(pushed.stdout)["manifestDigest"]
    layout = write_oci_layout(built.archive_path, tmp_path / "layout")
    assert digest == layout.manifest_digest  # the same artifact, byte for byte
    remote = _skopeo(
        skopeo, "inspect", "--tls-verify=false", f"docker://{registry}/stella/pushed:v1"
    )
    assert json.loads(remote.stdout)["Digest"] == digest

    roots = tmp_path / "trust.pem"
    roots.write_bytes(signer.public_key_pem())
    imported = stella("airgap", "import", ref, "--trust-roots", str(roots), env=b.env())
    assert imported.returncode == 0, imported.stdout + imported.stderr
    b.store.engine.dispose()
    assert evidence(b.store) == evidence(a.store)
    # A second push of the same bundle uploads nothing new and serves the same digest.
    assert push_bundle(built.archive_path, ref, tmp_path / "again").manifest_digest == digest


def test_hostile_oci_artifacts_are_refused(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path, registry: str
) -> None:
    a, b = make_instance("A"), make_instance("B")
    built = _bundle(a, signer)
    layout_dir = tmp_path / "layout"
    art = write_oci_layout(built.archive_path, layout_dir, tag="t")
    blobs = layout_dir / "blobs" / "sha256"
    # A layer titled outside the bundle.
    evil = b"pwned"
    evil_digest = "sha256:" + hashlib.sha256(evil).hexdigest()
    (blobs / evil_digest[7:]).write_bytes(evil)
    from export_center.oci.layout import Layer

    hostile = build_manifest([*art.layers, Layer("../../etc/evil", evil_digest, len(evil))], "x")
    with RegistryClient(parse_ref(f"oci://{registry}/stella/evil:t")) as reg:
        for layer in {*art.layers, Layer("e", evil_digest, len(evil))}:
            reg.push_blob(layer.digest, path=blobs / layer.digest[7:])
        reg.push_blob("sha256:" + hashlib.sha256(b"{}").hexdigest(), data=b"{}")
        reg.push_manifest(hostile, "t")
    before = snapshot(b.store)
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.' path component"):
        b.import_(f"oci://{registry}/stella/evil:t", options(signer))
    assert snapshot(b.store) == before
    assert not (tmp_path.parent / "etc" / "evil").exists()

    # A blob that does not match its descriptor.
    victim = next(layer for layer in art.layers if layer.path == "README.txt")
    (blobs / victim.digest[7:]).write_bytes(b"tampered README\n")
    with pytest.raises(VerificationError, match=r"README\.txt: blob"):
        read_oci_layout(layout_dir, "t", tmp_path / "out")
    assert b.store.current_sequence(TENANT) == 0


def test_references_and_plain_http_only_on_loopback() -> None:
    ref = parse_ref("oci://127.0.0.1:5000/stella/mirror:gen-1")
    assert (ref.host, ref.repository, ref.reference, ref.scheme) == (
        "127.0.0.1:5000",
        "stella/mirror",
        "gen-1",
        "http",
    )
    assert parse_ref("oci://registry.example.com/a/b").reference == "latest"
    assert parse_ref("oci://registry.example.com/a/b:v1").scheme == "https"
    assert parse_ref("oci://[::1]:5000/a:v1").scheme == "http"
    assert is_loopback("localhost:5000") and not is_loopback("10.0.0.1:5000")
    for bad in ("docker://x/y:z", "oci://host", "oci://host/UPPER:t", "oci://host/a@sha256:12"):
        with pytest.raises(BadInputError):
            parse_ref(bad)


def test_any_bundle_becomes_a_layout(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path, skopeo: str
) -> None:
    a = make_instance("A")
    a.put("feed", advisory("ADV-1"))
    raw = a.export(a.profile("raw-all", {"kind": "json", "variant": "raw"}), signer)
    art = write_oci_layout(raw.archive_path, tmp_path / "raw-layout")
    assert art.export_id == raw.export_id
    info = _skopeo(skopeo, "inspect", f"oci:{tmp_path / 'raw-layout'}:{raw.export_id}")
    assert info.returncode == 0, info.stderr
    # And back: the layout's files are the bundle's files, which verify as before.
    from export_center.bundle.verify import verify_bundle
    from export_center.signing.interface import load_trust_roots

    read_oci_layout(tmp_path / "raw-layout", raw.export_id, tmp_path / "back")
    assert verify_bundle(tmp_path / "back", load_trust_roots(signer.public_key_pem())).ok
