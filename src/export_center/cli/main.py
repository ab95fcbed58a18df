"""The ``stella`` command: a table of the top-level commands, each imported only when it runs.

A command module imports what its command needs (SQLAlchemy, Alembic, FastAPI, ...) at its top;
importing every one of them to register it cost ``stella --help`` a second, and every test
subprocess paid it. So this module knows the commands only by name, module and one line of
help: ``stella --help`` and ``stella --version`` import no command module, and ``stella X ...``
imports the module of X alone. Errors become the spec's exit codes here (``run_app``).
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePath
from typing import Annotated, Any, get_args

import typer
from typer import _click
from typer._click.core import ParameterSource
from typer.core import TyperArgument, TyperCommand, TyperGroup

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
    Entry(
        "serve",
        "serve",
        "app",
        "Serve the REST API, with worker processes that run the exports (one command).",
    ),
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
    Entry(
        "kit",
        "kit",
        "app",
        "Offline Kits: several signed bundles across the air gap, in media-sized parts.",
    ),
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
    command = typer.main.get_command(sub_app)
    _conform(command)
    return command


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
        _readable_help(self)  # Typer adds the completion options after __init__
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


# ---- the global options ------------------------------------------------------------------
#
# `--format` and `--offline` are accepted before the command (`stella --format json ingest
# ...`) and after it (`stella ingest ... --format json`): the top-level callback declares
# them, and `_conform` gives every command that does not declare them a copy. Both store
# their value on the root context, which lives as long as one command run; a command reads
# the format with `common.output_format()` (or its own `--format` parameter, which
# `_conform` defaults from the global one).


def _format_callback(ctx: _click.Context, param: Any, value: str | None) -> str:
    from export_center.cli.common import FORMAT_KEY, FORMATS

    root = ctx.find_root()
    given = ctx.get_parameter_source(param.name or "") not in (
        None,
        ParameterSource.DEFAULT,
        ParameterSource.DEFAULT_MAP,
    )
    if given and value is not None:
        if value not in FORMATS:
            raise typer.BadParameter(f"{value!r}: choose table or json", ctx=ctx, param=param)
        root.meta[FORMAT_KEY] = value
        return value
    current = root.meta.get(FORMAT_KEY)
    return current if isinstance(current, str) else "table"


def _offline_callback(ctx: _click.Context, _param: _click.Parameter, value: bool) -> bool:
    if value and not ctx.resilient_parsing:
        from export_center.netpolicy import go_offline

        # Undone when the command's run ends (tests run many commands in one process).
        ctx.find_root().call_on_close(go_offline())
    return value


FormatGlobalOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="table|json",
        callback=_format_callback,
        help="Output format: table (default) or json.",
    ),
]
# The environment defaults are settings.CLI_OPTION_ENV's (not imported: `stella --help`
# must not pay for the settings model).
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline",
        envvar="STELLA_OFFLINE",
        callback=_offline_callback,
        help="Refuse any network access (registries, --server): exit code 5 instead.",
    ),
]


# Whether an unexpected error prints its traceback (--debug); set while the options are
# parsed, read by run_app after the command failed.
_debug = False


def _debug_callback(ctx: _click.Context, _param: _click.Parameter, value: bool) -> bool:
    global _debug
    _debug = value
    return value


@app.callback()
def _stella(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    output_format: FormatGlobalOpt = None,
    offline: OfflineOpt = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="STELLA_DEBUG",
            callback=_debug_callback,
            help="On an unexpected error (exit code 1), print the traceback too.",
        ),
    ] = False,
) -> None:
    # --version is eager: answered while the options are parsed, before any command is
    # looked up. The others act through their callbacks.
    del version, output_format, offline, debug


def _global_params() -> list[_click.Parameter]:
    """Fresh copies of the global options, for a command that does not declare them."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def _probe(output_format: FormatGlobalOpt = None, offline: OfflineOpt = False) -> None:
        del output_format, offline

    params = typer.main.get_command(probe).params
    for param in params:
        param.expose_value = False  # the command's function does not take them
    return [p for p in params if p.name != "help"]


def _tenant_callback(ctx: _click.Context, param: Any, value: Any) -> Any:
    from export_center.errors import BadInputError
    from export_center.tenants import check_tenant

    for tenant in value if isinstance(value, list | tuple) else [value]:
        if tenant is not None:
            try:
                check_tenant(tenant)
            except BadInputError as e:
                raise typer.BadParameter(e.message, ctx=ctx, param=param) from e
    return value


def _chain(first: Any, then: Any) -> Any:
    """A parameter callback that runs ``first``, then the parameter's own (if any)."""
    if then is None:
        return first

    def both(ctx: _click.Context, param: _click.Parameter, value: Any) -> Any:
        return then(ctx, param, first(ctx, param, value))

    return both


