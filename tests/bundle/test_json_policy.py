"""json:policy bundles: the policy overlay next to json:raw content, per policySnapshotMode."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import orjson
import pytest
import zstandard

from export_center.bundle.verify import verify_bundle
from export_center.errors import BadInputError
from export_center.exporter import run_export
from export_center.ingest.pipeline import ingest_paths
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.policy.document import load_policy
from export_center.settings import load_settings
from export_center.signing.interface import KeyType, load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore

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
    key = keys.generate(KeyType.ED25519)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_bytes(POLICY)
    return settings, store, load_trust_roots(keys.export_public(key.keyid)), policy_file


def _profile(store: EvidenceStore, name: str, policy: dict[str, object]):  # type: ignore[no-untyped-def]
    spec = parse_profile_spec({"kind": "json", "variant": "policy", "policy": policy})
    return ProfileRegistry(store).create("default", name, spec)


def test_policy_parts_are_exported_and_verify(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, store, roots, policy_file = setup
    prof = _profile(store, "gate", {"document": str(policy_file), "policySnapshotMode": "required"})
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


def test_snapshot_modes(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, store, _roots, _policy_file = setup
    missing = str(tmp_path / "nope.yaml")
    required = _profile(store, "req", {"document": missing, "policySnapshotMode": "required"})
    with pytest.raises(BadInputError, match=r"nope\.yaml"):
        run_export(settings, store, required, tmp_path / "r")
    assert not list((tmp_path / "r").glob("*.tar.zst"))
    optional = _profile(store, "opt", {"document": missing, "policySnapshotMode": "optional"})
    files = _members(run_export(settings, store, optional, tmp_path / "o").bundle.archive_path)
    assert "data/policy/snapshot.json" not in files
    policy = orjson.loads(files["manifests/export.json"])["policy"]
    assert policy["included"] is False and "nope.yaml" in policy["reason"]
    none = _profile(store, "non", {"document": missing, "policySnapshotMode": "none"})
    files = _members(run_export(settings, store, none, tmp_path / "n").bundle.archive_path)
    assert "policy" not in orjson.loads(files["manifests/export.json"])
