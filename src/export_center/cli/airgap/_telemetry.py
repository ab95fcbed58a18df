"""Count an import's outcome for node_exporter (``export_center.importer.telemetry``)."""

from __future__ import annotations

from datetime import UTC, datetime

from export_center.cli import common
from export_center.importer.telemetry import ImportKind, Outcome, record_import, refusal_reason


def record(kind: ImportKind, outcome: Outcome, *, exit_code: int | None = None) -> None:
    """Record the outcome; a metrics file that cannot be written only warns (the import's own
    result, already decided, is what the command reports)."""
    reason = refusal_reason(exit_code) if exit_code is not None else None
    try:
        record_import(
            common.settings().data_dir, kind, outcome, now=datetime.now(UTC), reason=reason
        )
    except OSError as e:
        common.err_console.print(
            f"[yellow]warning:[/yellow] import metrics not updated: {e}", highlight=False
        )
