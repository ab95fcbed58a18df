"""The FastAPI application: routes, error envelope, request context, OpenAPI.

Routes only translate HTTP into calls on :class:`~export_center.runtime.container.Services`;
this module answers every error with the body ``{"code", "message", "details", "traceId",
"timestamp"}`` of docs/api.md, and the status the error tree gives its class
(:mod:`export_center.errors`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from export_center import __version__
from export_center.errors import (
    BadInputError,
    ExportCenterError,
    QuotaError,
    RangeNotSatisfiableError,
    error_class_for_status,
)
from export_center.planner.profiles import field_path, problem_message
from export_center.runs.clock import utcnow
from export_center.runtime.container import Services
from export_center.service._http import BASE
from export_center.service.context import ApiContext
from export_center.service.edge import BodyLimit, ErrorEnvelope
from export_center.service.schemas import ErrorBody, timestamp

log = logging.getLogger("export_center.service.http")

OPENAPI_URL = "/.well-known/openapi"
_TRACE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _trace_id(request: Request) -> str:
    return str(getattr(request.state, "trace_id", "") or uuid.uuid4().hex)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(
        code=code,
        message=message,
        details=details or [],
        trace_id=_trace_id(request),
        timestamp=timestamp(utcnow()),
    )
    return JSONResponse(
        body.model_dump(by_alias=True), status_code=status, headers=dict(headers or {})
    )


async def _on_export_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ExportCenterError)
    status = exc.http_status
    headers: dict[str, str] = {}
    details: list[dict[str, Any]] = list(getattr(exc, "details", []) or [])
    if exc.hint:
        details.append({"hint": exc.hint})
    if isinstance(exc, QuotaError):
        headers = {
            "Retry-After": str(exc.retry_after),
            "X-Stella-Quota-Limit": str(exc.limit),
            "X-Stella-Quota-Remaining": str(exc.remaining),
            "X-Stella-Quota-Reset": str(exc.reset_seconds),
        }
        details.append({"quota": exc.quota, "limit": exc.limit, "retryAfter": exc.retry_after})
    elif isinstance(exc, RangeNotSatisfiableError):
        headers = {"Content-Range": f"bytes */{exc.size}"}
    elif status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="stella-export"'}
    if status >= 500:
        log.error("request failed: %s", exc.message, exc_info=exc)
    return error_response(request, status, exc.code, exc.message, details=details, headers=headers)


def _problem(err: Mapping[str, Any]) -> dict[str, str]:
    loc = [p for p in err.get("loc", ()) if p != "body"]
    if loc[:1] == ["spec"]:
        # A profile body: the same words as the CLI's (planner.profiles), with its path.
        path = field_path(loc[1:])
        return {"field": f"spec.{path}", "message": problem_message(err, path)}
    return {
        "field": ".".join(str(p) for p in loc) or "(request)",
        "message": "unknown field"
        if err.get("type") == "extra_forbidden"
        else str(err.get("msg", "invalid")).removeprefix("Value error, "),
    }


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_problem(err) for err in exc.errors()]
    first = details[0] if details else {"field": "(request)", "message": "invalid"}
    return error_response(
        request,
        400,
        BadInputError.code,
        f"invalid request: {first['field']}: {first['message']}",
        details=details,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = error_class_for_status(exc.status_code).code
    return error_response(
        request,
        exc.status_code,
        code,
        str(exc.detail),
        headers=dict(exc.headers or {}),
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error", exc_info=exc)
    return error_response(
        request, 500, "ERR_EXPORT_INTERNAL", "internal error; the trace id is in the logs"
    )


class RequestContext:
    """Trace id, one structured log line and the HTTP metrics per request (pure ASGI)."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.metrics = services.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        trace = incoming if _TRACE.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["trace_id"] = trace
        started = time.perf_counter()
        status = 500
        first_byte: float | None = None

        async def send_with_trace(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = int(message["status"])
                first_byte = time.perf_counter()
                MutableHeaders(scope=message)["X-Trace-Id"] = trace
            await send(message)

        with structlog.contextvars.bound_contextvars(trace_id=trace):
            try:
                await self.app(scope, receive, send_with_trace)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                if route is not None and scope["path"].startswith(BASE + "/"):
                    template = BASE + template
                elapsed = (first_byte or time.perf_counter()) - started
                self.metrics.http_requests.labels(template, scope["method"], str(status)).inc()
                self.metrics.http_latency.labels(template).observe(elapsed)
                principal = scope.get("state", {}).get("principal")
                path_params = scope.get("path_params") or {}
                log.info(
                    "%s %s -> %d",
                    scope["method"],
                    template,
                    status,
                    extra={
                        "http_status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        "tenant": getattr(principal, "tenant", None),
                        "run_id": path_params.get("run_id"),
                        "profile": path_params.get("name"),
                    },
                )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    # Validation errors are answered with 400 and the error envelope, never FastAPI's 422.
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema


def create_app(services: Services) -> FastAPI:
    """The API over ``services`` (which the caller opens and closes).

    Raises:
        ConfigError: the JWKS file of the service settings is unreadable.
    """
    from export_center.service import console

    api = ApiContext.open(services)
    app = _routed_app()
    app.state.services = services
    app.state.api = api
    console.install(app)  # the web console: reads services and api from app.state
    services.metrics.watch_queue(services.repo.queue_stats)
    app.add_exception_handler(ExportCenterError, _on_export_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    # Outermost last: the trace id first, then the body limit (before routing, parsing and
    # authentication), then the error envelope over whatever the framework answers itself.
    # FastAPI's own max_body_size is not used: when a route does not read the body it answers
    # an over-limit Content-Length with Starlette's text/plain 413, outside our handlers.
    app.add_middleware(ErrorEnvelope)
    app.add_middleware(BodyLimit, max_bytes=services.service.max_request_bytes)
    app.add_middleware(RequestContext, services=services)
    return app


def _routed_app() -> FastAPI:
    """The application's routes and OpenAPI document, without the services behind them."""
    from export_center.service import routes_ops, routes_policies, routes_profiles, routes_runs

    app = FastAPI(
        title="Stella Export Center API",
        version=__version__,
        description="Export profiles, runs, their events and their signed bundles. "
        "Errors use one envelope; the code table is in docs/api.md.",
        openapi_url=OPENAPI_URL,
        docs_url=f"{BASE}/docs",
        redoc_url=None,
    )
    app.include_router(routes_profiles.router, prefix=BASE)
    app.include_router(routes_policies.router, prefix=BASE)
    app.include_router(routes_runs.router, prefix=BASE)
    app.include_router(routes_ops.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def openapi_document() -> bytes:
    """The API's OpenAPI document (what ``GET /.well-known/openapi`` serves) as RFC 8785
    bytes: what devportal:offline runs package as the portal's spec. Needs no services, so a
    worker process's composition root can pass it to the exporter."""
    import rfc8785

    return bytes(rfc8785.dumps(_routed_app().openapi()))
