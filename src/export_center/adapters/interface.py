"""The adapter plug-in point: one adapter per profile, writing files into a staging area.

Adapters never touch tar, compression, signing or the final location: they stream records from
the store (pinned to the plan's as-of sequence) into :class:`Staging`, which hashes and counts as
it writes. The bundle writer then owns everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from export_center.errors import BadInputError, CancelledError
from export_center.planner.plan import ExportPlan
from export_center.store.repository import EvidenceStore

if TYPE_CHECKING:
    from export_center.mirror.kms import Pkcs11Access


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
            staged = StagedFile(
                staged.path, staged.local, staged.sha256, staged.size, records, content_type
            )
            self._files[path] = staged
        return staged

    def files(self) -> list[StagedFile]:
        return [self._files[p] for p in sorted(self._files, key=lambda s: s.encode())]


@dataclass
class ExportContext:
    plan: ExportPlan
    store: EvidenceStore
    staging: Staging
    progress: Callable[[int], None] = lambda _n: None
    is_cancelled: Callable[[], bool] = lambda: False
    # How to reach the operator's KMS (mirror encryption to kms:// recipients).
    kms: Pkcs11Access | None = None
    # Filled by the adapter: record counts per type, and per-source input-set digests.
    counts: dict[str, int] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)
    # Extra manifest sections an adapter contributes (e.g. "delta", "encryption").
    manifest_extra: dict[str, object] = field(default_factory=dict)

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise CancelledError("the run was cancelled; nothing was published")


class Adapter(Protocol):
    """Produces a profile's content under ``data/`` (or ``trivy/``, ...) in the staging area."""

    def build(self, ctx: ExportContext) -> None: ...
