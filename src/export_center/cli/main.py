"""The ``stella`` command: a table of the top-level commands, each imported only when it runs.

A command module imports what its command needs (SQLAlchemy, Alembic, FastAPI, ...) at its top;
importing every one of them to register it cost ``stella --help`` a second, and every test
subprocess paid it. So this module knows the commands only by name, module and one line of
help: ``stella --help`` and ``stella --version`` import no command module, and ``stella X ...``
imports the module of X alone. Errors become the spec's exit codes here (``run_app``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup

from export_center import TOOL_NAME, __version__
from export_center.errors import ExitCode, ExportCenterError, missing_extra


@dataclass(frozen=True)
class Entry:
    """A top-level command: where its Typer app lives, and its line in ``stella --help``."""

    name: str
    module: str  # below export_center.cli
    attribute: str  # a typer.Typer: one command, or a group
    help: str  # the first line of the command's own help (tests/cli checks that they agree)


# In the order `stella --help` has always listed them: single commands, then groups.
COMMANDS: tuple[Entry, ...] = (
    Entry(
        "ingest",
        "ingest",
        "app",
        "Ingest evidence: OSV, GHSA, CSAF, OpenVEX, CycloneDX and SPDX documents.",
    ),
    Entry(
        "findings",
        "findings",
        "app",
        "Match an SBOM against the stored advisories, apply VEX and the policy, print findings.",
    ),
    Entry("serve", "serve", "app", "Serve the REST API (and, by default, run exports in-process)."),
    Entry(
        "worker",
        "worker",
        "app",
        "Execute queued export runs (no API). Any number may run, on any hosts.",
    ),
    Entry("evidence", "evidence", "app", "Look at what the evidence store holds."),
    Entry("keys", "keys", "app", "Signing keys: generate, assign to tenants, list, export."),
    Entry("policy", "policy", "app", "Policy documents of a tenant: upload, list, show."),
    Entry("export", "export", "app", "Plan, run and verify exports."),
    Entry(
        "airgap", "airgap", "app", "Verify and import mirror bundles on a disconnected instance."
    ),
    Entry(
        "devportal",
        "devportal",
        "app",
        "devportal:offline: the developer portal as a signed, offline-verifiable bundle.",
    ),
    Entry("tokens", "tokens", "app", "API tokens (stored hashed; the secret is shown once)."),
)


def load_command(entry: Entry) -> _click.Command:
    """Import the entry's module and build its click command.

    Raises:
        TypeError: the entry's attribute is not a Typer app (a broken table entry).
    """
    module = importlib.import_module(f"export_center.cli.{entry.module}")
    sub_app = getattr(module, entry.attribute)
    if not isinstance(sub_app, typer.Typer):
        raise TypeError(f"export_center.cli.{entry.module}.{entry.attribute} is not a Typer app")
    return typer.main.get_command(sub_app)


class _LazyCommands(MutableMapping[str, _click.Command]):
    """The table's commands by name; a command's module is imported when it is first looked up.

    ``TyperGroup`` reads ``commands`` for lookups and for "Did you mean ...?"; the names alone
    answer the latter without importing anything.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._entries = {e.name: e for e in entries}
        self._loaded: dict[str, _click.Command] = {}

    def __getitem__(self, name: str) -> _click.Command:
        command = self._loaded.get(name)
        if command is None:
            command = self._loaded[name] = load_command(self._entries[name])
        return command

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if self._entries.pop(name, None) is None and name not in self._loaded:
            raise KeyError(name)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._entries
        yield from (name for name in self._loaded if name not in self._entries)

    def __len__(self) -> int:
        return len(self._entries.keys() | self._loaded.keys())

    def stand_in(self, name: str) -> _click.Command | None:
        """A command that only carries the table's name and help line (for the help listing)."""
        if name in self._loaded:
            return self._loaded[name]
        entry = self._entries.get(name)
        return TyperCommand(entry.name, help=entry.help) if entry else None


class StellaGroup(TyperGroup):
    """The top-level group: commands come from ``COMMANDS``, imported only when run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        registered = self.commands  # commands added to ``app`` itself (none, today) are kept
        self.commands = self._lazy = _LazyCommands(COMMANDS)
        self._lazy.update(registered)
        self._listing = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        # TyperGroup's walks ``commands.items()``, which would import every module.
        return list(self.commands)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if self._listing:
            return self._lazy.stand_in(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        # Typer's help asks for every command to print its name and first help line: give it
        # stand-ins made from the table, so that the listing imports nothing.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="stella",
    help="Stella Export Center: reproducible, signed, offline-verifiable evidence bundles.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=StellaGroup,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{TOOL_NAME} {__version__}")
        raise typer.Exit()


@app.callback()
def _stella(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # Eager: answered while the options are parsed, before any command is looked up.
    del version


#: Top-level packages that only an extra installs, and that extra (pyproject.toml).
_EXTRA_OF = {
    "fastapi": "service",
    "starlette": "service",
    "uvicorn": "service",
    "prometheus_client": "service",
    "jwt": "service",
    "procrastinate": "postgres",
    "psycopg": "postgres",
    "pkcs11": "pkcs11",
}


def _run(stella: typer.Typer) -> object:
    try:
        # Outside standalone mode click returns the code of a ``typer.Exit`` instead of raising.
        return stella(standalone_mode=False)
    except ModuleNotFoundError as e:
        # The base install is the air-gapped verifier; a command of the service (or a backend)
        # without its extra says which one to install instead of a traceback.
        extra = _EXTRA_OF.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        raise missing_extra(extra, "this command", e) from e


def run_app(stella: typer.Typer) -> int:
    """Run a Typer app; turn our errors into one clear line and the spec's exit code."""
    try:
        result = _run(stella)
        if isinstance(result, int):
            return result
    except ExportCenterError as e:
        from rich.markup import escape

        from export_center.cli.common import err_console

        # Messages carry user data and brackets ("[service]"): never read them as markup.
        err_console.print(
            f"[red]error:[/red] {escape(e.diagnostics())}", highlight=False, markup=True
        )
        return int(e.exit_code)
    except typer.Exit as e:
        return int(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        from export_center.cli.common import err_console

        err_console.print("aborted")
        return int(ExitCode.UNEXPECTED)
    except _click.ClickException as e:
        # Usage errors (bad option, missing argument, unknown command).
        e.show()
        return int(ExitCode.BAD_INPUT)
    return 0


def main() -> None:
    sys.exit(run_app(app))
