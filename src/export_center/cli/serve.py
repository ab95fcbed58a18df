"""``stella serve`` (API + in-process worker), ``stella worker`` and ``stella tokens``."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from export_center.cli import common
from export_center.errors import ExitCode

tokens_app = typer.Typer(help="API tokens (stored hashed; the secret is shown once).")

LogLevelOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.add_typer(tokens_app, name="tokens", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    with_worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run exports in this process too.")
    ] = True,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Concurrent runs of the in-process worker.")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Seed demo evidence, a key, a profile, and print a token to try it."
        ),
    ] = False,
    log_level: LogLevelOpt = "info",
) -> None:
    """Serve the REST API (and, by default, run exports in-process)."""
    import uvicorn

    from export_center.runtime.container import Services
    from export_center.runtime.logs import configure_logging
    from export_center.service.app import create_app
    from export_center.worker.runtime import WorkerRuntime

    configure_logging(log_level)
    services = Services.open(common.settings())
    runtime = None
    try:
        # Before anything starts: a bad JWKS file stops the server here.
        api = create_app(services)
        runtime = WorkerRuntime(services, concurrency=concurrency) if with_worker else None
        if demo:
            from export_center.service.demo import seed_demo

            setup = seed_demo(services)
            url = f"http://{host}:{port}"
            common.err_console.print(
                f"[bold]demo ready[/bold]: tenant {setup.tenant}, profile {setup.profile}, "
                f"{setup.ingested} records ingested\n"
                f"  token: {setup.token}\n"
                f"  try:   stella export run {setup.profile} --server {url} --token $TOKEN --wait"
                f" --out ./bundles\n"
                f"  or:    curl -H 'Authorization: Bearer $TOKEN' {url}/api/export/profiles",
                highlight=False,
            )
        if runtime is not None:
            runtime.start()
        uvicorn.run(
            api,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if runtime is not None:
            runtime.stop()
        services.close()


def worker(
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Runs this process executes at once.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address of the metrics endpoint.")
    ] = "127.0.0.1",
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds",
            help="On SIGTERM/SIGINT, let running exports finish this long before handing "
            "them back to the queue.",
        ),
    ] = 300.0,
    no_maintenance: Annotated[
        bool, typer.Option("--no-maintenance", help="Do not run recovery/retention/schedules.")
    ] = False,
    log_level: LogLevelOpt = "info",
) -> None:
    """Execute queued export runs (no API). Any number may run, on any hosts."""
    from prometheus_client import start_http_server

    from export_center.runtime.container import Services
    from export_center.runtime.logs import configure_logging
    from export_center.worker.runtime import WorkerRuntime

    configure_logging(log_level)
    services = Services.open(common.settings())
    runtime = WorkerRuntime(services, concurrency=concurrency, maintenance=not no_maintenance)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # a second signal: stop now, hand running exports back
            runtime.executor.aborting.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host, registry=services.metrics.registry)
    try:
        runtime.start()
        while not stop.wait(1.0):
            if not runtime.alive:
                common.err_console.print("[red]error:[/red] the worker loop stopped")
                raise typer.Exit(int(ExitCode.UNEXPECTED))
    finally:
        runtime.stop(drain_seconds=drain_seconds)
        services.close()


@tokens_app.command("create")
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


@tokens_app.command("list")
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


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="Token id (tok_...).")]) -> None:
    """Revoke a token (effective within seconds on every server)."""
    from export_center.runtime.container import open_store
    from export_center.service.auth import TokenStore

    TokenStore(open_store(common.settings())).revoke(token_id)
    common.console.print(f"revoked {token_id}")
