"""Operations endpoints: ``/healthz`` (alive), ``/readyz`` (can serve), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from export_center.service._http import errors
from export_center.service.deps import MetricsAccess, ServicesDep
from export_center.service.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (no dependency is checked)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is not usable"}},
)
async def readyz(services: ServicesDep) -> Response:
    """The database answers and the artifact store is writable."""
    checks = await run_in_threadpool(services.ready)
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(by_alias=True), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[MetricsAccess],
    responses=errors(
        401, 403, also={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}
    ),
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition (export_runs_total, export_run_duration_seconds, ...).

    It names every tenant and profile, so it needs a token with the ``export:metrics`` scope
    (``Authorization: Bearer``), unless ``service.metrics_public`` is set."""
    body = await run_in_threadpool(generate_latest, services.metrics.exposition)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
