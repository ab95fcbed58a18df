"""Helpers for the format-reader tests: read documents the way ingest/pipeline.py does."""

from __future__ import annotations

from collections.abc import Callable

from export_center.ingest.interface import RecordRefused, Skipped
from export_center.ingest.pipeline import InputDocument, parse_records
from export_center.model import ParsedRecord

Outcome = ParsedRecord | RecordRefused | Skipped
ReadFn = Callable[[str], list[Outcome]]


def read_bytes(content: bytes, where: str) -> list[Outcome]:
    """parse → detect → read, refusals and skips as values (pipeline.parse_records)."""
    return list(parse_records(InputDocument(where, content)))


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
