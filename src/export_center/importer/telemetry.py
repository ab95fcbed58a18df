"""Import outcomes of the disconnected side, as a file for node_exporter's textfile collector.

``stella airgap import`` and ``stella airgap trivy-install`` are one-shot commands on a host that
runs no service, so there is no process for Prometheus to scrape. Instead each of them updates
``<data dir>/airgap/metrics/stella-airgap.prom`` (the Prometheus text format): point
node_exporter's ``--collector.textfile.directory`` at that directory (or link the file into the
directory it already reads), and the refusals reach the same Prometheus and alert rules as the
service's series (docs/runbook.md, "Import refusals on the disconnected side").

The counts survive between commands in ``stella-airgap.json`` beside it (node_exporter reads
only ``*.prom``); both files are replaced atomically under a lock, so two imports at once
count both and the collector never reads half a file. Deleting them resets the counters,
which Prometheus's ``increase()`` treats like any counter reset.

This module stays free of prometheus_client: the air-gapped install has no service extras.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from export_center.errors import ExitCode

METRICS_DIR = Path("airgap") / "metrics"
PROM_FILE = "stella-airgap.prom"
STATE_FILE = "stella-airgap.json"

ImportKind = Literal["mirror", "trivy"]
Outcome = Literal["imported", "replay", "refused"]
KINDS: tuple[ImportKind, ...] = ("mirror", "trivy")
OUTCOMES: tuple[Outcome, ...] = ("imported", "replay", "refused")

# Refusal reasons name the exit code's meaning (export-center.md §7), a small closed set.
_REASONS = {
    ExitCode.VERIFICATION_FAILED: "verification_failed",
    ExitCode.NOT_FOUND: "not_found",
    ExitCode.BAD_INPUT: "bad_input",
    ExitCode.QUOTA_OR_CONFLICT: "conflict",
}


def refusal_reason(exit_code: int) -> str:
    """The ``reason`` label of a refusal that ends the command with ``exit_code``."""
    try:
        return _REASONS.get(ExitCode(exit_code), "other")
    except ValueError:
        return "other"


def _numbers(raw: dict[str, Any], name: str) -> dict[str, float]:
    value = raw.get(name)
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


@dataclass
class _State:
    imports: dict[str, int] = field(default_factory=dict)  # "kind/outcome" -> count
    refusals: dict[str, int] = field(default_factory=dict)  # "kind/reason" -> count
    last: dict[str, float] = field(default_factory=dict)  # "kind/outcome" -> unix time
    last_refused: dict[str, int] = field(default_factory=dict)  # kind -> 0 or 1

    @classmethod
    def load(cls, path: Path) -> _State:
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (OSError, orjson.JSONDecodeError):
            # A damaged counter file must not stop an import: counting restarts from zero.
            return cls()
        if not isinstance(raw, dict):
            return cls()
        out = cls()
        out.imports = {k: int(v) for k, v in _numbers(raw, "imports").items()}
        out.refusals = {k: int(v) for k, v in _numbers(raw, "refusals").items()}
        out.last = _numbers(raw, "last")
        out.last_refused = {k: int(v) for k, v in _numbers(raw, "last_refused").items()}
        return out

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "imports": self.imports,
                "refusals": self.refusals,
                "last": self.last,
                "last_refused": self.last_refused,
            },
            option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2,
        )


def _render(state: _State) -> str:
    lines = [
        "# HELP export_airgap_imports_total Imports on this disconnected instance, by bundle "
        "kind and outcome.",
        "# TYPE export_airgap_imports_total counter",
    ]
    # Every kind and outcome from the first write on: a refusal is then an increase from 0.
    for kind in KINDS:
        for outcome in OUTCOMES:
            n = state.imports.get(f"{kind}/{outcome}", 0)
            lines.append(f'export_airgap_imports_total{{kind="{kind}",outcome="{outcome}"}} {n}')
    lines += [
        "# HELP export_airgap_import_refusals_total Refused imports, by bundle kind and reason.",
        "# TYPE export_airgap_import_refusals_total counter",
    ]
    for key in sorted(state.refusals):
        k, _, reason = key.partition("/")
        n = state.refusals[key]
        lines.append(f'export_airgap_import_refusals_total{{kind="{k}",reason="{reason}"}} {n}')
    lines += [
        "# HELP export_airgap_last_import_timestamp_seconds When the latest import of each "
        "kind and outcome ended (Unix time).",
        "# TYPE export_airgap_last_import_timestamp_seconds gauge",
    ]
    for key in sorted(state.last):
        k, _, o = key.partition("/")
        lines.append(
            f'export_airgap_last_import_timestamp_seconds{{kind="{k}",outcome="{o}"}} '
            f"{state.last[key]:.0f}"
        )
    lines += [
        "# HELP export_airgap_last_import_refused 1 while the latest import of this kind was "
        "refused (nothing imported since), else 0.",
        "# TYPE export_airgap_last_import_refused gauge",
    ]
    for kind in KINDS:
        lines.append(
            f'export_airgap_last_import_refused{{kind="{kind}"}} {state.last_refused.get(kind, 0)}'
        )
    return "\n".join(lines) + "\n"


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # node_exporter runs as its own user
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / ".lock").open("a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def record_import(
    data_dir: Path,
    kind: ImportKind,
    outcome: Outcome,
    *,
    now: datetime,
    reason: str | None = None,
) -> Path:
    """Count one import of ``kind`` that ended with ``outcome`` at ``now``; the .prom path.

    ``reason`` (for "refused"): :func:`refusal_reason` of the command's exit code.

    Raises:
        OSError: the metrics directory cannot be written.
    """
    directory = data_dir / METRICS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        state = _State.load(directory / STATE_FILE)
        key = f"{kind}/{outcome}"
        state.imports[key] = state.imports.get(key, 0) + 1
        state.last[key] = now.timestamp()
        if outcome == "refused":
            rkey = f"{kind}/{reason or 'other'}"
            state.refusals[rkey] = state.refusals.get(rkey, 0) + 1
        state.last_refused[kind] = 1 if outcome == "refused" else 0
        _replace(directory / STATE_FILE, state.as_json())
        prom = directory / PROM_FILE
        _replace(prom, _render(state).encode("utf-8"))
    return prom
