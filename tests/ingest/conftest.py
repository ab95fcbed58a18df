"""Fixtures for the format-reader tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.ingest import Outcome, ReadFn, read_bytes


@pytest.fixture
def read_corpus(corpora: Path) -> ReadFn:
    """Read ``corpora/<relative path>``; ``where`` is the relative path."""

    def read(rel: str) -> list[Outcome]:
        return read_bytes((corpora / rel).read_bytes(), rel)

    return read
