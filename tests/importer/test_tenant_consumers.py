"""The tenant is in every signed manifest, and every consumer told which tenant it expects
refuses another tenant's bundle (exit 2, naming both). Issue 13 item 3: tenant A once produced an
empty trivy:db signed with tenant B's key and ``airgap trivy-install --trust-roots B.pem``
installed it into B's scanner cache."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import zstandard

from export_center.errors import RequestValidationFailed
from export_center.exporter import ProfileReferences, resolve_signer, run_export
from export_center.planner.profiles import ProfileKind, parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.policy.repository import PolicyStore
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from support.mirror import Instance, advisory, snapshot, stella

POLICY = b'apiVersion: stella.policy/v1\nname: gate\nversion: "1"\n'


def _manifest(archive: Path) -> dict[str, object]:
    """manifests/export.json read with the standard library and zstandard, not our reader."""
    raw = archive.read_bytes()
    if archive.name.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tf:
        member = tf.extractfile("manifests/export.json")
        assert member is not None
        out: dict[str, object] = orjson.loads(member.read())
        return out


class Two:
    """One exporting instance with tenants a and b, each with its own key."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        keys = KeyStore.from_settings(inst.settings)
        self.key_a = keys.generate(KeyType.ED25519, tenants=["a"])
        self.key_b = keys.generate(KeyType.ED25519, tenants=["b"])
        self.pem_a = inst.root / "a.pem"
        self.pem_a.write_bytes(keys.export_public(self.key_a.keyid))
        self.pem_b = inst.root / "b.pem"
        self.pem_b.write_bytes(keys.export_public(self.key_b.keyid))
        self.registry = ProfileRegistry(
            inst.store, references=ProfileReferences(inst.settings, inst.store)
        )
        with inst.store.session() as s:
            for tenant in ("a", "b"):
                cur = inst.store.lock_tenant(s, tenant)
                inst.store.put(s, cur, "feed", advisory(f"{tenant.upper()}-1"))
            s.commit()


@pytest.fixture
def two(make_instance: Callable[..., Instance]) -> Two:
    return Two(make_instance("exporter"))


def test_a_tenant_cannot_sign_with_another_tenants_key(two: Two) -> None:
    before = snapshot(two.inst.store)
    spec = parse_profile_spec(
        {"kind": "trivy", "variant": "db", "signing": {"key": two.key_b.keyid}}
    )
    with pytest.raises(RequestValidationFailed, match=r"no key .* is assigned to tenant 'a'"):
        two.registry.create("a", "empty-trivy", spec)
    assert snapshot(two.inst.store) == before
    # Without a named key, tenant a signs with its own newest key, never b's.
    prof = two.registry.create("a", "trivy", parse_profile_spec({"kind": "trivy", "variant": "db"}))
    assert resolve_signer(two.inst.settings, prof).keyid == two.key_a.keyid


def test_trivy_install_with_tenant_refuses_another_tenants_database(
    two: Two, tmp_path: Path
) -> None:
    # The bundle the attack made: tenant a's trivy:db signed with b's key (an explicit signer,
    # as no profile can name it any more).
    prof = two.registry.create("a", "trivy", parse_profile_spec({"kind": "trivy", "variant": "db"}))
    signer_b = KeyStore.from_settings(two.inst.settings).signer(two.key_b.keyid)
    bundle = run_export(two.inst.settings, two.inst.store, prof, tmp_path / "out", signer=signer_b)
    archive = bundle.bundle.archive_path
    assert _manifest(archive)["tenant"] == "a"
    cache = tmp_path / "cache-b"
    env = two.inst.env()
    args = ["airgap", "trivy-install", str(archive), "--cache-dir", str(cache)]
    refused = stella(*args, "--trust-roots", str(two.pem_b), "--tenant", "b", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "the bundle is for tenant 'a', not 'b'" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (cache / "db").exists() or not any((cache / "db").iterdir())
    # As JSON too, with the failed check named.
    as_json = stella(
        *args, "--trust-roots", str(two.pem_b), "--tenant", "b", "--format", "json", env=env
    )
    assert as_json.returncode == 2
    checks = {c["name"]: c["status"] for c in json.loads(as_json.stdout)["checks"]}
    assert checks["tenant"] == "fail" and checks["manifest-signature"] == "pass"
    # export verify says the same.
    verify = stella(
        "export", "verify", str(archive), "--trust-roots", str(two.pem_b), "--tenant", "b", env=env
    )
    assert verify.returncode == 2 and "tenant 'a', not 'b'" in verify.stdout
    ok = stella(
        "export", "verify", str(archive), "--trust-roots", str(two.pem_b), "--tenant", "a", env=env
    )
    assert ok.returncode == 0, ok.stdout


def test_airgap_verify_and_import_with_tenant_refuse_another_tenants_mirror(
    two: Two, make_instance: Callable[..., Instance], tmp_path: Path
) -> None:
    prof = two.registry.create(
        "a", "mirror", parse_profile_spec({"kind": "mirror", "variant": "full"})
    )
    archive = run_export(
        two.inst.settings, two.inst.store, prof, tmp_path / "out"
    ).bundle.archive_path
    target = make_instance("disconnected")
    before = snapshot(target.store)
    env = target.env()
    roots = ["--trust-roots", str(two.pem_a)]
    verify = stella("airgap", "verify-bundle", str(archive), *roots, "--tenant", "b", env=env)
    assert verify.returncode == 2, verify.stdout + verify.stderr
    assert "the bundle is for tenant 'a', not 'b'" in verify.stdout
    imported = stella("airgap", "import", str(archive), *roots, "--tenant", "b", env=env)
    assert imported.returncode == 2, imported.stdout + imported.stderr
    assert "tenant 'a', not 'b'" in imported.stderr
    assert snapshot(target.store) == before
    ok = stella("airgap", "import", str(archive), *roots, "--tenant", "a", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_the_tenant_is_in_the_signed_manifest_of_every_kind(two: Two, tmp_path: Path) -> None:
    PolicyStore(two.inst.store).upload("b", "gate", POLICY)
    bodies = {
        ProfileKind.JSON_RAW: {"kind": "json", "variant": "raw"},
        ProfileKind.JSON_POLICY: {"kind": "json", "variant": "policy", "policy": {"name": "gate"}},
        ProfileKind.TRIVY_DB: {"kind": "trivy", "variant": "db"},
        ProfileKind.TRIVY_JAVA_DB: {"kind": "trivy", "variant": "java-db"},
        ProfileKind.MIRROR_FULL: {"kind": "mirror", "variant": "full"},
        ProfileKind.MIRROR_DELTA: {
            "kind": "mirror",
            "variant": "delta",
            "options": {"base": {"latest": True}},
        },
    }
    for kind, body in bodies.items():
        name = kind.value.replace(":", "-")
        prof = two.registry.create("b", name, parse_profile_spec(body))
        archive = run_export(two.inst.settings, two.inst.store, prof, tmp_path / name)
        manifest = _manifest(archive.bundle.archive_path)
        assert manifest["tenant"] == "b", kind
        assert manifest["profile"] == {
            "kind": body["kind"],
            "variant": body["variant"],
            "name": name,
            "revision": 1,
        }
