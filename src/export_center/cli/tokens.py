"""``stella tokens create|list|revoke``: API tokens (stored hashed; the secret is shown once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from export_center.cli import common

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
        int | None, typer.Option("--expires-days", help="Lifetime in days (default: none).")
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Create an API token; its secret is printed once."""
    from export_center.runtime.container import open_store
    from export_center.service.auth import TokenStore

    store = open_store(common.settings())
    info, secret = TokenStore(store).create(
        name,
        tenant,
        scope,
        expires_in=timedelta(days=expires_days) if expires_days else None,
    )
    if output == "json":
        common.print_json(
            {"id": info.id, "token": secret, "tenants": info.tenants, "scopes": info.scopes}
        )
        return
    common.err_console.print(
        f"token {info.id} for {', '.join(info.tenants)} ({' '.join(info.scopes)}); "
        "the secret below is shown only now:",
        highlight=False,
    )
    common.console.print(secret, highlight=False)


@app.command("list")
def tokens_list(output: common.FormatOpt = "table") -> None:
    """List tokens (never their secrets)."""
    from export_center.runtime.container import open_store
    from export_center.service.auth import TokenStore

    tokens = TokenStore(open_store(common.settings())).list_tokens()
    if output == "json":
        common.print_json(
            [
                {
                    "id": t.id,
                    "name": t.name,
                    "tenants": t.tenants,
                    "scopes": t.scopes,
                    "revoked": t.revoked_at is not None,
                }
                for t in tokens
            ]
        )
        return
    table = Table(title=f"{len(tokens)} tokens")
    for col in ("id", "name", "tenants", "scopes", "state"):
        table.add_column(col)
    for t in tokens:
        table.add_row(
            t.id,
            t.name,
            ",".join(t.tenants),
            " ".join(t.scopes),
            "revoked" if t.revoked_at else "active",
        )
    common.console.print(table)


@app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="Token id (tok_...).")]) -> None:
    """Revoke a token (effective within seconds on every server)."""
    from export_center.runtime.container import open_store
    from export_center.service.auth import TokenStore

    TokenStore(open_store(common.settings())).revoke(token_id)
    common.console.print(f"revoked {token_id}")
