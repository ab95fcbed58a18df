"""The JSON Lines codec of evidence records in bundles: raw lines and normalized lines.

json:raw shards, mirror shards and the air-gap importer all go through this one module, so the
writer and the reader cannot drift apart (docs/bundle-format.md):

- a **raw line** carries one stored record's exact bytes, as a UTF-8 string when they decode as
  UTF-8, else base64 (``contentEncoding`` says which), with its metadata; ``digest`` is the
  sha256 of those bytes;
- a **normalized line** carries the same record's normalized JSON under ``data``.

Lines are written with sorted keys (the bundle's bytes are reproducible), but a reader never
relies on key order: lines are decoded as JSON (orjson) and validated as models (unknown keys
refused). The normalized ``data`` is returned in the store's canonical form
(:func:`~export_center.store.repository.canonical_json`), which is exactly the text the
exporter embedded, since the store keeps normalized data in that form.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from export_center.store.repository import RawView, canonical_json

__all__ = [
    "DIR_TYPES",
    "INCLUDE_TO_TYPE",
    "JSONL",
    "TYPE_DIRS",
    "NormalizedLine",
    "RawLine",
    "normalized_line",
    "parse_normalized_line",
    "parse_raw_line",
    "raw_line",
]

#: Record type -> its directory in a bundle (``data/raw/<dir>/...``), and back.
TYPE_DIRS: dict[str, str] = {"advisory": "advisories", "vex": "vex", "sbom": "sboms"}
DIR_TYPES: dict[str, str] = {v: k for k, v in TYPE_DIRS.items()}
#: A profile's ``include`` entries that name record types ("findings" is json:policy's).
INCLUDE_TO_TYPE: dict[str, str] = {"advisories": "advisory", "vex": "vex", "sboms": "sbom"}
JSONL = "application/x-ndjson"

_DIGEST = r"^sha256:[0-9a-f]{64}$"


# -- encoding (exporters) -------------------------------------------------------------------


def raw_line(rec: RawView) -> bytes:
    """The raw line of ``rec`` (without its newline).

    Keys in sorted order, each value serialized by orjson: the bytes of
    ``orjson.dumps(<the line as a dict>, option=OPT_SORT_KEYS)`` (a test compares the two on
    the real corpora), built without the dict, which took 2.3 times as long with the content
    in it (measured on 40,000 real records; line building is a large share of a json:raw
    export's own CPU).
    """
    try:
        content, encoding = rec.content.decode("utf-8"), b'"utf-8"'
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(rec.content).decode(), b'"base64"'
    return b"".join(
        (
            b'{"content":',
            _dumps(content),
            b',"contentEncoding":',
            encoding,
            b',"digest":',
            _dumps(rec.digest),
            b',"format":',
            _dumps(rec.format),
            b',"mediaType":',
            _dumps(rec.media_type),
            b',"observationId":',
            _dumps(rec.observation_id),
            b',"revision":',
            _dumps(rec.revision),
            b',"source":',
            _dumps(rec.source),
            b',"supersedes":',
            _dumps(rec.supersedes),
            b',"upstreamId":',
            _dumps(rec.upstream_id),
            b',"withdrawn":',
            b"true" if rec.withdrawn else b"false",
            b"}",
        )
    )


_dumps = orjson.dumps


def normalized_line(rec: RawView, data: str) -> bytes:
    """The normalized line of ``rec`` (without its newline); ``data`` is the store's text."""
    return orjson.dumps(
        {
            "data": orjson.Fragment(data),  # already canonical (sorted keys) in the store
            "observationId": rec.observation_id,
            "recordType": rec.doc_type,
            "source": rec.source,
            "upstreamId": rec.upstream_id,
            "withdrawn": rec.withdrawn,
        },
        option=orjson.OPT_SORT_KEYS,
    )


# -- decoding (the importer) ----------------------------------------------------------------


class _Line(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class RawLine(_Line):
    """A raw line, validated (the bytes still have to be checked against ``digest``)."""

    content: str
    content_encoding: Literal["utf-8", "base64"]
    digest: str = Field(pattern=_DIGEST)
    format: str = Field(min_length=1, max_length=32)
    media_type: str = Field(min_length=1, max_length=96)
    observation_id: str
    revision: int = Field(ge=1)
    source: str
    supersedes: str | None
    upstream_id: str = Field(min_length=1, max_length=512)
    withdrawn: bool

    def content_bytes(self) -> bytes:
        """The record's bytes.

        Raises:
            ValueError: ``base64`` content that is not base64.
        """
        if self.content_encoding == "utf-8":
            return self.content.encode("utf-8")
        try:
            return base64.b64decode(self.content, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"{self.observation_id}: content is not base64") from e


class NormalizedLine(_Line):
    """A normalized line, validated; :attr:`text` is ``data`` in the store's canonical form."""

    # strict: decoded by orjson first, so a value is taken as written ("true" is no bool).
    model_config = ConfigDict(strict=True)

    data: dict[str, Any]
    observation_id: str
    record_type: str
    source: str
    upstream_id: str
    withdrawn: bool

    @property
    def text(self) -> str:
        return canonical_json(self.data)


def parse_raw_line(line: bytes) -> RawLine:
    """Decode one raw line.

    Raises:
        ValueError: not JSON, or not a raw line (a field missing, malformed or unknown).
    """
    try:
        return RawLine.model_validate_json(line)
    except ValidationError as e:
        raise ValueError(f"invalid raw line: {e.errors()[0]['msg']}") from e


def parse_normalized_line(line: bytes) -> NormalizedLine:
    """Decode one normalized line, whatever the order of its keys.

    Raises:
        ValueError: not JSON, or not a normalized line.
    """
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from e
    try:
        return NormalizedLine.model_validate(doc)
    except ValidationError as e:
        raise ValueError("not a normalized line") from e
