"""Fixtures for bundle tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_center.settings import load_settings
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore
from support.bundle import Env, advisory_record, put


@pytest.fixture
def env(tmp_path: Path) -> Env:
    data = tmp_path / "data"
    settings = load_settings(env={"STELLA_DATA_DIR": str(data)})
    store = EvidenceStore.open(settings.database_url)
    keys = KeyStore.from_settings(settings)
    info = keys.generate(KeyType.ED25519, tenants=["default"])
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
