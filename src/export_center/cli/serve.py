"""``stella serve``: the REST API and, by default, worker processes that run the exports."""

from __future__ import annotations

import gc
import shlex
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from export_center.cli import common

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

app = typer.Typer(add_completion=False)

#: Threads that answer the API's synchronous routes (and their database connections).
API_THREADS = 16
#: CPU priority of the worker processes (nice value): the API answers first.
WORKER_NICE = 10


class _ThreadLimit:
    """Sets the size of the thread pool the API's synchronous routes run in, when the server
    starts (the pool belongs to the event loop; the database pool is sized to match)."""

    def __init__(self, app: ASGIApp, threads: int) -> None:
        self.app = app
        self.threads = threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
        await self.app(scope, receive, send)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8080,
    with_worker: Annotated[
        bool,
        typer.Option("--worker/--no-worker", help="Run exports too (default), or only the API."),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Worker processes to start for the exports; 0 runs them in threads of the "
            "API process instead (requests then wait behind exports).",
        ),
    ] = 1,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            max=1024,
            help="Concurrent runs per worker (process or in-process).",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Seed demo evidence, a key, a profile, and print a token to try it."
        ),
    ] = False,
    log_level: common.LogLevelOpt = "info",
) -> None:
    """Serve the REST API, with worker processes that run the exports (one command)."""
    import os

    from export_center.runtime.metrics_dir import metrics_process_group

    # First: prometheus-client reads the directory when it is imported (below). The worker
    # processes started from here inherit it, so /metrics includes their samples.
    metrics_dir = metrics_process_group(os.environ, private=True)
    from functools import partial

    import uvicorn

    from export_center.exporter import run_export
    from export_center.runtime.container import Services
    from export_center.runtime.logs import configure_logging
    from export_center.runtime.metrics import Metrics
    from export_center.service.app import create_app, openapi_document
    from export_center.worker.processes import WorkerProcesses, worker_command
    from export_center.worker.runtime import WorkerRuntime

    # Before the store is opened or anything starts: a busy port is the user's to fix, not
    # a failure to find in the server's log.
    common.check_listen(host, port, "--host/--port")
    configure_logging(log_level)
    settings = common.settings()
    in_process = with_worker and workers == 0
    runs = concurrency or settings.service.worker_concurrency or 1
    # Connections: one per API thread, plus an in-process worker's (export, heartbeat,
    # maintenance) and the queue-size gauge's.
    pool = API_THREADS + (2 * runs + 2 if in_process else 2)
    services = Services.open(
        settings, pool_size=pool, metrics=Metrics(multiprocess_dir=metrics_dir)
    )
    runtime = None
    children = None
    try:
        # Before anything starts: a bad JWKS file stops the server here.
        api = create_app(services)
        if in_process:
            # devportal:offline runs package this API's OpenAPI document (a worker process
            # makes it itself: `stella worker` passes the same function).
            export = partial(run_export, openapi=openapi_document)
            runtime = WorkerRuntime(services, concurrency=concurrency, export=export)
        if demo:
            from export_center.service.demo import seed_demo

            setup = seed_demo(services)
            url = f"http://{host}:{port}"
            # Lines to paste into a shell: the token exported once, then used in double
            # quotes (single quotes would send the text "$TOKEN" and get a 401).
            common.err_console.print(
                common.marked(
                    "bold",
                    "demo ready",
                    f": tenant {setup.tenant}, profile {setup.profile}, "
                    f"{setup.ingested} records ingested; in another shell:\n"
                    f"  export TOKEN={shlex.quote(setup.token)}\n"
                    f'  stella export run {setup.profile} --server {url} --token "$TOKEN" '
                    "--wait --out ./bundles\n"
                    f'  curl -H "Authorization: Bearer $TOKEN" {url}/api/export/profiles',
                )
            )
        if runtime is not None:
            runtime.start()
        if with_worker and workers > 0:
            # Started after the store is migrated: the workers find the schema ready.
            # At a lower CPU priority: requests are answered before exports get the CPU.
            # They drain for 60 s when the server stops (as the in-process worker does), and
            # are killed 30 s after that.
            command = worker_command(
                concurrency=concurrency, log_level=log_level, nice=WORKER_NICE, drain_seconds=60
            )
            children = WorkerProcesses(workers, command, kill_after=90)
            children.start()
        # uvicorn stops on SIGTERM, then raises it again: with the default handler that ends
        # the process before the finally block stops the workers (and before the exit
        # handler removes the metrics directory). A handler that returns lets both run.
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
        # What the server built at start (modules, routes, models: ~170,000 objects) lives
        # as long as it does: frozen out of the collector's way, a full collection no longer
        # walks it (it took 120 ms on a 2-core machine, the event loop stopped meanwhile).
        gc.collect()
        gc.freeze()
        # uvicorn's fast HTTP stack (httptools, uvloop: the [service] extra) when installed.
        uvicorn.run(
            _ThreadLimit(api, API_THREADS),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if children is not None:
            children.stop()
        if runtime is not None:
            runtime.stop()
        services.close()
