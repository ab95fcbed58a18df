"""Whole-corpus ingestion on SQLite and PostgreSQL, and a json:raw export of it that verifies."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from export_center.exporter import run_export
from export_center.ingest.pipeline import IngestReport, ingest_paths
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.settings import load_settings
from export_center.signing.interface import KeyType, load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore
from support.records import CORPUS_SOURCES

pytestmark = pytest.mark.slow  # whole-corpus, many subprocesses or real tools

# (source name, corpus folder): advisories, VEX and SBOMs.
SOURCES = CORPUS_SOURCES


def _ingest_all(store: EvidenceStore, corpora: Path) -> dict[str, IngestReport]:
    return {
        name: ingest_paths(
            store, [corpora / folder], source=name, tenant="default", max_bytes=64 << 20
        )
        for name, folder in SOURCES
    }


@pytest.mark.slow
def test_sqlite_and_postgresql_hold_the_same_evidence(
    corpora: Path, tmp_path: Path, pg_url: str
) -> None:
    lite = EvidenceStore.open(f"sqlite:///{tmp_path / 'lite.db'}")
    pg = EvidenceStore.open(pg_url)
    lite_reports = _ingest_all(lite, corpora)
    pg_reports = _ingest_all(pg, corpora)
    assert lite.stats("default") == pg.stats("default")
    assert lite.current_sequence("default") == pg.current_sequence("default")
    counts = lite.counts("default", lite.current_sequence("default"))
    # Every OSV advisory of the three big feeds is accepted (NOTES.md: 2,661 + 4,291 + 1,206).
    by_source = {(r.source, r.doc_type): r.records for r in lite.stats("default")}
    assert by_source[("pypa", "advisory")] == 2661
    assert by_source[("go-vulndb", "advisory")] == 4291
    assert by_source[("rustsec", "advisory")] == 1206
    assert by_source[("osv-scanner", "advisory")] == 170
    assert counts["vex"] > 250 and counts["sbom"] > 20
    # Refusals are the same on both, and each names a file.
    for name in lite_reports:
        assert [r.where for r in lite_reports[name].refused] == [
            r.where for r in pg_reports[name].refused
        ]
    shelter = {Path(r.where).name: r.reason for r in lite_reports["bom-shelter"].refused}
    assert "malformed JSON" in shelter["powershell-2.2.6.spdx.json"]


def test_reingest_is_a_noop_and_one_change_is_one_revision(corpora: Path, tmp_path: Path) -> None:
    store = EvidenceStore.open(f"sqlite:///{tmp_path / 's.db'}")
    src = corpora / "rustsec-advisory-db-osv" / "crates"
    first = ingest_paths(store, [src], source="rustsec", tenant="default", max_bytes=1 << 24)
    assert first.inserted == 1206 and not first.refused
    seq = store.current_sequence("default")
    again = ingest_paths(store, [src], source="rustsec", tenant="default", max_bytes=1 << 24)
    assert again.unchanged == 1206 and again.stored == 0
    assert store.current_sequence("default") == seq

    # Change one document: exactly one new revision and one change-log entry.
    victim = sorted(src.glob("*.json"))[0]
    changed_dir = tmp_path / "changed"
    changed_dir.mkdir()
    doc = orjson.loads(victim.read_bytes())
    doc["summary"] = (doc.get("summary") or "") + " (edited)"
    (changed_dir / victim.name).write_bytes(orjson.dumps(doc))
    third = ingest_paths(
        store, [changed_dir], source="rustsec", tenant="default", max_bytes=1 << 24
    )
    assert (third.revisions, third.inserted, third.unchanged) == (1, 0, 0)
    changes = list(store.changes("default", seq, store.current_sequence("default")))
    assert len(changes) == 1
    assert changes[0].kind == "revision"
    assert changes[0].observation_id.endswith(f":{doc['id']}:2")
    assert changes[0].previous_observation_id.endswith(f":{doc['id']}:1")  # type: ignore[union-attr]


@pytest.mark.slow
def test_json_raw_export_of_all_corpora_verifies(corpora: Path, tmp_path: Path) -> None:
    from export_center.bundle.verify import verify_bundle

    settings = load_settings(env={"STELLA_DATA_DIR": str(tmp_path / "data")})
    store = EvidenceStore.open(settings.database_url)
    _ingest_all(store, corpora)
    keys = KeyStore.from_settings(settings)
    key = keys.generate(KeyType.ED25519, tenants=["default"])
    prof = ProfileRegistry(store).create(
        "default", "everything", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    outcome = run_export(settings, store, prof, tmp_path / "out")
    report = verify_bundle(
        outcome.bundle.archive_path, load_trust_roots(keys.export_public(key.keyid))
    )
    assert report.ok, report.as_json()
    assert report.manifest is not None
    seq = store.current_sequence("default")
    store_counts = store.counts("default", seq)
    assert report.manifest.counts == {
        "advisories": store_counts["advisory"],
        "vex": store_counts["vex"],
        "sboms": store_counts["sbom"],
    }
    # Record counts per shard add up to the store's counts too.
    per_type: dict[str, int] = {}
    for entry in report.manifest.contents:
        if entry.path.startswith("data/raw/"):
            kind = entry.path.split("/")[2]
            per_type[kind] = per_type.get(kind, 0) + (entry.records or 0)
    assert per_type == {k: v for k, v in report.manifest.counts.items() if v}
    shutil.rmtree(tmp_path / "out")
