"""SHA-256 helpers: the one place that hashes files and formats ``sha256:<hex>`` digests.

Files are read in 1 MiB chunks (hashlib releases the GIL on large updates), so hashing never
holds a whole file in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20
PREFIX = "sha256:"


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    """(lowercase hex SHA-256, size in bytes) of the file at ``path``, streamed.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def sha256_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    """(lowercase hex SHA-256, size in bytes) of the concatenated ``chunks``, e.g. an archive
    member's data as the reader streams it."""
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def prefixed(hexdigest: str) -> str:
    """``sha256:<hex>``, the form manifests, OCI descriptors and root hashes use."""
    return PREFIX + hexdigest
