"""Fixtures for the importer tests (shared helpers live in tests/support/mirror.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from export_center.signing.keyfile import FileSigner
from support.mirror import Instance, new_signer


@pytest.fixture
def make_instance(tmp_path: Path) -> Callable[..., Instance]:
    def make(name: str, db: Path | None = None) -> Instance:
        return Instance.create(tmp_path / name, db)

    return make


@pytest.fixture
def signer() -> FileSigner:
    return new_signer()
