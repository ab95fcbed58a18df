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
) -> None:
    """Verify a bundle offline: every check, in order, each reported by name."""
    from export_center.bundle.verify import verify_bundle

    if not bundle.exists():
        common.fail(f"{bundle}: no such bundle", ExitCode.NOT_FOUND)
    report = verify_bundle(bundle, common.read_trust_roots(trust_roots))
    if output == "json":
        common.print_json(report.as_json())
    else:
        common.print_checks(report.checks)
        if report.ok:
            common.console.print(
                common.marked(
                    "green", "verified", f" {report.export_id}; root hash {report.root_hash}"
                )
            )
    if not report.ok:
        common.print_verification_failure(bundle, report.checks)
    raise typer.Exit(int(report.exit_code))
