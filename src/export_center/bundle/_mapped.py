"""Read-only memory maps of archives for whole-message signatures.

Ed25519 signs the message itself (no pre-hash), so the ``.sig`` over an archive needs all of
its bytes at once: a map keeps them in the page cache instead of the heap.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def mapped(path: Path) -> Iterator[bytes]:
    """The file's bytes as a read-only map (``b""`` for an empty file, which mmap refuses)."""
    with path.open("rb") as fh:
        if fh.seek(0, 2) == 0:
            yield b""
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            # mmap implements the buffer protocol; signing and hashing only read it.
            yield mm  # type: ignore[misc]
