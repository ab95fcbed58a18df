"""Fixtures for the importer tests (shared helpers live in tests/mirror/mirror_support.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mirror"))

from mirror_support import Instance, new_signer

from export_center.signing.keyfile import FileSigner


@pytest.fixture
def make_instance(tmp_path: Path) -> Callable[..., Instance]:
    def make(name: str, db: Path | None = None) -> Instance:
        return Instance.create(tmp_path / name, db)

    return make


@pytest.fixture
def signer() -> FileSigner:
    return new_signer()
