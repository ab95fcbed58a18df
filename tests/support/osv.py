"""Real advisories from the shared corpora, read with the project's own OSV ingester."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from export_center.ingest.detect import parse_document
from export_center.ingest.osv import OsvReader
from export_center.model import Advisory, ParsedRecord

#: feed name → files (globs relative to the corpora root)
FEEDS: dict[str, tuple[str, ...]] = {
    "PyPA Advisory Database": ("pypa-advisory-database/vulns/**/*.yaml",),
    "Go Vulnerability Database": ("golang-vulndb/data/osv/*.json",),
    "RustSec Advisory Database": ("rustsec-advisory-db-osv/crates/*.json",),
    "osv.dev santatracker": (
        "google-osv-scanner/internal/remediation/testdata/santatracker/vulns.json",
    ),
    "osv.dev zeppelin": (
        "google-osv-scalibr/guidedremediation/internal/strategy/override/testdata/"
        "zeppelin-server/vulnerabilities.json",
    ),
}


def read_osv_file(path: Path) -> Iterator[Advisory]:
    """Every advisory of one OSV file (a record or an osv.dev ``{"vulns": [...]}`` bundle).
    A refused record fails loudly: these corpora are expected to ingest cleanly."""
    content = path.read_bytes()
    doc = parse_document(content, str(path))
    for record in OsvReader().read(doc, content, str(path)):
        if not isinstance(record, ParsedRecord):
            raise AssertionError(f"{record.where}: {record.reason}")
        assert isinstance(record.normalized, Advisory)
        yield record.normalized


def corpus_advisories(
    corpora: Path, feeds: dict[str, tuple[str, ...]] = FEEDS
) -> Iterator[tuple[str, Advisory]]:
    """(feed name, advisory) for every file of ``feeds``, in a stable order."""
    for feed, patterns in feeds.items():
        for pattern in patterns:
            for path in sorted(corpora.glob(pattern)):
                for advisory in read_osv_file(path):
                    yield feed, advisory
