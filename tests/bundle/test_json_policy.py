"""json:policy bundles: the policy overlay next to json:raw content, per policySnapshotMode."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import orjson
import pytest
import zstandard
from sqlalchemy import text

from export_center.bundle.verify import verify_bundle
from export_center.errors import ConflictError, RequestValidationFailed
from export_center.exporter import ProfileReferences, run_export
from export_center.ingest.pipeline import ingest_paths
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.policy.document import load_policy
from export_center.policy.repository import PolicyStore
from export_center.settings import Settings, load_settings
from export_center.signing.interface import KeyType, load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore
from support.mirror import snapshot

DEMO = Path(__file__).resolve().parents[2] / "demo" / "evidence"
POLICY = b"""apiVersion: stella.policy/v1
name: demo-gate
version: "3"
severityThresholds:
  fail: HIGH
  warn: MEDIUM
"""


def _members(archive: Path) -> dict[str, bytes]:
    raw = zstandard.ZstdDecompressor().stream_reader(archive.open("rb"), read_across_frames=True)
    with tarfile.open(fileobj=io.BytesIO(raw.read()), mode="r:") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(env={"STELLA_DATA_DIR": str(tmp_path / "data")})
    store = EvidenceStore.open(settings.database_url)
    for sub in ("advisories", "vex", "sboms"):
        ingest_paths(store, [DEMO / sub], source=f"demo-{sub}", tenant="default", max_bytes=1 << 20)
    keys = KeyStore.from_settings(settings)
    key = keys.generate(KeyType.ED25519, tenants=["default"])
    PolicyStore(store).upload("default", "gate", POLICY)
    return settings, store, load_trust_roots(keys.export_public(key.keyid))


def _registry(settings: Settings, store: EvidenceStore) -> ProfileRegistry:
    return ProfileRegistry(store, references=ProfileReferences(settings, store))


def _profile(settings: Settings, store: EvidenceStore, name: str, policy: dict[str, object]):  # type: ignore[no-untyped-def]
    spec = parse_profile_spec({"kind": "json", "variant": "policy", "policy": policy})
    return _registry(settings, store).create("default", name, spec)


def test_policy_parts_are_exported_and_verify(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, store, roots = setup
    prof = _profile(settings, store, "gate", {"name": "gate"})
    assert prof.spec.policy.policy_snapshot_mode == "required"  # the default with a name
    first = run_export(settings, store, prof, tmp_path / "a").bundle
    second = run_export(settings, store, prof, tmp_path / "b").bundle
    assert first.archive_path.read_bytes() == second.archive_path.read_bytes()
    assert verify_bundle(first.archive_path, roots).ok
    files = _members(first.archive_path)
    for path in (
        "data/policy/snapshot.json",
        "data/policy/evaluations.jsonl.zst",
        "data/consensus/vex_consensus.jsonl.zst",
        "data/raw/advisories/demo-advisories.jsonl",
    ):
        assert path in files
    manifest = orjson.loads(files["manifests/export.json"])
    digest = load_policy(POLICY, "policy.yaml").digest
    assert manifest["policy"]["digest"] == digest and manifest["policy"]["included"]
    assert manifest["policy"]["document"] == "gate"  # the stored policy's name, not a path
    assert prof.spec.policy.digest == digest  # pinned in the revision
    snapshot = orjson.loads(files["data/policy/snapshot.json"])
    assert digest in orjson.dumps(snapshot).decode()
    lines = zstandard.ZstdDecompressor().decompress(files["data/policy/evaluations.jsonl.zst"])
    # The snapshot names the uncompressed evaluations by digest and record count.
    described = snapshot["outputs"]["data/policy/evaluations.jsonl"]
    assert described["sha256"] == hashlib.sha256(lines).hexdigest()
    assert described["records"] == len(lines.splitlines()) == 2
    text = lines.decode()
    # The demo SBOM's demo-archiver 1.4.0 is affected by CVE-2026-90001 (fixed in 1.4.2); the
    # demo VEX says the Go parser finding is not_affected.
    assert "CVE-2026-90001" in text and "pkg:pypi/demo-archiver@1.4.0" in text
    assert "CVE-2026-90003" in text and "not_affected" in text
    assert "CVE-2026-90002" not in text  # demo-merge 2.0.7 is past the 2.0.5 fix


def test_the_revision_pins_the_policy_version(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, store, _roots = setup
    prof = _profile(settings, store, "pinned", {"name": "gate"})
    before = run_export(settings, store, prof, tmp_path / "a").bundle
    # A later upload of the same name is a new version; the revision still evaluates v1.
    stricter = POLICY.replace(b"fail: HIGH", b"fail: LOW").replace(b"warn: MEDIUM", b"warn: LOW")
    v2, created = PolicyStore(store).upload("default", "gate", stricter)
    assert created and v2.version == 2
    again = run_export(settings, store, prof, tmp_path / "b").bundle
    assert again.archive_path.read_bytes() == before.archive_path.read_bytes()
    # Naming the policy again in a new revision pins the newest version.
    r2 = _registry(settings, store).revise(
        "default",
        "pinned",
        parse_profile_spec({"kind": "json", "variant": "policy", "policy": {"name": "gate"}}),
    )
    assert (r2.revision, r2.spec.policy.digest) == (2, v2.digest)
    files = _members(run_export(settings, store, r2, tmp_path / "c").bundle.archive_path)
    assert orjson.loads(files["manifests/export.json"])["policy"]["digest"] == v2.digest
    # The same document uploaded again is no new version.
    same, created = PolicyStore(store).upload("default", "gate", stricter + b"# comment\n")
    assert (same.version, created) == (2, False)


def test_snapshot_modes(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, store, _roots = setup
    before = snapshot(store)
    # A policy the tenant does not have is refused when the revision is written.
    with pytest.raises(RequestValidationFailed, match=r"policy\.name: no policy 'nope'") as err:
        _profile(settings, store, "req", {"name": "nope", "policySnapshotMode": "required"})
    assert err.value.details == [
        {"field": "policy.name", "message": "no policy 'nope' for tenant 'default'"}
    ]
    # json:policy must name a policy, or say none explicitly.
    with pytest.raises(RequestValidationFailed, match="json:policy needs a policy"):
        _profile(settings, store, "implicit", {})
    with pytest.raises(RequestValidationFailed, match="needs a policy name"):
        _profile(settings, store, "opt-none", {"policySnapshotMode": "optional"})
    assert snapshot(store) == before  # nothing stored by the refusals
    optional = _profile(settings, store, "opt", {"name": "gate", "policySnapshotMode": "optional"})
    files = _members(run_export(settings, store, optional, tmp_path / "o").bundle.archive_path)
    assert "data/policy/snapshot.json" in files
    none = _profile(settings, store, "non", {"policySnapshotMode": "none"})
    files = _members(run_export(settings, store, none, tmp_path / "n").bundle.archive_path)
    assert "policy" not in orjson.loads(files["manifests/export.json"])
    assert "data/policy/snapshot.json" not in files


def test_an_altered_stored_policy_is_refused_at_run(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, store, _roots = setup
    prof = _profile(settings, store, "altered", {"name": "gate"})
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE policy_documents SET canonical = replace(canonical, 'HIGH', 'LOW')")
        )
    with pytest.raises(ConflictError, match="was altered in the store"):
        run_export(settings, store, prof, tmp_path / "x")
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").glob("*.tar.zst"))
