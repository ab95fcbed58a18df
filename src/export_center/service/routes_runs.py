"""``/api/export/runs`` and ``/api/export/plan``: create, list, get, cancel, events (SSE),
manifest, provenance, download (byte ranges)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from threading import Lock
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from export_center.errors import (
    ArtifactExpiredError,
    BadInputError,
    NotFoundError,
    RangeNotSatisfiableError,
    RunNotReadyError,
)
from export_center.runs.quotas import QuotaStatus
from export_center.runs.repository import RunView
from export_center.runs.states import FINAL_EVENTS
from export_center.runtime.container import Services
from export_center.service._http import AUTHED, BASE, errors, json_response, next_link, stored
from export_center.service.deps import (
    Downloader,
    IdempotentDep,
    Reader,
    Runner,
    ServicesDep,
    db_read,
)
from export_center.service.idempotency import StoredResponse
from export_center.service.schemas import (
    EventPublic,
    PlanPublic,
    PlanRequest,
    RunAccepted,
    RunCreate,
    RunLinks,
    RunPage,
    RunPublic,
    RunStatus,
)

router = APIRouter(tags=["runs"])

RunIdPath = Annotated[str, Path(min_length=1, max_length=64)]
MANIFEST = "manifests/export.json"
PROVENANCE = "manifests/provenance.json"
_MEDIA_TYPES = {
    ".zst": "application/zstd",
    ".gz": "application/gzip",
    ".tar": "application/x-tar",
}


def _quota_headers(quota: QuotaStatus | None) -> dict[str, str]:
    if quota is None:
        return {}
    return {
        "X-Stella-Quota-Limit": str(quota.limit),
        "X-Stella-Quota-Remaining": str(max(0, quota.remaining)),
        "X-Stella-Quota-Reset": str(quota.reset_seconds),
    }


@router.post(
    "/runs",
    status_code=202,
    response_model=RunAccepted,
    responses=errors(*AUTHED, 404, 409, 429),
)
def create_run(
    body: RunCreate, principal: Runner, services: ServicesDep, once: IdempotentDep
) -> Response:
    """Queue a run of a profile revision, pinned to the store's current (or given) sequence."""

    def handle() -> StoredResponse:
        run, quota = services.runs.create(
            principal.tenant,
            body.profile,
            revision=body.revision,
            as_of=body.as_of,
            requested_by=principal.subject,
        )
        links = RunLinks.of(BASE, run.id)
        return stored(
            RunAccepted(id=run.id, status=RunStatus(run.status), links=links),
            202,
            {"Location": links.self_} | _quota_headers(quota),
        )

    return once(principal.tenant, handle)


@router.get("/runs", response_model=RunPage, responses=errors(*AUTHED))
async def list_runs(
    principal: Reader,
    services: ServicesDep,
    status: Annotated[list[RunStatus] | None, Query(max_length=6)] = None,
    profile: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """The tenant's runs, newest first, optionally by status and profile."""
    statuses = [s.value for s in status or ()]
    items, total = await db_read(
        services,
        services.repo.list_runs,
        principal.tenant,
        statuses=statuses,
        profile=profile,
        offset=offset,
        limit=limit,
    )
    return json_response(
        RunPage(
            items=[RunPublic.of(BASE, r) for r in items],
            total=total,
            offset=offset,
            limit=limit,
            next=next_link(
                f"{BASE}/runs", {"status": statuses, "profile": profile}, offset, limit, total
            ),
        )
    )


@router.get("/runs/{run_id}", response_model=RunPublic, responses=errors(*AUTHED, 404))
async def get_run(run_id: RunIdPath, principal: Reader, services: ServicesDep) -> Response:
    """A run with its progress ``{percent, itemsCompleted, itemsTotal}``."""
    run = await db_read(services, services.repo.get, principal.tenant, run_id)
    return json_response(RunPublic.of(BASE, run))


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=RunPublic,
    responses=errors(
        *AUTHED, 404, 409, also={200: {"model": RunPublic, "description": "The run is cancelled"}}
    ),
)
def cancel_run(
    run_id: RunIdPath, principal: Runner, services: ServicesDep, once: IdempotentDep
) -> Response:
    """Cancel: a pending run at once (200); a running one within seconds (202)."""

    def handle() -> StoredResponse:
        run = services.runs.cancel(principal.tenant, run_id)
        return stored(RunPublic.of(BASE, run), 200 if run.status == "cancelled" else 202)

    return once(principal.tenant, handle)


# ---- events (SSE) ------------------------------------------------------------------------------


