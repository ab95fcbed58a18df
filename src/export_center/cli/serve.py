"""``stella serve``: the REST API and, by default, an in-process worker."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from export_center.cli import common

app = typer.Typer(add_completion=False)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8080,
    with_worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run exports in this process too.")
    ] = True,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", min=1, max=1024, help="Concurrent runs of the in-process worker."
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
    """Serve the REST API (and, by default, run exports in-process)."""
    import os

    from export_center.runtime.metrics_dir import metrics_process_group

    # First: prometheus-client reads the directory when it is imported (below). Processes
    # started from here inherit it, so /metrics includes their samples.
    metrics_dir = metrics_process_group(os.environ, private=True)
    from functools import partial

    import uvicorn

    from export_center.exporter import run_export
    from export_center.runtime.container import Services
    from export_center.runtime.logs import configure_logging
    from export_center.runtime.metrics import Metrics
    from export_center.service.app import create_app, openapi_document
    from export_center.worker.runtime import WorkerRuntime

    # Before the store is opened or anything starts: a busy port is the user's to fix, not
    # a failure to find in the server's log.
    common.check_listen(host, port, "--host/--port")
    configure_logging(log_level)
    services = Services.open(common.settings(), metrics=Metrics(multiprocess_dir=metrics_dir))
    runtime = None
    try:
        # Before anything starts: a bad JWKS file stops the server here.
        api = create_app(services)
        # devportal:offline runs package this API's OpenAPI document (the worker cannot make
        # it: it does not import the service).
        export = partial(run_export, openapi=openapi_document)
        runtime = (
            WorkerRuntime(services, concurrency=concurrency, export=export) if with_worker else None
        )
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
