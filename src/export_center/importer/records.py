"""Reading a verified, decrypted mirror bundle back into typed records.

Every line is validated at this boundary (pydantic, unknown fields refused) and checked against
what it claims: the raw bytes hash to their digest, the observation id is the one its tenant,
source, upstream id and revision make, the raw and normalized lines of a shard pair name the same
records in the same order, and SBOM files match their index entries. Lines are decoded with the
bundle's one JSONL codec (:mod:`export_center.bundle.jsonl`), whatever the order of their keys;
the normalized JSON is stored in the store's canonical form, the text the exporter embedded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from export_center.bundle.jsonl import (
    TYPE_DIRS,
    RawLine,
    parse_normalized_line,
    parse_raw_line,
)
from export_center.digests import prefixed, sha256_hex
from export_center.errors import BadInputError, VerificationError
from export_center.mirror.layout import (
    INDEX_SCHEMA,
    SHARD_SUFFIX,
    index_path,
    iter_shard_lines,
    sbom_path,
    shard_path,
)
from export_center.model import (
    Component,
    Normalized,
    Sbom,
    VexDocument,
    advisory_from_json,
    component_from_json,
    vex_statement_from_json,
)
from export_center.store.repository import check_source, observation_id

_CHECK = "records"
_DIGEST = r"^sha256:[0-9a-f]{64}$"
_MAX_SBOM_BYTES = 1 << 30


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IndexEntry(_Line):
    observationId: str  # noqa: N815
    source: str
    upstreamId: str = Field(min_length=1, max_length=512)  # noqa: N815
    revision: int = Field(ge=1)
    digest: str = Field(pattern=_DIGEST)
    bytes: int = Field(ge=0)
    withdrawn: bool
    normalized: str
    line: int = Field(ge=0)
    raw: str
    format: str | None = None
    mediaType: str | None = None  # noqa: N815
    supersedes: str | None = None
    subject: str | None = None


class IndexFile(_Line):
    schema_: str = Field(alias="schema")
    recordType: Literal["advisory", "vex", "sbom"]  # noqa: N815
    records: list[IndexEntry]


@dataclass(frozen=True)
class ImportRecord:
    """One record as the importer writes it."""

    doc_type: str
    source: str
    upstream_id: str
    revision: int
    observation_id: str
    format: str
    media_type: str
    digest: str
    content: bytes
    withdrawn: bool
    supersedes: str | None
    data: str  # the normalized JSON, exactly as exported
    normalized: Normalized


def _fail(where: str, msg: str) -> VerificationError:
    return VerificationError(_CHECK, f"{where}: {msg}")


def normalized_from_json(doc_type: str, d: dict[str, Any]) -> Normalized:
    """Typed normalized record from its JSON (inverse of ``model.to_json_dict``).

    Raises:
        KeyError, TypeError, ValueError, AttributeError: the JSON does not have the record's
            shape.
    """
    if doc_type == "advisory":
        return advisory_from_json(d)
    if doc_type == "vex":
        return VexDocument(
            id=d["id"],
            format=d["format"],
            provider=d["provider"],
            statements=tuple(vex_statement_from_json(s) for s in d.get("statements", ())),
            timestamp=d.get("timestamp"),
        )
    components: tuple[Component, ...] = tuple(
        component_from_json(c) for c in d.get("components", ())
    )
    return Sbom(
        subject=d["subject"],
        format=d["format"],
        spec_version=d["spec_version"],
        name=d.get("name"),
        components=components,
        vex=tuple(vex_statement_from_json(s) for s in d.get("vex", ())),
    )


def _record(
    tenant: str,
    doc_type: str,
    raw: RawLine,
    content: bytes,
    norm_line: bytes,
    where: str,
) -> ImportRecord:
    try:
        check_source(raw.source)
    except BadInputError as e:
        raise _fail(where, e.message) from e
    digest = prefixed(sha256_hex(content))
    if digest != raw.digest:
        raise _fail(where, f"{raw.observation_id}: content does not hash to {raw.digest}")
    expected = observation_id(tenant, raw.source, raw.upstream_id, raw.revision)
    if raw.observation_id != expected:
        raise _fail(where, f"observation id {raw.observation_id!r} is not {expected!r}")
    try:
        norm = parse_normalized_line(norm_line)
    except ValueError as e:
        raise _fail(where, str(e)) from e
    if (
        norm.observation_id != raw.observation_id
        or norm.record_type != doc_type
        or norm.source != raw.source
        or norm.upstream_id != raw.upstream_id
        or norm.withdrawn != raw.withdrawn
    ):
        raise _fail(where, f"{raw.observation_id}: raw and normalized lines disagree")
    try:
        normalized = normalized_from_json(doc_type, norm.data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        # AttributeError too: a list or string where an object belongs (``.get`` on it).
        raise _fail(where, f"{raw.observation_id}: normalized data: {e!r}") from e
    return ImportRecord(
        doc_type=doc_type,
        source=raw.source,
        upstream_id=raw.upstream_id,
        revision=raw.revision,
        observation_id=raw.observation_id,
        format=raw.format,
        media_type=raw.media_type,
        digest=raw.digest,
        content=content,
        withdrawn=raw.withdrawn,
        supersedes=raw.supersedes,
        data=norm.text,
        normalized=normalized,
    )


def _raw_line(line: bytes, where: str) -> tuple[RawLine, bytes]:
    try:
        raw = parse_raw_line(line)
        return raw, raw.content_bytes()
    except ValueError as e:
        raise _fail(where, str(e)) from e


def _sources(paths: Sequence[str], layer: str, type_dir: str) -> list[str]:
    prefix = f"data/{layer}/{type_dir}/"
    return sorted(
        (
            p[len(prefix) : -len(SHARD_SUFFIX)]
            for p in paths
            if p.startswith(prefix) and p.endswith(SHARD_SUFFIX) and "/" not in p[len(prefix) :]
        ),
        key=lambda s: s.encode(),
    )


def iter_bundle_records(
    root: Path, tenant: str, doc_types: Sequence[str], paths: Sequence[str]
) -> Iterator[ImportRecord]:
    """Every record of the bundle rooted at ``root`` (plaintext), type by type in export
    order; ``paths`` are the bundle's data files (from the signed manifest).

    Raises:
        VerificationError: (check ``records``) any line or file does not hold what it claims.
        UnsafeArchiveError: a shard is a decompression bomb or corrupt.
    """
    known = set(paths)
    for doc_type in sorted(doc_types):
        type_dir = TYPE_DIRS[doc_type]
        if doc_type == "sbom":
            yield from _sboms(root, tenant, known)
            continue
        raw_sources = _sources(paths, "raw", type_dir)
        if raw_sources != _sources(paths, "normalized", type_dir):
            raise _fail(f"data/*/{type_dir}", "raw and normalized shards differ")
        for source in raw_sources:
            raw_p = shard_path("raw", doc_type, source)
            norm_p = shard_path("normalized", doc_type, source)
            raws = iter_shard_lines(root / raw_p, raw_p)
            norms = iter_shard_lines(root / norm_p, norm_p)
            pairs = _zip_strict(raws, norms, f"{raw_p} / {norm_p}")
            for n, (raw_b, norm_b) in enumerate(pairs, 1):
                where = f"{raw_p}:{n}"
                raw, content = _raw_line(raw_b, where)
                if raw.source != source:
                    raise _fail(where, f"source {raw.source!r} in the shard of {source!r}")
                yield _record(tenant, doc_type, raw, content, norm_b, where)


def layout_paths(root: Path, doc_types: Sequence[str], paths: Sequence[str]) -> set[str]:
    """The data files the mirror layout accounts for (shards, indexes, SBOM files); anything
    else under ``data/`` other than the policy parts is unexpected."""
    known: set[str] = set()
    for doc_type in doc_types:
        type_dir = TYPE_DIRS[doc_type]
        known.add(index_path(doc_type))
        for layer in ("raw", "normalized"):
            known.update(shard_path(layer, doc_type, s) for s in _sources(paths, layer, type_dir))
        if doc_type == "sbom":
            known.update(e.raw for e in load_index(root, "sbom").records)
    return known


def load_index(root: Path, doc_type: str) -> IndexFile:
    """The validated index of one record type.

    Raises:
        VerificationError: missing, not JSON, or not an index of that type.
    """
    path = index_path(doc_type)
    try:
        index = IndexFile.model_validate_json((root / path).read_bytes())
    except FileNotFoundError as e:
        raise _fail(path, "missing") from e
    except ValidationError as e:
        raise _fail(path, f"invalid index: {e.errors()[0]['msg']}") from e
    if index.schema_ != INDEX_SCHEMA or index.recordType != doc_type:
        raise _fail(path, "not a mirror index of this record type")
    return index


def _sboms(root: Path, tenant: str, known: set[str]) -> Iterator[ImportRecord]:
    index = load_index(root, "sbom")
    by_source: dict[str, list[IndexEntry]] = {}
    for e in index.records:
        by_source.setdefault(e.source, []).append(e)
    norm_sources = _sources(sorted(known), "normalized", "sboms")
    if sorted(by_source, key=lambda s: s.encode()) != norm_sources:
        raise _fail(index_path("sbom"), "sources differ from the normalized SBOM shards")
    for source in norm_sources:
        norm_p = shard_path("normalized", "sbom", source)
        entries = by_source[source]
        norms = iter_shard_lines(root / norm_p, norm_p)
        for n, (entry, norm_b) in enumerate(_zip_strict(iter(entries), norms, norm_p), 1):
            where = f"{norm_p}:{n}"
            expected_path = sbom_path(entry.source, entry.upstreamId)
            if entry.raw != expected_path or entry.raw not in known or entry.line != n - 1:
                raise _fail(where, f"index entry {entry.observationId}: bad raw path or line")
            if entry.format is None or entry.mediaType is None:
                raise _fail(where, f"index entry {entry.observationId}: format missing")
            size = (root / entry.raw).stat().st_size
            if size != entry.bytes or size > _MAX_SBOM_BYTES:
                raise _fail(entry.raw, f"{size} bytes, index says {entry.bytes}")
            content = (root / entry.raw).read_bytes()
            raw = RawLine(
                content="",
                content_encoding="utf-8",
                digest=entry.digest,
                format=entry.format,
                media_type=entry.mediaType,
                observation_id=entry.observationId,
                revision=entry.revision,
                source=entry.source,
                supersedes=entry.supersedes,
                upstream_id=entry.upstreamId,
                withdrawn=entry.withdrawn,
            )
            yield _record(tenant, "sbom", raw, content, norm_b, where)


def _zip_strict(a: Iterator[Any], b: Iterator[bytes], where: str) -> Iterator[tuple[Any, bytes]]:
    sentinel = object()
    while True:
        x, y = next(a, sentinel), next(b, sentinel)
        if x is sentinel and y is sentinel:
            return
        if x is sentinel or y is sentinel:
            raise _fail(where, "the two files hold different numbers of records")
        assert isinstance(y, bytes)
        yield x, y
