"""``/api/export/profiles``: list, create, get, new revision, archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from export_center.errors import RequestValidationFailed
from export_center.planner.profiles import with_prefix
from export_center.service._http import AUTHED, BASE, errors, json_response, next_link, stored
from export_center.service.deps import (
    IdempotentDep,
    ProfileManager,
    Reader,
    ServicesDep,
    db_read,
)
from export_center.service.idempotency import StoredResponse
from export_center.service.schemas import (
    ProfileCreate,
    ProfilePage,
    ProfilePublic,
    ProfileRevisionCreate,
)

router = APIRouter(prefix="/profiles", tags=["profiles"])

NamePath = Annotated[
    str,
    Path(min_length=3, max_length=64, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
]


@router.get("", response_model=ProfilePage, responses=errors(*AUTHED))
async def list_profiles(
    principal: Reader,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    include_archived: Annotated[bool, Query(alias="includeArchived")] = False,
) -> Response:
    """The tenant's profiles (newest revision of each), by name."""
    items, total = await db_read(
        services,
        services.registry.list,
        principal.tenant,
        offset=offset,
        limit=limit,
        include_archived=include_archived,
    )
    return json_response(
        ProfilePage(
            items=[ProfilePublic.of(p) for p in items],
            total=total,
            offset=offset,
            limit=limit,
            next=next_link(
                f"{BASE}/profiles", {"includeArchived": include_archived}, offset, limit, total
            ),
        )
    )


@router.post(
    "",
    status_code=201,
    response_model=ProfilePublic,
    responses=errors(*AUTHED, 409),
)
def create_profile(
    body: ProfileCreate, principal: ProfileManager, services: ServicesDep, once: IdempotentDep
) -> Response:
    """Create a profile at revision 1 (409 when the name exists).

    The spec is validated with the model of its kind, and what it names (signing key, policy,
    KMS keys, base export) must be the tenant's; refusals are 400 with ``details`` naming each
    field (``spec.options.validity``). The stored revision pins the policy's digest and the
    base's manifest digest.
    """

    def handle() -> StoredResponse:
        try:
            p = services.registry.create(principal.tenant, body.name, body.spec)
        except RequestValidationFailed as e:
            raise with_prefix(e, "spec") from e
        return stored(ProfilePublic.of(p), 201, {"Location": f"{BASE}/profiles/{p.name}"})

    return once(principal.tenant, handle)


@router.get("/{name}", response_model=ProfilePublic, responses=errors(*AUTHED, 404))
async def get_profile(
    name: NamePath,
    principal: Reader,
    services: ServicesDep,
    revision: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """A revision of a profile (the newest by default)."""
    profile = await db_read(services, services.registry.get, principal.tenant, name, revision)
    return json_response(ProfilePublic.of(profile))


@router.post(
    "/{name}/revisions",
    status_code=201,
    response_model=ProfilePublic,
    responses=errors(
        *AUTHED,
        404,
        409,
        also={200: {"model": ProfilePublic, "description": "Same body as the newest revision"}},
    ),
)
def revise_profile(
    name: NamePath,
    body: ProfileRevisionCreate,
    principal: ProfileManager,
    services: ServicesDep,
    once: IdempotentDep,
) -> Response:
    """Add a revision; 200 with the newest revision when the body is identical to it."""

    def handle() -> StoredResponse:
        before = services.registry.get(principal.tenant, name).revision
        try:
            p = services.registry.revise(principal.tenant, name, body.spec)
        except RequestValidationFailed as e:
            raise with_prefix(e, "spec") from e
        status = 201 if p.revision != before else 200
        return stored(
            ProfilePublic.of(p),
            status,
            {"Location": f"{BASE}/profiles/{p.name}?revision={p.revision}"},
        )

    return once(principal.tenant, handle)


@router.post("/{name}/archive", response_model=ProfilePublic, responses=errors(*AUTHED, 404))
def archive_profile(
    name: NamePath, principal: ProfileManager, services: ServicesDep, once: IdempotentDep
) -> Response:
    """Archive a profile: no new revisions or runs; published bundles stay."""

    def handle() -> StoredResponse:
        services.registry.archive(principal.tenant, name)
        return stored(ProfilePublic.of(services.registry.get(principal.tenant, name)), 200)

    return once(principal.tenant, handle)
