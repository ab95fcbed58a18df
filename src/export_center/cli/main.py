"""The ``stella`` command: wires the command groups together and maps errors to exit codes."""

from __future__ import annotations

import sys

import typer

from export_center.cli import common

app = typer.Typer(
    name="stella",
    help="Stella Export Center: reproducible, signed, offline-verifiable evidence bundles.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each command group lives in its own module and adds itself to ``app``.
    from export_center.cli import (
        airgap,
        devportal_cmd,
        evidence,
        export_cmd,
        findings_cmd,
        ingest_cmd,
        keys,
        serve,
        trivy_cmd,
    )

    for module in (
        ingest_cmd,
        evidence,
        keys,
        export_cmd,
        airgap,
        findings_cmd,
        devportal_cmd,
        serve,
    ):
        module.register(app)
    trivy_cmd.register()  # `stella airgap trivy-install`, on the airgap group


def main() -> None:
    _register()
    sys.exit(common.run_app(app))
