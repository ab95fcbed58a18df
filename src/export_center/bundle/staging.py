"""The staging area of one run: where a profile's files are spooled before they are archived.

Adapters write through :class:`Staging`, which hashes and counts as it writes, so the bundle
writer knows every file's digest, size and record count without reading it again. Paths are
bundle paths ('/'-separated, relative); a path that could escape the bundle, or one written
twice, is refused here rather than in every adapter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from export_center.errors import BadInputError

__all__ = ["StagedFile", "StagedWriter", "Staging"]


@dataclass(frozen=True)
class StagedFile:
    path: str  # path inside the bundle, '/'-separated
    local: Path
    sha256: str  # hex
    size: int
    records: int | None
    content_type: str


class StagedWriter:
    """A file being staged: write bytes, count records; digest and size come for free."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self.size = 0
        self.records = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)

    def write_record(self, line: bytes) -> None:
        """One JSONL record (``line`` without its newline)."""
        self.write(line + b"\n")
        self.records += 1

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Staging:
    """A private directory where a run's files are spooled before they are archived."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, StagedFile] = {}

    @staticmethod
    def _check(path: str) -> None:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in {"", ".", ".."} for p in parts):
            raise BadInputError(f"adapter produced an invalid bundle path {path!r}")

    @contextmanager
    def open(
        self, path: str, content_type: str, *, count_records: bool = False
    ) -> Iterator[StagedWriter]:
        """Stage the file ``path``; its digest and size are recorded when the block ends.

        Raises:
            BadInputError: an invalid bundle path, or one staged already.
        """
        self._check(path)
        if path in self._files:
            raise BadInputError(f"bundle path {path!r} written twice")
        local = self.root / "files" / path
        local.parent.mkdir(parents=True, exist_ok=True)
        with local.open("wb") as fh:
            w = StagedWriter(fh)
            yield w
        self._files[path] = StagedFile(
            path, local, w.hexdigest, w.size, w.records if count_records else None, content_type
        )

    def add_bytes(
        self, path: str, data: bytes, content_type: str, records: int | None = None
    ) -> StagedFile:
        with self.open(path, content_type) as w:
            w.write(data)
        staged = self._files[path]
        if records is not None:
            staged = replace(staged, records=records)
            self._files[path] = staged
        return staged

    def files(self) -> list[StagedFile]:
        """Every staged file, sorted by path (bytewise: the order of the archive)."""
        return [self._files[p] for p in sorted(self._files, key=lambda s: s.encode())]
