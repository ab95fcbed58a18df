"""``stella tokens create|list|revoke``: API tokens (stored hashed; the secret is shown once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from export_center.cli import common

if TYPE_CHECKING:
    from export_center.service.auth import TokenInfo

#: The lifetime of a token when --expires-days is not given (--no-expiry for none).
DEFAULT_EXPIRES_DAYS = 90

app = typer.Typer(
    name="tokens",
    help="API tokens (stored hashed; the secret is shown once).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("create")
def tokens_create(
    tenant: Annotated[list[str], typer.Option("--tenant", help="Tenant (repeatable).")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="export:profile:manage, export:run, export:read, export:download (repeatable).",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="A label for people.")] = "token",
    expires_days: Annotated[
        int | None,
        typer.Option(
            "--expires-days",
            help=f"Lifetime in days, 1-3650 (default: {DEFAULT_EXPIRES_DAYS}).",
        ),
    ] = None,
    no_expiry: Annotated[
        bool, typer.Option("--no-expiry", help="A token that never expires (say so explicitly).")
    ] = False,
    output: common.FormatOpt = "table",
) -> None:
    """Create an API token; its secret is printed once."""
    from export_center.errors import BadInputError
    from export_center.runtime.container import open_store
    from export_center.service.auth import TokenStore

    if no_expiry and expires_days is not None:
        raise BadInputError("--no-expiry and --expires-days exclude each other")
    if expires_days is not None and not 1 <= expires_days <= 3650:
        # 0 once meant "never expires" and negative values were accepted: both refused.
        raise BadInputError(
            f"--expires-days must be between 1 and 3650, not {expires_days}",
            hint="--no-expiry makes a token that never expires",
        )
    lifetime = None if no_expiry else timedelta(days=expires_days or DEFAULT_EXPIRES_DAYS)
    store = open_store(common.settings())
    info, secret = TokenStore(store).create(name, tenant, scope, expires_in=lifetime)
    if output == "json":
        common.print_json(
            {
                "id": info.id,
                "token": secret,
                "tenants": info.tenants,
                "scopes": info.scopes,
                "expiresAt": _when(info.expires_at),
            }
        )
        return
    common.err_console.print(
        f"token {info.id} for {', '.join(info.tenants)} ({' '.join(info.scopes)}), "
        f"expires {_when(info.expires_at) or 'never'}; the secret below is shown only now:",
        highlight=False,
    )
    common.console.print(secret, highlight=False)


@app.command("list")
def tokens_list(output: common.FormatOpt = "table") -> None:
    """List tokens (never their secrets)."""
    from export_center.runtime.container import open_store
    from export_center.service.auth import TokenStore

    tokens = TokenStore(open_store(common.settings())).list_tokens()
    now = datetime.now(UTC)
    if output == "json":
        common.print_json(
            [
                {
                    "id": t.id,
                    "name": t.name,
                    "tenants": t.tenants,
                    "scopes": t.scopes,
                    "createdAt": _when(t.created_at),
                    "expiresAt": _when(t.expires_at),
                    "state": _state(t, now),
                    "revoked": t.revoked_at is not None,
                }
                for t in tokens
            ]
        )
        return
    table = Table(title=f"{len(tokens)} tokens")
    for col in ("id", "name", "tenants", "scopes", "expires", "state"):
        table.add_column(col)
    for t in tokens:
        table.add_row(
            t.id,
            t.name,
            ",".join(t.tenants),
            " ".join(t.scopes),
            _when(t.expires_at) or "never",
            _state(t, now),
        )
    common.console.print(table)


@app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="Token id (tok_...).")]) -> None:
    """Revoke a token (effective within seconds on every server)."""
    from export_center.runtime.container import open_store
    from export_center.service.auth import TokenStore

    TokenStore(open_store(common.settings())).revoke(token_id)
    common.console.print(f"revoked {token_id}")


def _when(at: datetime | None) -> str | None:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else None


def _state(t: TokenInfo, now: datetime) -> str:
    if t.revoked_at is not None:
        return "revoked"
    if t.expires_at is not None and t.expires_at <= now:
        return "expired"
    return "active"
