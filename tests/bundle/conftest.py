"""Fixtures for bundle tests: a small store, a key store, and a profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from export_center.ingest.interface import ParsedRecord
from export_center.model import Advisory, AffectedPackage, RangeEvent, VersionRange
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView
from export_center.settings import Settings, load_settings
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore


def advisory_record(upstream: str, version: str = "1.0.1", *, body: bytes | None = None) -> ParsedRecord:
    content = body or (
        b'{"id":"%s","modified":"2026-01-01T00:00:00Z","affected":[{"package":'
        b'{"ecosystem":"PyPI","name":"demo"},"ranges":[{"type":"ECOSYSTEM","events":'
        b'[{"introduced":"0"},{"fixed":"%s"}]}]}]}' % (upstream.encode(), version.encode())
    )
    return ParsedRecord(
        upstream_id=upstream,
        doc_type="advisory",
        format="osv",
        media_type="application/osv+json",
        content=content,
        normalized=Advisory(
            id=upstream,
            aliases=(f"CVE-2026-{abs(hash(upstream)) % 10000:04d}",),
            modified="2026-01-01T00:00:00Z",
            affected=(
                AffectedPackage(
                    "pypi",
                    "demo",
                    "PyPI",
                    ranges=(
                        VersionRange(
                            "ECOSYSTEM", (RangeEvent("introduced", "0"), RangeEvent("fixed", version))
                        ),
                    ),
                    fixed=(version,),
                ),
            ),
        ),
    )


def put(store: EvidenceStore, tenant: str, source: str, *records: ParsedRecord) -> None:
    with store.session() as s:
        t = store.lock_tenant(s, tenant)
        for r in records:
            store.put(s, t, source, r)
        s.commit()


@dataclass
class Env:
    settings: Settings
    store: EvidenceStore
    keys: KeyStore
    keyid: str
    trust_roots: Path
    out: Path

    def profile(self, name: str = "raw-all", **spec: object) -> ProfileRevisionView:
        reg = ProfileRegistry(self.store)
        body = {"kind": "json", "variant": "raw", **spec}
        return reg.create("default", name, parse_profile_spec(body))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    data = tmp_path / "data"
    settings = load_settings(env={"STELLA_DATA_DIR": str(data)})
    store = EvidenceStore.open(settings.database_url)
    keys = KeyStore.from_settings(settings)
    info = keys.generate(KeyType.ED25519)
    roots = tmp_path / "trusted.pem"
    roots.write_bytes(keys.export_public(info.keyid))
    put(
        store,
        "default",
        "feed-a",
        *(advisory_record(f"DEMO-{i:04d}") for i in range(30)),
    )
    put(store, "default", "feed-b", advisory_record("OTHER-1"), advisory_record("OTHER-2"))
    return Env(settings, store, keys, info.keyid, roots, tmp_path / "out")
