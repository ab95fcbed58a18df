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
        bundle,
        roots,
        extra_checks=[("tuf", tuf_check(roots, root_bytes, now))],
        tenant=tenant,
        require_signature=require_signature,
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
                common.marked(
                    "green", "verified", f" {report.export_id}; root hash {report.root_hash}"
                )
            )
    if not report.ok:
        common.print_verification_failure(bundle, report.checks)
    raise typer.Exit(int(report.exit_code))