def _sse(event: EventPublic) -> bytes:
    data = event.model_dump_json(by_alias=True)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def _event_stream(
    request: Request, services: Services, run_id: str, after: int
) -> AsyncIterator[bytes]:
    svc = services.service
    yield b"retry: 2000\n\n"
    last = after
    last_sent = time.monotonic()
    while True:
        events = await run_in_threadpool(services.repo.events_after, run_id, last)
        for e in events:
            yield _sse(EventPublic.of(e))
            last = e.seq
            last_sent = time.monotonic()
            if e.type in FINAL_EVENTS:
                return
        if not events:
            if time.monotonic() - last_sent >= svc.sse_heartbeat_seconds:
                yield b": heartbeat\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(svc.sse_poll_seconds)


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses=errors(
        *AUTHED,
        404,
        also={
            200: {
                "description": "Server-sent events: started, progress, artifact_ready, succeeded, "
                "failed, cancelled (and queued, retrying, expired); id = per-run sequence; a "
                "comment heartbeat every 15 s. The stream ends after a final event.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            204: {"description": "The run is finished and no event follows Last-Event-ID"},
        },
    ),
)
async def run_events(
    run_id: RunIdPath,
    request: Request,
    principal: Reader,
    services: ServicesDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=20, description="Resume after this event."),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="Same as Last-Event-ID.")
    ] = None,
) -> Response:
    """The run's events from the beginning, or after ``Last-Event-ID``, then live."""
    run: RunView = await run_in_threadpool(services.repo.get, principal.tenant, run_id)
    start = after or 0
    if last_event_id:
        start = _event_id(last_event_id)
    if run.terminal and start >= run.last_event_seq:
        return Response(status_code=204)
    return StreamingResponse(
        _event_stream(request, services, run.id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_EVENT_ID = re.compile(r"[0-9]{1,10}")


def _event_id(header: str) -> int:
    """``Last-Event-ID`` as a sequence number: ASCII digits within the range ``after`` allows
    (``str.isdigit`` is true for '²', which ``int`` refuses: a 500 before this check).

    Raises:
        BadInputError: anything else.
    """
    value = header.strip()
    if not _EVENT_ID.fullmatch(value) or int(value) > 2**31 - 1:
        raise BadInputError(
            f"Last-Event-ID must be an event sequence number (0 to {2**31 - 1}), not {header!r}"
        )
    return int(value)


# ---- manifest, provenance, download ---------------------------------------------------------

_DOCS: OrderedDict[tuple[str, str], dict[str, bytes]] = OrderedDict()
_DOCS_LOCK = Lock()


def _published(services: Services, tenant: str, run_id: str) -> RunView:
    run = services.repo.get(tenant, run_id)
    if run.status == "expired":
        raise ArtifactExpiredError(f"run {run_id}'s bundle was removed by retention")
    if run.status != "succeeded" or not run.archive_path or not run.archive_sha256:
        raise RunNotReadyError(f"run {run_id} is {run.status}: it has no published bundle")
    return run


def _bundle_file(services: Services, tenant: str, run_id: str, name: str) -> Response:
    from export_center.runs.artifacts import read_bundle_files

    run = _published(services, tenant, run_id)
    assert run.archive_path and run.archive_sha256
    key = (run.id, run.archive_sha256)
    with _DOCS_LOCK:
        docs = _DOCS.get(key)
    if docs is None:
        path = services.artifacts.resolve(run.archive_path)
        if not path.is_file():
            raise ArtifactExpiredError(f"run {run_id}'s bundle is no longer in the artifact store")
        docs = read_bundle_files(path, (MANIFEST, PROVENANCE))
        with _DOCS_LOCK:
            _DOCS[key] = docs
            while len(_DOCS) > 64:
                _DOCS.popitem(last=False)
    data = docs.get(name)
    if data is None:
        raise RunNotReadyError(f"run {run_id}'s bundle has no {name}")
    return Response(content=data, media_type="application/json")


_JSON_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}}
}


@router.get("/runs/{run_id}/manifest", responses=errors(*AUTHED, 404, 409, 410, also=_JSON_DOC))
def run_manifest(run_id: RunIdPath, principal: Reader, services: ServicesDep) -> Response:
    """The bundle's ``manifests/export.json``, byte for byte as signed."""
    return _bundle_file(services, principal.tenant, run_id, MANIFEST)


@router.get("/runs/{run_id}/provenance", responses=errors(*AUTHED, 404, 409, 410, also=_JSON_DOC))
def run_provenance(run_id: RunIdPath, principal: Reader, services: ServicesDep) -> Response:
    """The bundle's in-toto/SLSA ``manifests/provenance.json``, byte for byte."""
    return _bundle_file(services, principal.tenant, run_id, PROVENANCE)


_RANGE_START = re.compile(r"^\s*(\d+)\s*-")


