"""Where things live inside a mirror bundle, and the line formats of its shards.

Layout (docs/mirror.md, "Layout")::

    data/raw/advisories/<source>.jsonl.zst        raw lines (json:raw's raw line format)
    data/raw/vex/<source>.jsonl.zst               idem, for VEX documents
    data/raw/sboms/<subject-digest>/sbom.json     the SBOM's exact stored bytes
    data/normalized/{advisories,vex,sboms}/<source>.jsonl.zst   normalized lines
    data/indexes/{advisories,vex,sboms}.index.json             one entry per record
    data/policy/...  data/consensus/...            when the profile names a policy
    tuf/{root,targets,snapshot,timestamp}.json    TUF metadata over every file under data/

Shard lines are json:raw's lines (the codec :mod:`export_center.bundle.jsonl`), so a mirror
shard and a json:raw shard of the same records hold the same lines; each shard is one zstd
frame with its content size and checksum. ``<subject-digest>`` is the sha256 (hex) of
``<source>\\n<upstream id>`` of the SBOM document: stable across revisions (a new revision
replaces the same path) and distinct for two documents about the same subject; the subject
itself is in the index.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import zstandard

from export_center.bundle.jsonl import TYPE_DIRS
from export_center.bundle.staging import StagedWriter
from export_center.digests import sha256_hex
from export_center.errors import UnsafeArchiveError

DATA = "data/"
TUF_DIR = "tuf"
SHARD_SUFFIX = ".jsonl.zst"
SHARD_TYPE = "application/x-ndjson+zstd"
JSON_TYPE = "application/json"
INDEX_SCHEMA = "https://stellaops.io/export-center/mirror-index/v1"
#: The policy parts (json:policy's files) a mirror carries when its profile names a policy; the
#: importer keeps the newest set next to the store.
POLICY_PREFIXES = ("data/policy/", "data/consensus/")

#: Import-side guards for one decompressed shard (docs/bundle-format.md, "Reading archives
#: safely": a small frame can declare or produce gigabytes). Real advisory JSON compresses 5-20x.
MAX_SHARD_RATIO = 1000
MAX_SHARD_BYTES = 16 * 1024**3
MAX_LINE_BYTES = 256 * 1024**2
_CHUNK = 1 << 20

Layer = Literal["raw", "normalized"]


def shard_path(layer: Layer, doc_type: str, source: str) -> str:
    return f"data/{layer}/{TYPE_DIRS[doc_type]}/{source}{SHARD_SUFFIX}"


def index_path(doc_type: str) -> str:
    return f"data/indexes/{TYPE_DIRS[doc_type]}.index.json"


def sbom_key(source: str, upstream_id: str) -> str:
    return sha256_hex(f"{source}\n{upstream_id}".encode())


def sbom_path(source: str, upstream_id: str) -> str:
    return f"data/raw/sboms/{sbom_key(source, upstream_id)}/sbom.json"


def compress_file(src: Path, out: StagedWriter, level: int) -> None:
    """Compress ``src`` into one zstd frame with content size and checksum.

    The size is pledged up front, so the frame header carries it (the importer checks it
    before decompressing). Multi-threaded mode with one worker, like the archive writer: its
    bytes do not depend on how the input is cut into writes.
    """
    size = src.stat().st_size
    cctx = zstandard.ZstdCompressor(
        level=level, write_checksum=True, write_content_size=True, threads=1
    )
    with src.open("rb") as fh, cctx.stream_writer(out, size=size, closefd=False) as zw:  # type: ignore[arg-type]
        shutil.copyfileobj(fh, zw, _CHUNK)


def iter_shard_lines(path: Path, where: str) -> Iterator[bytes]:
    """Lines of a zstd shard (without newlines), with bomb guards.

    Raises:
        UnsafeArchiveError: no declared content size, a size over the limits, or output
            beyond the declared size; a truncated or corrupt frame.
    """
    compressed = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(18)
        try:
            declared = zstandard.frame_content_size(header)
        except zstandard.ZstdError as e:
            raise UnsafeArchiveError(f"{where}: not a zstd frame: {e}") from e
        if declared < 0:
            raise UnsafeArchiveError(f"{where}: zstd frame does not declare its content size")
        limit = min(MAX_SHARD_BYTES, max(64 * 1024**2, compressed * MAX_SHARD_RATIO))
        if declared > limit:
            raise UnsafeArchiveError(
                f"{where}: declares {declared} bytes from {compressed} compressed "
                f"(limit {limit}): refusing a decompression bomb"
            )
        fh.seek(0)
        yield from _lines(_decompressed(fh, declared, where), where)


def _decompressed(fh: BinaryIO, declared: int, where: str) -> Iterator[bytes]:
    dctx = zstandard.ZstdDecompressor()
    total = 0
    try:
        with dctx.stream_reader(fh, read_across_frames=True) as reader:
            while chunk := reader.read(_CHUNK):
                total += len(chunk)
                if total > declared:
                    raise UnsafeArchiveError(
                        f"{where}: decompresses beyond its declared {declared} bytes"
                    )
                yield chunk
    except zstandard.ZstdError as e:
        raise UnsafeArchiveError(f"{where}: corrupt zstd data: {e}") from e
    if total != declared:
        raise UnsafeArchiveError(f"{where}: {total} bytes, frame declares {declared}")


def _lines(chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        start = 0
        while (nl := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start:nl])
            start = nl + 1
        del pending[:start]
        if len(pending) > MAX_LINE_BYTES:
            raise UnsafeArchiveError(f"{where}: a line longer than {MAX_LINE_BYTES} bytes")
    if pending:
        raise UnsafeArchiveError(f"{where}: last line has no newline (truncated shard?)")
