"""Small helpers the route modules share: JSON bodies, paging links, documented errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import Response
from pydantic import BaseModel

from export_center.service.idempotency import StoredResponse
from export_center.service.schemas import ErrorBody

BASE = "/api/export"


def json_body(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


def json_response(model: BaseModel) -> Response:
    """``model`` as the JSON body of a 200, serialized here rather than by FastAPI.

    A route that returns a model has FastAPI validate it again against its ``response_model``,
    and for a synchronous route in a second hop to the thread pool: about 0.7 ms of CPU per
    request, a third of a read's cost (measured in-process: 2.07 → 1.38 ms for a run). The
    ``response_model`` of the route stays for the OpenAPI document; a test checks the bodies
    against it (tests/service/test_api_reads.py).
    """
    return Response(content=json_body(model), media_type="application/json")


def stored(
    model: BaseModel, status: int, headers: Mapping[str, str] | None = None
) -> StoredResponse:
    return StoredResponse(status, json_body(model), dict(headers or {}))


def next_link(
    path: str, params: Mapping[str, Any], offset: int, limit: int, total: int
) -> str | None:
    if offset + limit >= total:
        return None
    query: list[tuple[str, Any]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            query.extend((key, str(v)) for v in value)
        else:
            query.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
    query += [("offset", offset + limit), ("limit", limit)]
    return f"{path}?{urlencode(query)}"


def errors(
    *statuses: int, also: Mapping[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses (with the error envelope), plus
    ``also``."""
    text = {
        400: "Bad input (ERR_EXPORT_BAD_INPUT)",
        401: "No or invalid token (ERR_EXPORT_UNAUTHENTICATED)",
        403: "Scope or tenant not granted (ERR_EXPORT_FORBIDDEN)",
        404: "Not found, or another tenant's (ERR_EXPORT_NOT_FOUND)",
        409: "Conflict (ERR_EXPORT_CONFLICT, ERR_EXPORT_IDEMPOTENCY, ERR_EXPORT_NOT_READY)",
        410: "Artifact expired (ERR_EXPORT_EXPIRED)",
        416: "Range not satisfiable",
        429: "Quota exhausted (ERR_EXPORT_QUOTA)",
        503: "Not ready (ERR_EXPORT_UNAVAILABLE)",
    }
    out: dict[int | str, dict[str, Any]] = dict(also or {})
    for s in statuses:
        out[s] = {"model": ErrorBody, "description": text.get(s, "Error")}
    return out


AUTHED = (400, 401, 403)