def _check_range(header: str | None, size: int) -> None:
    """Answer a range that starts past the end with our 416 (the file response does the rest:
    single and multiple ranges, suffix ranges, ``If-Range``)."""
    if not header or not header.strip().lower().startswith("bytes="):
        return
    starts = [_RANGE_START.match(part) for part in header.split("=", 1)[1].split(",")]
    if starts and all(m is not None and int(m.group(1)) >= size for m in starts):
        raise RangeNotSatisfiableError(
            f"range {header!r} starts past the end ({size} bytes)", size=size
        )


@router.head("/runs/{run_id}/download", include_in_schema=False)
@router.get(
    "/runs/{run_id}/download",
    response_class=FileResponse,
    responses=errors(
        *AUTHED,
        404,
        409,
        410,
        416,
        also={
            200: {
                "description": "The bundle archive. ETag = its sha256; Digest: sha-256=<base64>.",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            206: {"description": "The requested byte range(s)."},
            304: {"description": "If-None-Match matched the ETag."},
        },
    ),
)
def download_run(
    run_id: RunIdPath,
    principal: Downloader,
    services: ServicesDep,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
    range_: Annotated[
        str | None, Header(alias="Range", max_length=1000, description="bytes=START-[END]")
    ] = None,
) -> Response:
    """The published archive, with byte ranges (``Range``, ``If-Range``) for resuming."""
    run = _published(services, principal.tenant, run_id)
    assert run.archive_path and run.archive_sha256
    path = services.artifacts.resolve(run.archive_path)
    if not path.is_file():
        raise ArtifactExpiredError(f"run {run_id}'s bundle is no longer in the artifact store")
    etag = f'"{run.archive_sha256}"'
    digest = base64.b64encode(bytes.fromhex(run.archive_sha256)).decode()
    headers = {
        "ETag": etag,
        "Digest": f"sha-256={digest}",
        "Repr-Digest": f"sha-256=:{digest}:",
        "Cache-Control": "private, max-age=0, must-revalidate",
    }
    if if_none_match and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    _check_range(range_, path.stat().st_size)
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
        filename=path.name,
        headers=headers,
    )


_SIDECARS = {"sha256": ".sha256", "sig": ".sig"}


def _sidecar(services: Services, tenant: str, run_id: str, kind: str) -> Response:
    run = _published(services, tenant, run_id)
    assert run.archive_path
    archive = services.artifacts.resolve(run.archive_path)
    if not archive.is_file():
        raise ArtifactExpiredError(f"run {run_id}'s bundle is no longer in the artifact store")
    side = archive.with_name(archive.name + _SIDECARS[kind])
    try:
        data = side.read_bytes()
    except FileNotFoundError as e:
        raise NotFoundError(f"run {run_id}'s bundle has no {side.name} sidecar") from e
    return Response(
        content=data,
        media_type="text/plain; charset=us-ascii",
        headers={
            "Content-Disposition": f'attachment; filename="{side.name}"',
            "Cache-Control": "private, max-age=0, must-revalidate",
        },
    )


_SIDECAR_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}


@router.get(
    "/runs/{run_id}/download.sha256", responses=errors(*AUTHED, 404, 409, 410, also=_SIDECAR_DOC)
)
def download_sha256(run_id: RunIdPath, principal: Downloader, services: ServicesDep) -> Response:
    """The archive's ``.sha256`` sidecar: ``<hex>  <archive name>``, what ``sha256sum -c``
    reads."""
    return _sidecar(services, principal.tenant, run_id, "sha256")


@router.get(
    "/runs/{run_id}/download.sig", responses=errors(*AUTHED, 404, 409, 410, also=_SIDECAR_DOC)
)
def download_signature(run_id: RunIdPath, principal: Downloader, services: ServicesDep) -> Response:
    """The archive's ``.sig`` sidecar: base64 of the detached signature over the archive bytes
    (Ed25519: raw signature; ECDSA P-256: DER, as ``cosign sign-blob`` writes)."""
    return _sidecar(services, principal.tenant, run_id, "sig")


# ---- plan ------------------------------------------------------------------------------------


@router.post("/plan", response_model=PlanPublic, responses=errors(*AUTHED, 404, 409))
def plan(
    body: PlanRequest, principal: Reader, services: ServicesDep, once: IdempotentDep
) -> Response:
    """Dry run: what a run would export now (counts, as-of cursor, estimated size)."""

    def handle() -> StoredResponse:
        preview = services.runs.preview(
            principal.tenant, body.profile, revision=body.revision, as_of=body.as_of
        )
        return stored(PlanPublic.of(preview), 200)

    return once(principal.tenant, handle)
