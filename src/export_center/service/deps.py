"""FastAPI dependencies: the shared services, the authenticated caller, idempotency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from export_center.errors import ForbiddenError
from export_center.runtime.container import Services
from export_center.service.auth import (
    SCOPE_DOWNLOAD,
    SCOPE_METRICS,
    SCOPE_PROFILES,
    SCOPE_READ,
    SCOPE_RUN,
    Principal,
)
from export_center.service.context import ApiContext
from export_center.service.idempotency import StoredResponse, fingerprint

P = ParamSpec("P")
T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="An API token (stl_…) or a JWT.")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_api(request: Request) -> ApiContext:
    api: ApiContext = request.app.state.api
    return api


ApiDep = Annotated[ApiContext, Depends(get_api)]


async def db_read(services: Services, read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a short read of the store for a route.

    On the embedded SQLite store, on the event loop itself: such a read costs a fraction of
    a millisecond and never waits for a writer, while a hop to the thread pool and back
    costs about as much CPU again and, while exports keep both cores busy, waits for two
    threads to be scheduled (the API's tail latency under load; docs/benchmarks.md). On
    PostgreSQL a read waits for the network, so it runs in the thread pool.
    """
    if services.store.embedded:
        return read(*args, **kwargs)
    return await run_in_threadpool(read, *args, **kwargs)


async def get_principal(
    request: Request,
    api: ApiDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_stella_tenant: Annotated[
        str | None,
        Header(
            max_length=64,
            description="The tenant to act for, when the token carries several.",
        ),
    ] = None,
) -> Principal:
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    # Dependencies are async so that a request costs one thread hop (its route), not one per
    # dependency; only a token not verified recently needs the database.
    principal = api.auth.authenticate_cached(header, x_stella_tenant)
    if principal is None:
        services: Services = request.app.state.services
        principal = await db_read(services, api.auth.authenticate, header, x_stella_tenant)
    request.state.principal = principal
    return principal


def _scoped(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(scope)
        return principal

    return check


async def check_metrics_access(
    api: ApiDep,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """``/metrics`` names every tenant and profile: a token with ``export:metrics`` (an
    operator's scope) unless the operator made it public (``service.metrics_public``).

    Raises:
        AuthenticationError: no or an invalid token (401). ForbiddenError: no such scope (403).
    """
    if services.service.metrics_public:
        return
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    grant = await run_in_threadpool(api.auth.grant, header)
    if SCOPE_METRICS not in grant.scopes:
        raise ForbiddenError(f"this token lacks the scope {SCOPE_METRICS}")


MetricsAccess = Depends(check_metrics_access)
ProfileManager = Annotated[Principal, Depends(_scoped(SCOPE_PROFILES))]
Runner = Annotated[Principal, Depends(_scoped(SCOPE_RUN))]
Reader = Annotated[Principal, Depends(_scoped(SCOPE_READ))]
Downloader = Annotated[Principal, Depends(_scoped(SCOPE_DOWNLOAD))]


@dataclass(frozen=True)
class Idempotent:
    """Runs a POST handler once per ``Idempotency-Key`` and tenant."""

    api: ApiContext
    key: str | None
    fingerprint: str

    def __call__(self, tenant: str, handler: Callable[[], StoredResponse]) -> Response:
        stored, replayed = self.api.idempotency.run(tenant, self.key, self.fingerprint, handler)
        headers = dict(stored.headers)
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(
            content=stored.body,
            status_code=stored.status_code,
            headers=headers,
            media_type="application/json",
        )


async def get_idempotent(
    request: Request,
    api: ApiDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Replays the first response to the same request; 409 on another body.",
        ),
    ] = None,
) -> Idempotent:
    body = await request.body()
    return Idempotent(api, idempotency_key, fingerprint(request.method, request.url.path, body))


IdempotentDep = Annotated[Idempotent, Depends(get_idempotent)]
