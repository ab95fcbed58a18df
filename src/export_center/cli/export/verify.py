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
    tuf_root: Annotated[
        Path | None,
        typer.Option(
            "--tuf-root",
            help="Mirror bundles: the TUF root.json received out of band (default: the "
            "bundle's own root, if all its keys are trusted keys).",
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Refuse (exit 2) a bundle of any other tenant."),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Verify a bundle offline: every check, in order, each reported by name."""
    from datetime import UTC, datetime

    from export_center.bundle.verify import verify_bundle
    from export_center.errors import BadInputError
    from export_center.mirror.tuf import tuf_check

    if not bundle.exists():
        common.fail(f"{bundle}: no such bundle", ExitCode.NOT_FOUND)
    roots = common.read_trust_roots(trust_roots)
    root_bytes = None
    if tuf_root is not None:
        try:
            root_bytes = tuf_root.read_bytes()
        except OSError as e:
            raise BadInputError(f"{tuf_root}: cannot read the TUF root: {e.strerror}") from e
    # Step 8 of the verification order: a mirror bundle's TUF chain, expiry as of now.
    now = datetime.now(UTC).replace(microsecond=0)
    report = verify_bundle(
        bundle, roots, extra_checks=[("tuf", tuf_check(roots, root_bytes, now))], tenant=tenant
    )
    if output == "json":
        common.print_json(report.as_json())
    else:
        common.print_checks(report.checks)
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
