"""json:raw bundles: reproducible bytes, independent verifiers, tamper detection."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import orjson
import pytest
import rfc8785
import zstandard

from export_center.bundle.manifest import EXPORT_DSSE, EXPORT_JSON, MANIFEST_PAYLOAD_TYPE
from export_center.bundle.verify import verify_bundle
from export_center.exporter import run_export
from export_center.signing.dsse import sign_envelope
from export_center.signing.interface import KeyType, load_trust_roots
from support.bundle import Env, advisory_record, put


def _export(env: Env, name: str = "raw-all", **kw: object):  # type: ignore[no-untyped-def]
    from export_center.planner.registry import ProfileRegistry

    prof = ProfileRegistry(env.store).get("default", name)
    return run_export(env.settings, env.store, prof, env.out, **kw)  # type: ignore[arg-type]


def _members(archive: Path) -> dict[str, bytes]:
    raw = zstandard.ZstdDecompressor().stream_reader(archive.open("rb"), read_across_frames=True)
    with tarfile.open(fileobj=io.BytesIO(raw.read()), mode="r:") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _repack(members: dict[str, bytes], dest: Path) -> None:
    """Write members as a plain sorted PAX tar + zstd (a tampered copy of a bundle)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tf.addfile(info, io.BytesIO(members[name]))
    dest.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


def test_export_is_reproducible_and_pinned(env: Env) -> None:
    env.profile()
    first = _export(env)
    a = first.bundle.archive_path.read_bytes()
    shutil.rmtree(env.out)
    second = _export(env)
    assert second.bundle.archive_path.read_bytes() == a
    assert first.bundle.rerun_hash == second.bundle.rerun_hash

    # Unrelated records arrive; an export pinned to the old sequence is still identical.
    put(env.store, "default", "feed-c", advisory_record("NEW-1"))
    shutil.rmtree(env.out)
    pinned = _export(env, as_of_seq=first.plan.as_of_seq)
    assert pinned.bundle.archive_path.read_bytes() == a
    # The current state is a different store state: different rerunHash and export id.
    current = _export(env)
    assert current.bundle.rerun_hash != first.bundle.rerun_hash
    assert current.plan.export_id != first.plan.export_id


def test_export_identical_under_other_tz_locale_umask_hashseed(env: Env, tmp_path: Path) -> None:
    env.profile()
    first = _export(env)
    expected = hashlib.sha256(first.bundle.archive_path.read_bytes()).hexdigest()
    out2 = tmp_path / "out2"
    child_env = {
        **os.environ,
        "STELLA_DATA_DIR": str(env.settings.data_dir),
        "TZ": "Pacific/Kiritimati",
        "LANG": "tr_TR.UTF-8",
        "LC_ALL": "tr_TR.UTF-8",
        "PYTHONHASHSEED": "12345",
    }
    stella = Path(sys.executable).with_name("stella")
    subprocess.run(
        [
            "sh",
            "-c",
            f'umask 077 && exec "{stella}" export run raw-all --out "{out2}" --format json',
        ],
        env=child_env,
        check=True,
        capture_output=True,
    )
    again = out2 / first.bundle.archive_path.name
    assert hashlib.sha256(again.read_bytes()).hexdigest() == expected


def test_independent_verifiers_accept_the_bundle(env: Env, tmp_path: Path) -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    env.profile()
    result = _export(env).bundle
    members = _members(result.archive_path)
    # sha256sum -c inside the extracted bundle, and on the archive sidecar.
    extracted = tmp_path / "x"
    extracted.mkdir()
    for name, data in members.items():
        (extracted / name).parent.mkdir(parents=True, exist_ok=True)
        (extracted / name).write_bytes(data)
    subprocess.run(
        ["sha256sum", "--strict", "-c", "checksums.txt"],
        cwd=extracted,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["sha256sum", "-c", result.archive_path.name + ".sha256"],
        cwd=result.archive_path.parent,
        check=True,
        capture_output=True,
    )
    # securesystemslib's own DSSE implementation verifies our envelopes.
    pub_pem = env.keys.export_public(env.keyid)
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = SSlibKey.from_crypto(load_pem_public_key(pub_pem), keyid=env.keyid)
    for name in ("manifests/export.json.dsse", "manifests/provenance.json.dsse"):
        envelope = Envelope.from_dict(orjson.loads(members[name]))
        verified = envelope.verify([key], 1)
        assert env.keyid in verified
    # provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate.
    stmt = orjson.loads(members["manifests/provenance.json"])
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    names = {s["name"] for s in stmt["subject"]}
    assert "manifests/export.json" in names
    assert "data/raw/advisories/feed-a.jsonl" in names
    assert stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert stmt["predicate"]["runDetails"]["builder"]["id"]


