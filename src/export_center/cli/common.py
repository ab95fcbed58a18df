"""Shared CLI plumbing for the command modules: settings, consoles, options, output helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from export_center.errors import ExitCode

if TYPE_CHECKING:
    from pathlib import Path

    from export_center.settings import Settings
    from export_center.signing.interface import PublicKey
    from export_center.store.repository import EvidenceStore
    from export_center.verification import CheckResult, Status

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

TenantOpt = Annotated[
    str | None, typer.Option("--tenant", help="Tenant (default: STELLA_DEFAULT_TENANT).")
]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: table or json.")]
LogLevelOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")]


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


def fail(message: str, code: ExitCode) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
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


def read_trust_roots(path: Path | None) -> dict[str, PublicKey]:
    """The trusted public keys: ``--trust-roots``, else ``<data dir>/airgap/trust-roots.pem``.

    Raises:
        BadInputError: the file cannot be read. VerificationError: it holds no usable key.
    """
    from export_center.errors import BadInputError
    from export_center.signing.interface import load_trust_roots

    path = path or settings().data_dir / "airgap" / "trust-roots.pem"
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise BadInputError(
            f"{path}: cannot read trust roots: {e.strerror}",
            hint="pass --trust-roots KEYS.pem (the exporter's `stella keys export-public`)",
        ) from e
    return load_trust_roots(pem, where=str(path))


_CHECK_MARKS: dict[Status, str] = {
    "pass": "[green]PASS[/green]",
    "fail": "[red]FAIL[/red]",
    "skipped": "[yellow]SKIP[/yellow]",
    "not run": "[dim]----[/dim]",
}


def print_checks(checks: Iterable[CheckResult]) -> None:
    """One line per verification check: status mark, name, detail; in order."""
    for c in checks:
        console.print(f"{_CHECK_MARKS[c.status]} {c.name:<20} {c.detail}", highlight=False)
