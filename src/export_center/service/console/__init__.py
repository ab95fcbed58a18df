"""The web console: runs, live progress, downloads and profiles in a browser (``/console``).

Server-rendered pages (Jinja2) and one small script; no external asset of any kind, so that it
works inside an air gap. The console is a face on the REST API, not a second API: every read
and write of runs and profiles is an in-process request to ``/api/export`` made with the
signed-in user's own token (bridge.py), so tenants, scopes, validation, idempotency and quotas
are the API's, unchanged. docs/console.md describes it.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Serve the console from ``app`` (which :func:`~export_center.service.app.create_app`
    built: its services and API context are on ``app.state``)."""
    from export_center.service.console.context import STATIC, STATIC_URL, Console
    from export_center.service.console.pages import router

    app.state.console = Console.open(app.state.services, app.state.api)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="console-static")
    app.include_router(router)
