"""``stella serve``: the REST API and, by default, worker processes that run the exports."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
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
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
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
        typer.Option("--concurrency", help="Concurrent runs per worker (process or in-process)."),
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
    shared_metrics = None
    if with_worker and workers > 0 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before prometheus_client is imported (here and in the children): the workers' counters
        # reach this server's /metrics (export_center.runtime.metrics).
        shared_metrics = tempfile.mkdtemp(prefix="stella-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics
    try:
        _serve(host, port, with_worker, workers, concurrency, demo, log_level)
    finally:
        if shared_metrics is not None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(shared_metrics, ignore_errors=True)


def _serve(
    host: str,
    port: int,
    with_worker: bool,
    workers: int,
    concurrency: int | None,
    demo: bool,
    log_level: str,
) -> None:
    import uvicorn

    from export_center.runtime.container import Services
    from export_center.runtime.logs import configure_logging
    from export_center.service.app import create_app
    from export_center.worker.processes import WorkerProcesses, worker_command
    from export_center.worker.runtime import WorkerRuntime

    configure_logging(log_level)
    settings = common.settings()
    in_process = with_worker and workers == 0
    runs = concurrency or settings.service.worker_concurrency or 1
    # Connections: one per API thread, plus an in-process worker's (export, heartbeat,
    # maintenance) and the queue-size gauge's.
    pool = API_THREADS + (2 * runs + 2 if in_process else 2)
    services = Services.open(settings, pool_size=pool)
    runtime = None
    children = None
    try:
        # Before anything starts: a bad JWKS file stops the server here.
        api = create_app(services)
        if in_process:
            runtime = WorkerRuntime(services, concurrency=concurrency)
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
        # the process before the finally block stops the workers. A handler that returns
        # lets it run.
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
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
