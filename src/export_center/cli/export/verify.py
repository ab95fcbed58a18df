"""``stella export verify``: every check of a bundle, offline, against trusted keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from export_center.cli import common
from export_center.errors import ExitCode


def verify(
    bundle: Annotated[Path, typer.Argument(help="Archive (.tar.zst/.tar.gz) or extracted dir.")],
    trust_roots: Annotated[
        Path, typer.Option("--trust-roots", help="PEM file of trusted public keys.")
    ],
    output: common.FormatOpt = "table",
    require_signature: Annotated[
        bool,
        typer.Option(
            "--require-signature",
            help="Fail when the archive's .sig sidecar is missing (default: say it was not "
            "checked).",
        ),
    ] = False,
) -> None:
    """Verify a bundle offline: every check, in order, each reported by name."""
    from export_center.bundle.verify import verify_bundle

    if not bundle.exists():
        common.fail(f"{bundle}: no such bundle", ExitCode.NOT_FOUND)
    report = verify_bundle(
        bundle, common.read_trust_roots(trust_roots), require_signature=require_signature
    )
    if output == "json":
        common.print_json(report.as_json())
    else:
        common.print_checks(report.checks)
        # Say plainly what was not checked, and why: a pass must not hide a skipped check.
        for check in report.checks:
            if check.status == "skipped":
                reason = check.detail.removeprefix("skipped: ")
                common.console.print(f"NOT CHECKED {check.name}: {reason}", highlight=False)
                if check.name == "archive-signature":
                    common.console.print(
                        "  the archive's own signature was not verified; "
                        "--require-signature makes this a failure",
                        highlight=False,
                    )
        if report.ok:
            common.console.print(
                f"[green]verified[/green] {report.export_id}; root hash {report.root_hash}"
            )
        else:
            failed = report.failed
            common.console.print(
                f"[red]verification failed[/red] at {failed.name if failed else '?'}"
            )
    raise typer.Exit(int(report.exit_code))
