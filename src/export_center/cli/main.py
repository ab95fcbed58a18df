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
    from export_center.cli import evidence, ingest_cmd, keys

    evidence.register(app)
    ingest_cmd.register(app)
    keys.register(app)
    for optional in ("export_cmd", "airgap", "serve", "devportal_cmd", "findings_cmd"):
        try:
            module = __import__(f"export_center.cli.{optional}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"export_center.cli.{optional}":
                raise
            continue
        module.register(app)


def main() -> None:
    _register()
    sys.exit(common.run_app(app))
