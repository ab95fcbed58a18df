"""``stella ingest``."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from export_center.cli import common
from export_center.errors import ExitCode
from export_center.ingest.pipeline import IngestReport, ingest_paths, reading_processes, survey

app = typer.Typer(add_completion=False)

#: Exit status of a command stopped by SIGINT (128 + 2), as shells report it.
EXIT_INTERRUPTED = 130
# A bar only for inputs that take a while: many files, or a few large ones.
_BAR_FILES = 20
_BAR_BYTES = 8 << 20


@app.command("ingest")
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files, folders (recursive) or archives.", callback=common.existing_paths
        ),
    ],
    source: Annotated[str, typer.Option("--source", help="Source (feed/vendor) name.")],
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=64,
            help="Processes that read and parse the files (default: the machine's cores, at "
            "most 4); the records are written in input order whatever the number.",
        ),
    ] = None,
) -> None:
    """Ingest evidence: OSV, GHSA, CSAF, OpenVEX, CycloneDX and SPDX documents."""
    cfg = common.settings()
    tenant = tenant or cfg.default_tenant
    store = common.open_store()
    files, size = survey(paths)
    show = common.is_tty() and output == "table" and (files > _BAR_FILES or size > _BAR_BYTES)
    stop = threading.Event()
    with (
        _first_interrupt_stops(stop),
        Progress(
            TextColumn("ingesting"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[where]}", style="dim"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=common.err_console,
            disable=not show,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task("ingest", total=size or None, where="")
        try:
            report = ingest_paths(
                store,
                paths,
                source=source,
                tenant=tenant,
                max_bytes=cfg.max_document_bytes,
                progress=lambda n, where: bar.update(task, advance=n, where=_short(where)),
                cancelled=stop.is_set,
                processes=jobs or reading_processes(),
            )
        except KeyboardInterrupt:
            # A second Ctrl-C: the batch in flight is rolled back (its transaction never
            # commits), the batches before it stay.
            common.err_console.print(
                "interrupted: the batch in flight was rolled back, the batches before it are "
                "stored; run the same command again to finish",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if report.interrupted:
        common.err_console.print(
            f"interrupted: {report.stored} records stored and {report.unchanged} unchanged "
            f"from {report.files} of {files} files, nothing half-written; run the same command "
            "again to finish",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    _print_report(report, output)
    if report.refused:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


class _first_interrupt_stops:  # noqa: N801 (used as a context manager, like a function)
    """While active, the first SIGINT (Ctrl-C) asks the ingest to stop at the next record (what
    was read is written, the rest left for a re-run); a second one interrupts at once."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: Any = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _short(where: str, width: int = 40) -> str:
    return where if len(where) <= width else "…" + where[-(width - 1) :]


def _skip_summary(report: IngestReport) -> list[str]:
    reasons = Counter(s.reason for s in report.skipped)
    return [f"skipped {n} file{'s' if n > 1 else ''}: {reason}" for reason, n in reasons.items()]


def _collision_summary(report: IngestReport) -> list[str]:
    lines = []
    apart = Counter(c.upstream_id for c in report.collisions if c.kind == "kept-apart")
    for upstream_id, n in sorted(apart.items()):
        lines.append(
            f"collision: {n + 1} documents about different subjects carry the id "
            f"{upstream_id}: kept apart (stored under the id qualified with their subject)"
        )
    for c in report.collisions:
        if c.kind == "revised-twice":
            lines.append(
                f"collision: {c.where} carries {c.upstream_id} with other bytes than an input "
                f"before it in this ingest: stored as {c.stored_as}, the one before superseded"
            )
    return lines


def _print_report(report: IngestReport, output: str) -> None:
    if output == "json":
        common.print_json(
            {
                "files": report.files,
                "filesRead": report.files_read,
                "filesRefused": report.files_refused,
                "skippedFiles": report.skipped_files,
                "inserted": report.inserted,
                "revisions": report.revisions,
                "withdrawals": report.withdrawals,
                "unchanged": report.unchanged,
                "refused": [{"where": r.where, "reason": r.reason} for r in report.refused],
                "skipped": [{"where": s.where, "reason": s.reason} for s in report.skipped],
                "collisions": [
                    {
                        "where": c.where,
                        "upstreamId": c.upstream_id,
                        "storedAs": c.stored_as,
                        "sharesIdWith": c.other,
                        "kind": c.kind,
                    }
                    for c in report.collisions
                ],
            }
        )
        return
    for r in report.refused:
        common.err_console.print(f"refused: {r.where}: {r.reason}", highlight=False, markup=False)
    for line in _skip_summary(report) + _collision_summary(report):
        common.console.print(line, highlight=False, markup=False)
    common.console.print(
        f"{report.files} files ({report.files_read} read, {report.skipped_files} skipped, "
        f"{report.files_refused} refused): {report.inserted} new, {report.revisions} new "
        f"revisions, {report.withdrawals} withdrawals, {report.unchanged} unchanged, "
        f"{len(report.refused)} refused",
        highlight=False,
    )
