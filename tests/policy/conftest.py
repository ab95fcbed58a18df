"""Session fixtures: the corpora's advisories, read once with the real ingest readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_center.model import Advisory
from export_center.policy.matching import AdvisoryIndex
from support.policy import read_advisories


@pytest.fixture(scope="session")
def corpus_advisories(corpora: Path) -> list[Advisory]:
    advisories, refused = read_advisories(corpora)
    # NOTES.md: 8,711 OSV records (less trivy-db's 19 fixtures) plus the Node WG's npm records.
    assert len(advisories) > 9000, len(advisories)
    assert refused < 50, refused
    return advisories


@pytest.fixture(scope="session")
def corpus_index(corpus_advisories: list[Advisory]) -> AdvisoryIndex:
    return AdvisoryIndex.build(corpus_advisories)
