"""``/api/export/policies``: the tenant's policy documents (upload a version, list, get).

A tenant's profiles name these documents by name (``spec.policy.name``), never a server file;
each revision pins the digest of the version it was written with. Versions are immutable.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from export_center.policy.repository import PolicyStore
from export_center.service._http import AUTHED, BASE, errors, next_link, stored
from export_center.service.deps import IdempotentDep, ProfileManager, Reader, ServicesDep
from export_center.service.idempotency import StoredResponse
from export_center.service.schemas import PolicyPage, PolicyPublic, PolicySummary, PolicyUpload

router = APIRouter(prefix="/policies", tags=["policies"])

NamePath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


@router.get("", response_model=PolicyPage, responses=errors(*AUTHED))
def list_policies(
    principal: Reader,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PolicyPage:
    """The tenant's policies (newest version of each), by name."""
    items, total = PolicyStore(services.store).list(principal.tenant, offset=offset, limit=limit)
    return PolicyPage(
        items=[PolicySummary.of(p) for p in items],
        total=total,
        offset=offset,
        limit=limit,
        next=next_link(f"{BASE}/policies", {}, offset, limit, total),
    )


@router.post(
    "",
    status_code=201,
    response_model=PolicyPublic,
    responses=errors(
        *AUTHED,
        409,
        also={200: {"model": PolicyPublic, "description": "The same document is stored already"}},
    ),
)
def upload_policy(
    body: PolicyUpload, principal: ProfileManager, services: ServicesDep, once: IdempotentDep
) -> Response:
    """Store a policy document (YAML or JSON) as the next version of ``name``: 201; 200 with
    the existing version when the same document (same digest) is stored already. An invalid
    document is 400 naming each bad field."""

    def handle() -> StoredResponse:
        p, created = PolicyStore(services.store).upload(
            principal.tenant, body.name, body.content.encode("utf-8")
        )
        return stored(
            PolicyPublic.of(p),
            201 if created else 200,
            {"Location": f"{BASE}/policies/{p.name}?version={p.version}"},
        )

    return once(principal.tenant, handle)


@router.get("/{name}", response_model=PolicyPublic, responses=errors(*AUTHED, 404))
def get_policy(
    name: NamePath,
    principal: Reader,
    services: ServicesDep,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    digest: Annotated[str | None, Query(pattern=r"^sha256:[0-9a-f]{64}$")] = None,
) -> PolicyPublic:
    """A version of a policy: the newest, or the one with ``version`` or ``digest``."""
    return PolicyPublic.of(
        PolicyStore(services.store).get(principal.tenant, name, version=version, digest=digest)
    )


@router.get("/{name}/versions", response_model=list[PolicySummary], responses=errors(*AUTHED, 404))
def policy_versions(
    name: NamePath, principal: Reader, services: ServicesDep
) -> list[PolicySummary]:
    """Every version of a policy, oldest first."""
    versions = PolicyStore(services.store).versions(principal.tenant, name)
    return [PolicySummary.of(p) for p in versions]