def _readable_type(param: _click.Parameter) -> str:
    """A help label for a parameter's value: PATH, TEXT, INTEGER, NUMBER, or its choices."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, Enum):
            return "|".join(str(member.value) for member in arg)
        if arg is Path or (isinstance(arg, type) and issubclass(arg, PurePath)):
            return "PATH"
        if arg is bool:
            return ""
        if arg is int:
            return "INTEGER"
        if arg is float:
            return "NUMBER"
    return "TEXT"


class _ReadableArgument(TyperArgument):
    """An argument whose help row shows a readable type (TEXT, PATH), not ``<list[Path]>``."""

    def display_type_rich(self, ctx: _click.Context) -> str | None:
        return _readable_type(self)


def _readable_help(command: _click.Command) -> None:
    """Help labels for every parameter of ``command`` that has none, ``--help`` included."""
    help_option = command.get_help_option(_click.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperArgument):
            param.metavar = (param.name or "value").upper()
            param.__class__ = _ReadableArgument
        else:
            param.metavar = _readable_type(param)


def _conform(command: _click.Command) -> None:
    """Give ``command`` and its subcommands the CLI-wide conventions, in one place:

    - the global ``--format`` and ``--offline``, when a command does not declare them, and a
      command's own ``--format`` validated and defaulted from the global one;
    - every ``--tenant`` checked against the tenant rule before the command runs;
    - readable help: ``PATH``, ``TEXT``, ``INTEGER`` or the choices instead of Typer's
      ``<str>``, ``<list[Path]>``, and nothing for flags.
    """
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _conform(sub)
        _readable_help(command)
        return
    options = {opt for p in command.params for opt in p.opts}
    for param in command.params:
        if "--format" in param.opts:
            param.callback = _chain(_format_callback, param.callback)
        if "--tenant" in param.opts:
            param.callback = _chain(_tenant_callback, param.callback)
    command.params += [p for p in _global_params() if not options & set(p.opts)]
    _readable_help(command)


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


def print_error(message: str, hint: str | None = None) -> None:
    """common.print_error, imported only when there is an error to print (`stella --help`
    imports no command plumbing)."""
    from export_center.cli import common

    common.print_error(message, hint)


def _usage_error(e: _click.ClickException) -> None:
    """A usage error (unknown option, bad value, missing argument) in the one error shape."""
    ctx = getattr(e, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    message = e.format_message()
    help_hint = f"see '{ctx.command_path} --help'" if ctx is not None else None
    print_error(f"{where}{message[:1].lower()}{message[1:]}", help_hint)


def _os_error(e: OSError) -> ExportCenterError:
    """An OSError no command turned into one of ours: said in one line, with the exit code
    its kind stands for (a missing path is "not found", a refused one "bad input")."""
    import errno

    from export_center.errors import BadInputError, NotFoundError

    where = f"{e.filename}: " if e.filename is not None else ""
    message = f"{where}{e.strerror or e}"
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFoundError(message)
    if e.errno in (
        errno.EACCES,
        errno.EPERM,
        errno.EISDIR,
        errno.EEXIST,
        errno.EROFS,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EINVAL,
    ):
        return BadInputError(message)
    return ExportCenterError(message)


def run_app(stella: typer.Typer) -> int:
    """Run a Typer app; turn every failure into the one error shape and the spec's exit code.

    Never a traceback: our errors print their message (and hint); usage errors name the
    command; an OSError nothing else caught names its path; anything else is a bug, said in
    one line (``--debug`` or ``STELLA_DEBUG=1`` prints the traceback too).
    """
    handler = _warnings_to_stderr()
    try:
        result = _run(stella)
        if isinstance(result, int):
            return result
    except ExportCenterError as e:
        print_error(e.message, e.hint)
        return int(e.exit_code)
    except typer.Exit as e:
        return int(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print_error("interrupted")
        return int(ExitCode.UNEXPECTED)
    except _click.exceptions.NoArgsIsHelpError as e:
        e.show()  # the help, as asked for by running a group without a command
        return int(ExitCode.BAD_INPUT)
    except _click.ClickException as e:
        _usage_error(e)
        return int(ExitCode.BAD_INPUT)
    except OSError as e:
        if _debug:
            traceback.print_exc()
        error = _os_error(e)
        print_error(error.message)
        return int(error.exit_code)
    except Exception as e:  # the last resort: a bug, but still no traceback by default
        if _debug:
            traceback.print_exc()
        print_error(
            f"unexpected {type(e).__name__}: {e}",
            "this is a bug; `stella --debug ...` prints the traceback to report it",
        )
        return int(ExitCode.UNEXPECTED)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
    return 0


def _warnings_to_stderr() -> logging.Handler | None:
    """Library warnings as ``warning: ...`` lines on stderr, while a command runs.

    Without a handler Python prints them bare; ``serve`` and ``worker`` replace this with
    their JSON log lines (runtime/logs.py). Nothing is added where logging is configured
    already (an embedding program, pytest's capture).
    """
    root = logging.getLogger()
    if root.handlers:
        return None
    handler = logging.StreamHandler()  # sys.stderr as it is when a record is written
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(_lowercase_level)
    root.addHandler(handler)
    return handler


def _lowercase_level(record: logging.LogRecord) -> bool:
    record.levelname = record.levelname.lower()
    return True


def main() -> None:
    sys.exit(run_app(app))
