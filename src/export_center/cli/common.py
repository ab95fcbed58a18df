"""Shared CLI plumbing for the command modules: settings, consoles, options, output helpers.

Output goes through two Rich consoles with markup and highlighting **off**: what we print is
full of user data (paths like ``a[1].json``, hints like ``pip install 'x[service]'``) that
Rich would otherwise read as markup and mangle or swallow. Our own styling is explicit and
fixed: :func:`marked` builds a styled word followed by plain text.

Errors are printed by :func:`print_error` in one shape, documented in docs/cli.md: one line
``error: <what and where>: <why>``, optionally followed by one line ``  hint: <what to do>``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path  # at run time: Typer reads the annotations of parameter callbacks
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from export_center.errors import ExitCode, ExportCenterError

if TYPE_CHECKING:
    from export_center.settings import Settings
    from export_center.signing.interface import PublicKey
    from export_center.store.repository import EvidenceStore
    from export_center.verification import CheckResult, Status

console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

#: The output formats of ``--format`` (a global option; see cli/main.py).
FORMATS = ("table", "json")
#: The levels of ``--log-level`` (serve, worker).
LOG_LEVELS = ("debug", "info", "warning", "error")

TenantOpt = Annotated[
    str | None,
    typer.Option("--tenant", metavar="TENANT", help="Tenant (default: STELLA_DEFAULT_TENANT)."),
]
# Validated, and defaulted from the global `stella --format`, by cli/main.py (for every
# command, whether it declares the option or not).
FormatOpt = Annotated[
    str, typer.Option("--format", metavar="table|json", help="Output format: table or json.")
]


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r}: choose one of {', '.join(LOG_LEVELS)}")
    return value.lower()


LogLevelOpt = Annotated[
    str,
    typer.Option(
        "--log-level",
        metavar="|".join(LOG_LEVELS),
        callback=_log_level,
        help="Log level of the JSON log lines on stderr.",
    ),
]


def one_line(text: str) -> str:
    """``text`` on one line: a message that carries another library's multi-line text (a
    parser's error, say) must still be one line on the terminal."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def marked(style: str, word: str, rest: str = "") -> Text:
    """``word`` in ``style`` (our own, fixed styling), then ``rest`` as plain text."""
    return Text.assemble((word, style), rest)


def print_error(message: str, hint: str | None = None) -> None:
    """The one shape of an error on stderr: ``error: ...`` and, when known, ``  hint: ...``."""
    err_console.print(marked("red", "error:", f" {one_line(message)}"))
    if hint:
        err_console.print(f"  hint: {one_line(hint)}")


def output_format() -> str:
    """The output format of the running command (``--format``, before or after the
    command; ``table`` by default)."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    value = ctx.find_root().meta.get(FORMAT_KEY) if ctx is not None else None
    return value if isinstance(value, str) else "table"


#: Where the chosen ``--format`` is kept: the root context's meta (one per command run).
FORMAT_KEY = "export_center.format"

_SETTINGS_KEY = "export_center.settings"


def settings() -> Settings:
    """The settings, loaded once per command (the first time a command asks for them).

    They are kept on the command's root context, not in a global: a test runs many commands
    in one process, each with its own environment.

    Raises:
        ConfigError: the settings are invalid (only commands that need them fail).
    """
    from typer._click.globals import get_current_context

    from export_center.settings import Settings, load_settings

    ctx = get_current_context(silent=True)
    if ctx is None:
        return load_settings()
    meta = ctx.find_root().meta
    loaded = meta.get(_SETTINGS_KEY)
    if not isinstance(loaded, Settings):
        loaded = meta[_SETTINGS_KEY] = load_settings()
    return loaded


def tenant_or_default(tenant: str | None) -> str:
    return tenant or settings().default_tenant


def fail(message: str, code: ExitCode, hint: str | None = None) -> None:
    print_error(message, hint)
    raise typer.Exit(int(code))


def is_tty() -> bool:
    return sys.stderr.isatty()


def open_store() -> EvidenceStore:
    """The evidence store named by the settings (migrated to the newest schema)."""
    from export_center.store.repository import EvidenceStore

    return EvidenceStore.open(settings().database_url)


def print_json(value: object) -> None:
    import orjson

    sys.stdout.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    )
    sys.stdout.write("\n")


#: The bound for small input files read whole (trust roots, profiles, policies, identities).
MAX_INPUT_BYTES = 4 << 20


def read_input(path: Path, what: str, *, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of the input file ``path``, read whole but never more than ``max_bytes``
    (``/dev/zero`` given as a key file must not fill the memory).

    Raises:
        NotFoundError: no such file. BadInputError: a directory, no permission, too large.
    """
    from export_center.errors import BadInputError, input_error

    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise input_error(path, what, e) from e
    if len(data) > max_bytes:
        raise BadInputError(f"{path}: cannot read {what}: over the {max_bytes:,}-byte limit")
    return data