def test_ecdsa_sidecar_verifies_with_openssl(env: Env, tmp_path: Path) -> None:
    info = env.keys.generate(KeyType.ECDSA_P256, tenants=["default"])
    env.profile(signing={"key": info.keyid})
    result = _export(env).bundle
    sig = base64.b64decode(
        (result.archive_path.parent / (result.archive_path.name + ".sig")).read_bytes()
    )
    (tmp_path / "sig.der").write_bytes(sig)
    (tmp_path / "pub.pem").write_bytes(env.keys.export_public(info.keyid))
    proc = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(tmp_path / "pub.pem"),
            "-signature",
            str(tmp_path / "sig.der"),
            str(result.archive_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Verified OK" in proc.stdout
    roots = load_trust_roots((tmp_path / "pub.pem").read_bytes())
    assert verify_bundle(result.archive_path, roots).ok


def _roots(env: Env):  # type: ignore[no-untyped-def]
    return load_trust_roots(env.trust_roots.read_bytes())


def test_verify_passes_on_archive_and_directory(env: Env, tmp_path: Path) -> None:
    env.profile()
    result = _export(env).bundle
    report = verify_bundle(result.archive_path, _roots(env))
    assert report.ok, report.as_json()
    assert [c.name for c in report.checks][:3] == [
        "archive-digest",
        "archive-signature",
        "safe-read",
    ]
    assert all(c.status == "pass" for c in report.checks)
    assert report.root_hash == result.root_hash
    d = tmp_path / "extracted"
    for name, data in _members(result.archive_path).items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    assert verify_bundle(d, _roots(env)).ok


def _flip(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.mark.parametrize(
    ("target", "check"),
    [
        ("data/raw/advisories/feed-a.jsonl", "checksums"),
        ("manifests/export.json", "checksums"),
        ("manifests/export.json.dsse", "checksums"),
        ("checksums.txt", "checksums"),
        ("README.txt", "checksums"),
    ],
)
def test_flipped_byte_is_caught(env: Env, tmp_path: Path, target: str, check: str) -> None:
    env.profile()
    result = _export(env).bundle
    members = _members(result.archive_path)
    members[target] = _flip(members[target])
    bad = tmp_path / "bad.tar.zst"
    _repack(members, bad)
    report = verify_bundle(bad, _roots(env))
    assert not report.ok
    assert report.failed is not None and report.failed.name == check, report.as_json()
    assert int(report.exit_code) == 2


def test_consistent_tampering_is_caught_by_signature(env: Env, tmp_path: Path) -> None:
    """An attacker who also rewrites checksums.txt is stopped by the signed manifest."""
    env.profile()
    result = _export(env).bundle
    members = _members(result.archive_path)
    path = "data/raw/advisories/feed-a.jsonl"
    original = members[path]
    members[path] = original.replace(b"1.0.1", b"9.9.9", 1)
    assert members[path] != original
    members["checksums.txt"] = b"".join(
        f"{hashlib.sha256(members[n]).hexdigest()}  {n}\n".encode()
        for n in sorted(members)
        if n != "checksums.txt"
    )
    bad = tmp_path / "bad.tar.zst"
    _repack(members, bad)
    report = verify_bundle(bad, _roots(env))
    assert report.failed is not None and report.failed.name == "contents"
    assert "does not match the signed manifest" in report.failed.detail


@pytest.mark.parametrize(
    ("where", "field"),
    [((), "surprise"), (("profile",), "profile.color"), (("contents", 0), "contents.0.mode")],
)
def test_unknown_manifest_field_is_refused_even_when_signed(
    env: Env, tmp_path: Path, where: tuple[str | int, ...], field: str
) -> None:
    """The manifest is our own schema: a field the verifier does not know is refused, not
    ignored, even when a trusted key signed it (fail closed)."""
    env.profile()
    members = _members(_export(env).bundle.archive_path)
    manifest = orjson.loads(members[EXPORT_JSON])
    node = manifest
    for step in where:
        node = node[step]
    node[field.rsplit(".", 1)[-1]] = "x"
    body = rfc8785.dumps(manifest)
    members[EXPORT_JSON] = body
    signer = env.keys.signer(env.keyid)
    members[EXPORT_DSSE] = sign_envelope(body, MANIFEST_PAYLOAD_TYPE, [signer])
    members["checksums.txt"] = b"".join(
        f"{hashlib.sha256(members[n]).hexdigest()}  {n}\n".encode()
        for n in sorted(members)
        if n != "checksums.txt"
    )
    bad = tmp_path / "bad.tar.zst"
    _repack(members, bad)
    report = verify_bundle(bad, _roots(env))
    assert report.failed is not None and report.failed.name == "manifest-signature"
    assert report.failed.detail == f"{EXPORT_JSON}: unknown field {field!r}"
    assert report.manifest is None and int(report.exit_code) == 2


@pytest.mark.parametrize("change", ["remove", "add"])
def test_removed_or_added_file_is_caught(env: Env, tmp_path: Path, change: str) -> None:
    env.profile()
    result = _export(env).bundle
    members = _members(result.archive_path)
    if change == "remove":
        del members["data/normalized/advisories/feed-b.jsonl"]
    else:
        members["data/extra.txt"] = b"smuggled\n"
    bad = tmp_path / "bad.tar.zst"
    _repack(members, bad)
    report = verify_bundle(bad, _roots(env))
    assert report.failed is not None and report.failed.name == "checksums"
    assert ("listed but missing" if change == "remove" else "not listed") in report.failed.detail


def test_flipped_archive_byte_fails_archive_digest(env: Env) -> None:
    env.profile()
    result = _export(env).bundle
    data = result.archive_path.read_bytes()
    result.archive_path.write_bytes(_flip(data, len(data) - 10))
    report = verify_bundle(result.archive_path, _roots(env))
    assert report.failed is not None and report.failed.name == "archive-digest"


def test_untrusted_key_fails(env: Env, tmp_path: Path) -> None:
    env.profile()
    result = _export(env).bundle
    other = env.keys.generate(KeyType.ED25519, out_dir=tmp_path / "other-keys")
    roots = load_trust_roots(other.public_path.read_bytes())
    report = verify_bundle(result.archive_path, roots)
    assert report.failed is not None and report.failed.name == "archive-signature"
    # Without the sidecars, the signed manifest is what catches it.
    for suffix in (".sig", ".sha256"):
        (result.archive_path.parent / (result.archive_path.name + suffix)).unlink()
    report = verify_bundle(result.archive_path, roots)
    assert report.failed is not None and report.failed.name == "manifest-signature"
    assert int(report.exit_code) == 2


@pytest.mark.slow
def test_cli_verify_reports_each_check_and_exit_code(env: Env) -> None:
    env.profile()
    result = _export(env).bundle
    stella = Path(sys.executable).with_name("stella")
    child = {**os.environ, "STELLA_DATA_DIR": str(env.settings.data_dir)}
    ok = subprocess.run(
        [
            stella,
            "export",
            "verify",
            result.archive_path,
            "--trust-roots",
            env.trust_roots,
            "--format",
            "json",
        ],
        env=child,
        capture_output=True,
    )
    assert ok.returncode == 0, ok.stderr
    report = orjson.loads(ok.stdout)
    assert [c["name"] for c in report["checks"]] == [
        "archive-digest",
        "archive-signature",
        "safe-read",
        "checksums",
        "manifest-signature",
        "contents",
        "rerun-hash",
        "provenance",
        "tuf",  # step 8: mirror bundles only
    ]
    # Not a mirror bundle: step 8 does not apply, which passes saying so (not "skipped").
    assert report["checks"][-1]["status"] == "pass"
    assert "does not apply" in report["checks"][-1]["detail"]
    result.archive_path.write_bytes(_flip(result.archive_path.read_bytes()))
    bad = subprocess.run(
        [stella, "export", "verify", result.archive_path, "--trust-roots", env.trust_roots],
        env=child,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "FAIL archive-digest" in bad.stdout
    missing = subprocess.run(
        [stella, "export", "verify", "/nonexistent.tar.zst", "--trust-roots", env.trust_roots],
        env=child,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 3
    empty = env.trust_roots.with_name("empty.pem")
    empty.write_bytes(b"")
    refused = subprocess.run(
        [stella, "export", "verify", result.archive_path, "--trust-roots", empty],
        env=child,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "trust" in refused.stderr


def test_manifest_counts_and_shards(env: Env) -> None:
    env.profile()
    result = _export(env)
    members = _members(result.bundle.archive_path)
    manifest = orjson.loads(members["manifests/export.json"])
    assert manifest["counts"] == {"advisories": 32, "sboms": 0, "vex": 0}
    assert manifest["asOf"]["sequence"] == 32
    assert manifest["generatedAt"] == manifest["asOf"]["time"]
    paths = [c["path"] for c in manifest["contents"]]
    assert paths == sorted(paths)
    lines = members["data/raw/advisories/feed-a.jsonl"].splitlines()
    assert len(lines) == 30
    ids = [orjson.loads(x)["upstreamId"] for x in lines]
    assert ids == sorted(ids)
    first = orjson.loads(lines[0])
    assert hashlib.sha256(first["content"].encode()).hexdigest() == first["digest"].split(":")[1]
    by_path = {c["path"]: c for c in manifest["contents"]}
    assert by_path["data/raw/advisories/feed-a.jsonl"]["records"] == 30


def _tar_with(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink", "hardlink", "device", "dup"])
def test_hostile_bundle_is_refused_without_writing(env: Env, tmp_path: Path, attack: str) -> None:
    env.profile()
    members = _members(_export(env).bundle.archive_path)
    entries = []
    for name in sorted(members):
        info = tarfile.TarInfo(name)
        info.size = len(members[name])
        entries.append((info, members[name]))
    evil = tarfile.TarInfo(
        {"dotdot": "../../evil.txt", "absolute": "/tmp/evil.txt"}.get(attack, "x")
    )
    if attack in {"dotdot", "absolute", "dup"}:
        evil.size = 4
        if attack == "dup":
            evil.name = "README.txt"
    elif attack == "symlink":
        evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif attack == "hardlink":
        evil.type, evil.linkname = tarfile.LNKTYPE, "/etc/passwd"
    else:
        evil.type, evil.devmajor, evil.devminor = tarfile.CHRTYPE, 1, 3
    bad = tmp_path / "hostile" / "bundle.tar"
    bad.parent.mkdir()
    bad.write_bytes(_tar_with([*entries, (evil, b"evil")]))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    report = verify_bundle(bad, _roots(env))
    assert report.failed is not None and report.failed.name == "safe-read", report.as_json()
    assert int(report.exit_code) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/evil.txt").exists()


def test_zstd_bomb_is_refused(env: Env, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tar.zst"
    cctx = zstandard.ZstdCompressor(level=3)
    with bomb.open("wb") as fh, cctx.stream_writer(fh) as w:
        header = tarfile.TarInfo("data/zeros.bin")
        header.size = (1 << 31) - 1024
        w.write(header.tobuf(format=tarfile.PAX_FORMAT))
        zero = bytes(1 << 20)
        for _ in range(256):  # 256 MiB of zeros is enough to cross the ratio limit
            w.write(zero)
    assert bomb.stat().st_size < 1 << 20
    report = verify_bundle(bomb, _roots(env))
    assert report.failed is not None and report.failed.name == "safe-read"
    assert "ratio" in report.failed.detail or "limit" in report.failed.detail
