"""Ingest writes the same rows, and json:raw the same lines, as before the batched writer.

The expected digests were computed by the record-at-a-time writer (see support/fingerprint.py);
every corpus source is ingested into its own tenant, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from export_center.ingest.pipeline import ingest_paths
from export_center.store.repository import EvidenceStore
from support.fingerprint import tenant_fingerprint, tenant_name
from support.records import CORPUS_SOURCES

EXPECTED = Path(__file__).with_name("expected") / "corpus_fingerprints.json"

#: Sources whose stored identity changed on purpose since the fingerprints were taken, with why.
#: Their content is checked by the identity tests instead (tests/ingest/test_identity.py).
CHANGED_ON_PURPOSE: dict[str, str] = {
    "vexhub": "OpenVEX documents sharing an @id about other products are kept apart "
    "(59 files: 57 records, no longer 1 + 36 + 13 + 3 revisions)",
    "cyclonedx-examples": "CycloneDX VEX documents without serialNumber keyed by the same "
    "subject but about other products (Use-Cases 4, 5, 8; CISA Case-6) are kept apart",
}


@pytest.mark.slow
def test_every_corpus_is_stored_byte_for_byte_as_before(corpora: Path, db_url: str) -> None:
    expected: dict[str, Any] = orjson.loads(EXPECTED.read_bytes())
    store = EvidenceStore.open(db_url)
    differences = {}
    for source, folder in CORPUS_SOURCES:
        if source in CHANGED_ON_PURPOSE:
            continue
        tenant = tenant_name(source)
        ingest_paths(store, [corpora / folder], source=source, tenant=tenant, max_bytes=64 << 20)
        got = tenant_fingerprint(store, tenant)
        if got != expected[source]:
            differences[source] = {
                part: (expected[source][part], value)
                for part, value in got.items()
                if value != expected[source][part]
            }
    assert not differences, sorted(differences)
