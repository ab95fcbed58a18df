"""``stella worker``: execute queued export runs, no API; any number of them, on any hosts."""

from __future__ import annotations

import os
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
        int | None,
        typer.Option("--concurrency", min=1, max=1024, help="Runs this process executes at once."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port."
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address of the metrics endpoint.")
    ] = "127.0.0.1",
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds",
            min=0,
            help="On SIGTERM/SIGINT, let running exports finish this long before handing "
            "them back to the queue.",
        ),
    ] = 300.0,
    no_maintenance: Annotated[
        bool, typer.Option("--no-maintenance", help="Do not run recovery/retention/schedules.")
    ] = False,
    nice: Annotated[
        int,
        typer.Option(
            "--nice",
            min=0,
            max=19,
            help="Lower this worker's CPU priority (as nice(1) does): an API on the same host "
            "then answers before exports get the CPU. stella serve starts its workers with 10.",
        ),
    ] = 0,
    parent_pid: Annotated[
        int | None,
        typer.Option(
            "--parent-pid",
            hidden=True,
            help="Stop (draining) when this process is no longer our parent (stella serve).",
        ),
    ] = None,
    log_level: common.LogLevelOpt = "info",
) -> None:
    """Execute queued export runs (no API). Any number may run, on any hosts."""
    from export_center.runtime.metrics_dir import metrics_process_group

    # Before prometheus_client is imported: only when the operator groups processes.
    metrics_dir = metrics_process_group(os.environ, private=False)
    from functools import partial

    from prometheus_client import start_http_server

    from export_center.errors import BadInputError
    from export_center.exporter import run_export
    from export_center.netpolicy import is_loopback
    from export_center.runtime.container import Services
    from export_center.runtime.logs import configure_logging
    from export_center.runtime.metrics import Metrics
    from export_center.service.app import openapi_document
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
    if metrics_port is not None:  # before anything starts (see serve)
        common.check_listen(metrics_host, metrics_port, "--metrics-host/--metrics-port")
    if nice:
        os.nice(nice)  # before any thread starts: they all inherit it
    configure_logging(log_level)
    runs = concurrency or settings.service.worker_concurrency or 1
    # Connections: each run's export and heartbeat threads, maintenance, the metrics gauge.
    services = Services.open(
        settings, pool_size=2 * runs + 2, metrics=Metrics(multiprocess_dir=metrics_dir)
    )
    runtime = WorkerRuntime(
        services,
        concurrency=concurrency,
        maintenance=not no_maintenance,
        # devportal:offline runs package the API's OpenAPI document (docs/devportal.md).
        export=partial(run_export, openapi=openapi_document),
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # a second signal: stop now, hand running exports back
            runtime.executor.aborting.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host, registry=services.metrics.exposition)
    try:
        runtime.start()
        while not stop.wait(1.0):
            if not runtime.alive:
                common.fail("the worker loop stopped", ExitCode.UNEXPECTED)
            if parent_pid is not None and os.getppid() != parent_pid:
                # The server that started us is gone (killed without stopping us): drain.
                stop.set()
    finally:
        runtime.stop(drain_seconds=drain_seconds)
        services.close()
