"""``stella worker``: execute queued export runs, no API; any number of them, on any hosts."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from export_center.cli import common
from export_center.errors import ExitCode

app = typer.Typer(add_completion=False)


@app.command("worker")
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
    log_level: common.LogLevelOpt = "info",
) -> None:
    """Execute queued export runs (no API). Any number may run, on any hosts."""
    from prometheus_client import start_http_server

    from export_center.errors import BadInputError
    from export_center.netpolicy import is_loopback
    from export_center.runtime.container import Services
    from export_center.runtime.logs import configure_logging
    from export_center.worker.runtime import WorkerRuntime

    settings = common.settings()
    # This listener has no authentication and its metrics name every tenant and profile: it is
    # an operator-only listener on loopback unless the operator made metrics public
    # (docs/security.md, "HTTP edge").
    if (
        metrics_port is not None
        and not is_loopback(metrics_host)
        and not settings.service.metrics_public
    ):
        raise BadInputError(
            f"--metrics-host {metrics_host}: the worker's metrics name every tenant and have no "
            "authentication; they are served on loopback only",
            hint="scrape through a local agent, or set service.metrics_public = true for a "
            "network only operators reach",
        )
    configure_logging(log_level)
    services = Services.open(settings)
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
