"""Issue 16: the optimized trivy.db writer writes the bytes of the straightforward one.

The reference (support/trivy_reference.py) maps each advisory in this process from the model,
stages rows in SQLite and reads them back with ORDER BY. The writer under test maps straight
from JSON, spills sorted runs and, for large inputs, maps in worker processes. On the real
corpora both must produce the same file, whatever the input form, order, run size or number of
workers.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import orjson
import pytest

from export_center.model import Advisory, to_json_dict
from export_center.trivy import dbwriter
from export_center.trivy.dbwriter import write_trivy_db
from export_center.trivy.mapping import DataSource
from support.bolt import GoCheck, digest
from support.osv import corpus_advisories
from support.trivy_reference import write_trivy_db_reference

pytestmark = pytest.mark.slow  # whole corpora, several builds, worker processes

SOURCES = {
    "PyPA Advisory Database": DataSource(
        "pypa", "PyPA Advisory Database", "https://github.com/pypa/advisory-database"
    ),
}
#: sha256 of the corpus trivy.db as commit 15c98c5 wrote it (see the test).
PREVIOUS_WRITER_SHA256 = "49b3261d930ca198461b751930a153733de5b6c27ffff578f0495ba4f4e56db7"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_optimized_writer_equals_the_reference_on_the_corpora(
    corpora: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gocheck: GoCheck
) -> None:
    advisories: list[tuple[str, Advisory]] = list(corpus_advisories(corpora))
    assert len(advisories) > 8000
    reference = write_trivy_db_reference(advisories, tmp_path / "reference.db", sources=SOURCES)
    expected = sha(tmp_path / "reference.db")
    # The reference shares the mapping with the writer under test; this digest does not: it is
    # the corpus database written by the code before the optimization (commit 15c98c5, the
    # SQLite-staged writer mapping from the model). Change it only with an intended change of
    # the mapping or of the corpora.
    assert expected == PREVIOUS_WRITER_SHA256

    # JSON bytes, as the store hands them out, in this process (one run).
    as_bytes = [(feed, orjson.dumps(to_json_dict(adv))) for feed, adv in advisories]
    report = write_trivy_db(as_bytes, tmp_path / "bytes.db", sources=SOURCES, workers=1)
    assert sha(tmp_path / "bytes.db") == expected
    assert report == reference

    # Small runs and worker processes: many runs to merge, three mappers; dicts, shuffled.
    monkeypatch.setattr(dbwriter, "RUN_BUDGET", 256 << 10)
    monkeypatch.setattr(dbwriter, "BATCH", 200)
    shuffled = [(feed, to_json_dict(adv)) for feed, adv in advisories]
    random.Random(16).shuffle(shuffled)
    report = write_trivy_db(shuffled, tmp_path / "workers.db", sources=SOURCES, workers=3)
    assert sha(tmp_path / "workers.db") == expected
    assert report == reference

    # The models themselves, two workers.
    report = write_trivy_db(advisories, tmp_path / "models.db", sources=SOURCES, workers=2)
    assert sha(tmp_path / "models.db") == expected
    assert report == reference
    # Read back by Go's bbolt (tx.Check and a full walk): the same entries our reader sees.
    report_go = gocheck(tmp_path / "workers.db")
    assert report_go["digest"] == digest(tmp_path / "reference.db")
    assert report_go["keys"] > 20000
