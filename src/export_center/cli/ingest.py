"""``stella ingest``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from export_center.cli import common
from export_center.errors import ExitCode
from export_center.ingest.pipeline import IngestReport, discover, ingest_paths

app = typer.Typer(add_completion=False)


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
) -> None:
    """Ingest evidence: OSV, GHSA, CSAF, OpenVEX, CycloneDX and SPDX documents."""
    cfg = common.settings()
    tenant = tenant or cfg.default_tenant
    store = common.open_store()
    total = sum(1 for _ in discover(paths))
    show = common.is_tty() and total > 20 and output == "table"
    with Progress(
        TextColumn("ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=common.err_console,
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task("ingest", total=total)
        report = ingest_paths(
            store,
            paths,
            source=source,
            tenant=tenant,
            max_bytes=cfg.max_document_bytes,
            progress=lambda n, _where: bar.advance(task, n),
        )
    _print_report(report, output)
    if report.refused:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


def _print_report(report: IngestReport, output: str) -> None:
    if output == "json":
        common.print_json(
            {
                "files": report.files,
                "inserted": report.inserted,
                "revisions": report.revisions,
                "withdrawals": report.withdrawals,
                "unchanged": report.unchanged,
                "skippedFiles": report.skipped_files,
                "refused": [{"where": r.where, "reason": r.reason} for r in report.refused],
            }
        )
        return
    for r in report.refused:
        common.err_console.print(f"refused: {r.where}: {r.reason}", highlight=False, markup=False)
    common.console.print(
        f"{report.files} files: {report.inserted} new, {report.revisions} new revisions, "
        f"{report.withdrawals} withdrawals, {report.unchanged} unchanged, "
        f"{len(report.refused)} refused",
        highlight=False,
    )
