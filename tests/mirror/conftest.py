"""Fixtures for the mirror tests: a corpus-subset store built once per session (copied per test),
instances with their own data directories, and signers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from export_center.ingest.pipeline import ingest_paths
from export_center.signing.keyfile import FileSigner
from export_center.store.repository import EvidenceStore
from support.mirror import SUBSET, TENANT, Instance, new_signer


@pytest.fixture(scope="session")
def subset_db(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding the corpus subset (ingested once; tests copy it)."""
    path = tmp_path_factory.mktemp("subset") / "stella.db"
    store = EvidenceStore.open(f"sqlite:///{path}")
    for source, folder in SUBSET:
        ingest_paths(store, [corpora / folder], source=source, tenant=TENANT, max_bytes=64 << 20)
    store.engine.dispose()
    return path


@pytest.fixture
def make_instance(tmp_path: Path) -> Callable[..., Instance]:
    def make(name: str, db: Path | None = None) -> Instance:
        return Instance.create(tmp_path / name, db)

    return make


@pytest.fixture
def signer() -> FileSigner:
    return new_signer()
