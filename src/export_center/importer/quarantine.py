"""The quarantine: refused bundles kept for the operator, within caps, listed and purged.

Every refused import (verification, state or application) gets an entry under
``<data dir>/quarantine/<refused-at>-<label>-<random>/``: ``reason.txt`` (for people),
``entry.json`` (for ``stella airgap quarantine list``), ``report.json`` when there is a report,
and a copy of the bundle as received. Bundles come from outside and can be large, so the
quarantine has two caps (settings ``quarantine_max_entries`` and ``quarantine_max_bytes``):

- at ``max_entries`` entries nothing more is written: the refusal says the quarantine is full;
- a copy that would take the quarantine over ``max_bytes`` is not made: the entry keeps the
  reason and report, and says that the bundle was not kept.

Nothing is ever removed automatically (a refused bundle may be evidence of an attack); the
operator lists and purges entries (``stella airgap quarantine list|purge``).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from export_center.bundle.verify import BundleReport
from export_center.distribution.source import OpenedBundle
from export_center.errors import NotFoundError

__all__ = [
    "QUARANTINE_DIR",
    "QuarantineEntry",
    "QuarantineLimits",
    "Quarantined",
    "list_entries",
    "purge",
    "quarantine",
]

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
_ENTRY = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9._-]{1,120}$")
_ENTRY_JSON = "entry.json"
_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class QuarantineLimits:
    """At most ``max_entries`` entries; bundle copies only while the total stays within
    ``max_bytes``."""

    max_entries: int = 20
    max_bytes: int = 1 << 30


@dataclass(frozen=True)
class Quarantined:
    """Where a refusal was recorded (None when the quarantine was full) and what to tell."""

    path: Path | None
    kept: bool
    note: str | None = None


@dataclass(frozen=True)
class QuarantineEntry:
    name: str
    path: Path
    source: str
    refused_at: str
    reason: str
    bytes: int
    kept: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "refusedAt": self.refused_at,
            "reason": self.reason,
            "bytes": self.bytes,
            "bundleKept": self.kept,
        }


def root(data_dir: Path) -> Path:
    return data_dir / QUARANTINE_DIR


def _size(path: Path) -> int:
    """Bytes under ``path``, links not followed."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    if not path.is_dir():
        return 0
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file())


def _entries(base: Path) -> list[Path]:
    """Entry directories, oldest first (the name starts with the refusal time to the second;
    within a second, the order the entries were written)."""
    if not base.is_dir():
        return []

    def written(p: Path) -> tuple[str, int]:
        reason = p / "reason.txt"
        stamp = reason if reason.is_file() else p
        return p.name[:16], stamp.stat().st_mtime_ns

    return sorted((p for p in base.iterdir() if p.is_dir() and not p.is_symlink()), key=written)


def _bundle_files(opened: OpenedBundle) -> list[Path]:
    if opened.is_archive:
        return sorted(p for p in opened.path.parent.iterdir() if p.is_file())
    return [opened.path] if opened.path.is_dir() else []


def quarantine(
    data_dir: Path,
    opened: OpenedBundle,
    reason: str,
    report: BundleReport | None,
    now: datetime,
    limits: QuarantineLimits | None = None,
) -> Quarantined:
    """Record a refused bundle (as received, when the caps allow) with its reason and report."""
    limits = limits or QuarantineLimits()
    base = root(data_dir)
    base.mkdir(parents=True, exist_ok=True)
    existing = _entries(base)
    if len(existing) >= limits.max_entries:
        full = (
            f"quarantine full ({len(existing)} entries, quarantine_max_entries "
            f"{limits.max_entries}): the bundle was not kept; see `stella airgap quarantine "
            "list` and `purge`"
        )
        log.warning("bundle %s refused and not quarantined: %s", opened.label, full)
        return Quarantined(None, False, full)
    used = sum(_size(p) for p in existing)
    files = _bundle_files(opened)
    size = sum(_size(p) for p in files)
    kept = used + size <= limits.max_bytes
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(opened.label.rstrip("/")).name)[-80:] or "bundle"
    dest = Path(tempfile.mkdtemp(prefix=f"{now:%Y%m%dT%H%M%SZ}-{label}-", dir=base))
    note: str | None = None
    if kept:
        for p in files:
            if p.is_dir():
                shutil.copytree(p, dest / "bundle", symlinks=True)
            else:
                shutil.copyfile(p, dest / p.name)
    else:
        note = (
            f"the bundle ({size} bytes) was not kept: the quarantine holds {used} bytes and "
            f"quarantine_max_bytes is {limits.max_bytes}; see `stella airgap quarantine purge`"
        )
    (dest / "reason.txt").write_text(
        f"source: {opened.label}\nrefused: {now:{_TIME}}\nreason: {reason}\n"
        + (f"note: {note}\n" if note else ""),
        encoding="utf-8",
    )
    entry = {
        "source": opened.label,
        "refusedAt": f"{now:{_TIME}}",
        "reason": reason,
        "bundleBytes": size,
        "bundleKept": kept,
    }
    (dest / _ENTRY_JSON).write_bytes(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
    if report is not None:
        (dest / "report.json").write_bytes(
            orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2)
        )
    # Info, not a warning: the refusal itself says where the bundle went (ImportRefused's hint).
    log.info("bundle %s quarantined in %s: %s", opened.label, dest, reason)
    return Quarantined(dest, kept, note)


def _read_entry(path: Path) -> QuarantineEntry:
    meta: dict[str, Any] = {}
    try:
        loaded = orjson.loads((path / _ENTRY_JSON).read_bytes())
        meta = loaded if isinstance(loaded, dict) else {}
    except (OSError, orjson.JSONDecodeError):
        # An entry written before entry.json existed: reason.txt says the rest.
        try:
            for line in (path / "reason.txt").read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition(": ")
                meta.setdefault({"refused": "refusedAt"}.get(key, key), value)
        except OSError:
            pass
    kept = meta.get("bundleKept")
    return QuarantineEntry(
        name=path.name,
        path=path,
        source=str(meta.get("source", "?")),
        refused_at=str(meta.get("refusedAt", "?")),
        reason=str(meta.get("reason", "?")),
        bytes=_size(path),
        kept=kept
        if isinstance(kept, bool)
        else any(p.name not in {"reason.txt", "report.json", _ENTRY_JSON} for p in path.iterdir()),
    )


def list_entries(data_dir: Path) -> list[QuarantineEntry]:
    """Every quarantine entry, oldest first."""
    return [_read_entry(p) for p in _entries(root(data_dir))]


def purge(
    data_dir: Path,
    names: Iterable[str] = (),
    *,
    everything: bool = False,
    older_than: datetime | None = None,
) -> list[QuarantineEntry]:
    """Remove the named entries, or all of them, or those refused before ``older_than``.
    Returns what was removed.

    Raises:
        NotFoundError: a name that is not an entry of the quarantine (nothing is removed).
    """
    entries = {e.name: e for e in list_entries(data_dir)}
    chosen: list[QuarantineEntry] = []
    for name in names:
        if not _ENTRY.match(name) or name not in entries:
            raise NotFoundError(f"no quarantine entry {name!r} in {root(data_dir)}")
        chosen.append(entries[name])
    if everything:
        chosen = list(entries.values())
    elif older_than is not None:
        cutoff = older_than.astimezone(UTC).strftime(_TIME)
        chosen += [e for e in entries.values() if e.refused_at < cutoff and e not in chosen]
    for e in chosen:
        shutil.rmtree(e.path)
        log.info("quarantine entry %s purged", e.name)
    return chosen