def existing_paths(paths: list[Path]) -> list[Path]:
    """A parameter callback: every path exists (a file, a folder or an archive), so that a
    typo in one of several inputs stops the command before anything is read or stored.

    Raises:
        NotFoundError: a path does not exist (exit 3, as for any missing input).
    """
    from export_center.errors import NotFoundError

    for path in paths or ():
        if not path.exists() and not path.is_symlink():
            raise NotFoundError(f"{path}: no such file or directory")
    return paths


def existing_dir(path: Path | None) -> Path | None:
    """A parameter callback: the directory given exists (an option naming a place to read
    from, like ``--key-dir``; not given is fine).

    Raises:
        NotFoundError: no such directory. BadInputError: a file, not a directory.
    """
    from export_center.errors import BadInputError, NotFoundError

    if path is None:
        return None
    if not path.exists():
        raise NotFoundError(f"{path}: no such directory")
    if not path.is_dir():
        raise BadInputError(f"{path}: not a directory")
    return path


def check_output_dir(path: Path, what: str) -> Path:
    """Refuse, before any work, an output directory that cannot be one: a file in the way,
    at ``path`` or at one of its parents. Creates nothing (a refused command leaves no
    directory behind); the writer creates the directory, and reports what this cannot
    foresee (a read-only or pseudo file system).

    Raises:
        BadInputError: a file is where the directory (or a parent of it) would be.
    """
    from export_center.errors import BadInputError

    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == path else f" (its parent {candidate} is a file)"
                raise BadInputError(
                    f"{path}: cannot write {what}: not a directory{where}",
                    hint="name a directory (it is created if missing)",
                )
            break
    return path


def output_dir(path: Path, what: str) -> Path:
    """``path`` as a directory to write into, created (with its parents) if missing.

    Raises:
        BadInputError: a file is in the way, or the directory cannot be created (a read-only
            or pseudo file system, no permission).
    """
    from export_center.errors import output_error

    check_output_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(path, what, e) from e
    return path


def check_listen(host: str, port: int, what: str) -> None:
    """Refuse, before anything starts, an address the server could not listen on: a busy
    port, an address of another machine, a host name that does not resolve.

    The probe socket is closed again (the server binds its own, a moment later, with the
    same SO_REUSEADDR), so a port taken in between still fails later, in the server's log.

    Raises:
        BadInputError: the address cannot be bound, with the reason.
    """
    import socket

    from export_center.errors import BadInputError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise BadInputError(f"{what} {host}: not an address of this machine: {e}") from e
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as e:
        raise BadInputError(
            f"{what} {host}:{port}: cannot listen: {e.strerror or e}",
            hint="choose another port, or stop the process that listens there",
        ) from e


def read_trust_roots(path: Path | None) -> dict[str, PublicKey]:
    """The trusted public keys: ``--trust-roots``, else ``<data dir>/airgap/trust-roots.pem``.

    Raises:
        NotFoundError: no such file. BadInputError: the file cannot be read.
        VerificationError: it holds no usable key.
    """
    from export_center.signing.interface import load_trust_roots

    path = path or settings().data_dir / "airgap" / "trust-roots.pem"
    try:
        pem = read_input(path, "trust roots")
    except ExportCenterError as e:
        e.hint = "pass --trust-roots KEYS.pem (the exporter's `stella keys export-public`)"
        raise
    return load_trust_roots(pem, where=str(path))


_CHECK_MARKS: dict[Status, tuple[str, str]] = {
    "pass": ("green", "PASS"),
    "fail": ("red", "FAIL"),
    "skipped": ("yellow", "SKIP"),
    "not run": ("dim", "----"),
}


def print_verification_failure(bundle: object, checks: Iterable[CheckResult]) -> None:
    """The error line of a bundle that failed verification: which check, and why (the
    report on stdout has every check; this is the one line a script or a person reads)."""
    failed = next((c for c in checks if c.status == "fail"), None)
    why = f" at {failed.name}: {failed.detail}" if failed else ""
    print_error(f"{bundle}: verification failed{why}")


def print_checks(checks: Iterable[CheckResult]) -> None:
    """One line per verification check: status mark, name, detail; in order."""
    for c in checks:
        style, mark = _CHECK_MARKS[c.status]
        console.print(marked(style, mark, f" {c.name:<20} {c.detail}"))
