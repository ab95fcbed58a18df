"""``to_json_dict`` (an orjson round trip) gives the values the field-by-field recursion gave, on
every record of the corpora, so the stored normalized JSON keeps its bytes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from export_center.model import ParsedRecord, to_json_dict
from export_center.store.repository import canonical_json
from support.ingest import read_bytes
from support.records import CORPUS_SOURCES


def _recursive(obj: Any) -> Any:
    """The implementation to_json_dict had before (the reference)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _recursive(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_recursive(v) for v in obj]
    return obj


@pytest.mark.slow
def test_to_json_dict_equals_the_recursive_reference_on_every_corpus_record(
    corpora: Path,
) -> None:
    checked = 0
    for _source, folder in CORPUS_SOURCES:
        for path in sorted((corpora / folder).rglob("*")):
            if not path.is_file() or path.suffix not in (".json", ".yaml", ".yml"):
                continue
            for rec in read_bytes(path.read_bytes(), str(path)):
                if not isinstance(rec, ParsedRecord):
                    continue
                ours, reference = to_json_dict(rec.normalized), _recursive(rec.normalized)
                assert ours == reference, path
                assert canonical_json(ours) == canonical_json(reference), path
                checked += 1
    # Every advisory, VEX document and SBOM of the corpora went through (SOURCES.md counts).
    assert checked > 9000
