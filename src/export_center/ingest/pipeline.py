"""Ingestion: walk files, folders and archives, detect formats, store each record atomically.

Each record is stored inside its own SAVEPOINT, so a record that fails leaves nothing behind;
batches of records are committed together (one fsync per batch instead of one per record).
A refused file or record is reported with where and why; the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from export_center.errors import BadInputError, DocumentRefused, UnsafeArchiveError
from export_center.ingest.detect import detect, parse_document
from export_center.ingest.interface import RecordRefused
from export_center.model import ParsedRecord
from export_center.store.repository import EvidenceStore, check_source, check_tenant

log = logging.getLogger(__name__)

EVIDENCE_SUFFIXES = (".json", ".yaml", ".yml")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2")
_COMMIT_EVERY = 250


@dataclass
class IngestReport:
    files: int = 0
    inserted: int = 0
    revisions: int = 0
    withdrawals: int = 0
    unchanged: int = 0
    skipped_files: int = 0
    refused: list[RecordRefused] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return self.inserted + self.revisions + self.withdrawals


@dataclass(frozen=True)
class InputDocument:
    where: str
    content: bytes


ProgressFn = Callable[[int, str], None]


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_evidence(name: str) -> bool:
    return name.lower().endswith(EVIDENCE_SUFFIXES)


def discover(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and evidence/archives found recursively under folders, sorted."""
    for p in paths:
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    if _is_evidence(name) or _is_archive(name):
                        yield Path(root) / name
        else:
            yield p


def iter_documents(
    paths: Iterable[Path], *, max_bytes: int, report: IngestReport
) -> Iterator[InputDocument | RecordRefused]:
    """Yield each input document's bytes (archives opened member by member, safely)."""
    for path in discover(paths):
        where = str(path)
        if _is_archive(path.name):
            from export_center.archive.reader import Limits, iter_members

            limits = Limits(max_member_bytes=max_bytes)
            try:
                for member in iter_members(path, limits):
                    if member.is_dir:
                        continue
                    inner = f"{where}!{member.name}"
                    if not (_is_evidence(member.name) or _is_archive(member.name)):
                        report.skipped_files += 1
                        continue
                    if _is_archive(member.name):
                        yield RecordRefused(inner, "nested archives are not opened")
                        continue
                    yield InputDocument(inner, member.read())
            except UnsafeArchiveError as e:
                yield RecordRefused(where, f"unsafe archive: {e.message}")
            except BadInputError as e:
                yield RecordRefused(where, f"cannot read archive: {e.message}")
            except OSError as e:
                yield RecordRefused(where, f"cannot read archive: {e}")
            continue
        try:
            if not path.is_file():
                yield RecordRefused(
                    where, "not a regular file" if path.exists() else "no such file"
                )
                continue
            size = path.stat().st_size
            if size > max_bytes:
                yield RecordRefused(
                    where, f"document is {size} bytes, over the {max_bytes}-byte limit"
                )
                continue
            yield InputDocument(where, path.read_bytes())
        except OSError as e:
            yield RecordRefused(where, f"cannot read: {e.strerror or e}")


def parse_records(doc: InputDocument) -> Iterator[ParsedRecord | RecordRefused]:
    """Detect the format of one document and read its records; refusals are values."""
    try:
        parsed = parse_document(doc.content, doc.where)
        reader = detect(parsed, doc.where)
        yield from reader.read(parsed, doc.content, doc.where)
    except DocumentRefused as e:
        yield RecordRefused(e.where, e.reason)


def ingest_paths(
    store: EvidenceStore,
    paths: Iterable[Path],
    *,
    source: str,
    tenant: str,
    max_bytes: int,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest every document under ``paths`` into ``tenant`` as ``source``.

    Raises:
        BadInputError: the tenant or source name is invalid (nothing is read then).
    """
    check_tenant(tenant)
    check_source(source)
    report = IngestReport()
    pending = 0
    session = store.session()
    try:
        cursor = store.lock_tenant(session, tenant)
        for item in iter_documents(paths, max_bytes=max_bytes, report=report):
            report.files += 1
            if progress is not None:
                progress(1, item.where)
            if isinstance(item, RecordRefused):
                report.refused.append(item)
                continue
            for rec in parse_records(item):
                if isinstance(rec, RecordRefused):
                    report.refused.append(rec)
                    continue
                try:
                    with session.begin_nested():
                        outcome = store.put(session, cursor, source, rec)
                except SQLAlchemyError as e:
                    # The savepoint rolled the record back; the batch goes on.
                    report.refused.append(
                        RecordRefused(item.where, f"store rejected record {rec.upstream_id}: {e}")
                    )
                    continue
                if outcome.outcome == "inserted":
                    report.inserted += 1
                elif outcome.outcome == "revision":
                    report.revisions += 1
                elif outcome.outcome == "withdrawal":
                    report.withdrawals += 1
                else:
                    report.unchanged += 1
                pending += 1
            if pending >= _COMMIT_EVERY:
                session.commit()
                pending = 0
                cursor = store.lock_tenant(session, tenant)
        session.commit()
    finally:
        session.close()
    log.info(
        "ingested %d files: %d new, %d revisions, %d withdrawals, %d unchanged, %d refused",
        report.files,
        report.inserted,
        report.revisions,
        report.withdrawals,
        report.unchanged,
        len(report.refused),
    )
    return report
