"""Helpers for the format-reader tests: read documents the way ingest/pipeline.py does."""

from __future__ import annotations

from collections.abc import Callable

from export_center.errors import DocumentRefused
from export_center.ingest.detect import detect, parse_document
from export_center.ingest.interface import RecordRefused
from export_center.model import ParsedRecord

Outcome = ParsedRecord | RecordRefused
ReadFn = Callable[[str], list[Outcome]]


def read_bytes(content: bytes, where: str) -> list[Outcome]:
    """parse → detect → read, with a document refusal turned into a value (as pipeline.py)."""
    try:
        doc = parse_document(content, where)
        return list(detect(doc, where).read(doc, content, where))
    except DocumentRefused as e:
        return [RecordRefused(e.where, e.reason)]


def only_record(outcomes: list[Outcome]) -> ParsedRecord:
    assert len(outcomes) == 1, outcomes
    rec = outcomes[0]
    assert isinstance(rec, ParsedRecord), rec
    return rec


def only_refusal(outcomes: list[Outcome]) -> RecordRefused:
    assert len(outcomes) == 1, outcomes
    rec = outcomes[0]
    assert isinstance(rec, RecordRefused), rec
    return rec
