"""The API's frequent reads (get/list runs, get/list profiles): statements built once, bodies
serialized by the route, reads of the embedded store on the event loop. What a client gets
must be what it got before (the route's response model, the same rows, order and paging), on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.service.app import create_app
from export_center.service.deps import db_read
from export_center.service.schemas import ProfilePage, ProfilePublic, RunPage, RunPublic
from support.service import auth, fast_service, make_settings, put_advisories, tenant_token

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

BASE = "/api/export"


@pytest.fixture
def opened(db_url: str, tmp_path: Path) -> Iterator[Services]:
    services = Services.open(fast_service(make_settings(tmp_path / "data", db_url)))
    yield services
    services.close()


def _as_model(model: type[BaseModel], body: Any) -> Any:
    """The body FastAPI itself would have written for ``model`` (by alias, JSON mode)."""
    return model.model_validate(body).model_dump(mode="json", by_alias=True)


def test_read_bodies_rows_and_paging(opened: Services) -> None:
    services = opened
    put_advisories(services.store, "acme", 3)
    raw = parse_profile_spec({"kind": "json", "variant": "raw"})
    gzip = parse_profile_spec(
        {"kind": "json", "variant": "raw", "compression": {"algorithm": "gzip", "level": 6}}
    )
    for name in ("beta", "alpha", "gamma"):
        services.registry.create("acme", name, raw)
    services.registry.revise("acme", "beta", gzip)  # beta is at r2
    services.registry.archive("acme", "gamma")
    services.registry.create("zeta", "alpha", raw)  # another tenant's namesake
    runs = [services.runs.create("acme", p)[0].id for p in ("alpha", "beta", "alpha")]
    services.repo.request_cancel("acme", runs[1])
    services.runs.create("zeta", "alpha")
    headers = auth(tenant_token(services, ["acme"]))

    with TestClient(create_app(services), raise_server_exceptions=False) as client:

        def get(path: str, model: type[BaseModel], **params: Any) -> Any:
            r = client.get(BASE + path, params=params, headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/json"
            body = r.json()
            assert _as_model(model, body) == body
            return body

        page = get("/profiles", ProfilePage)
        assert [(p["name"], p["revision"]) for p in page["items"]] == [("alpha", 1), ("beta", 2)]
        assert page["total"] == 2 and page["next"] is None
        assert page["items"][1]["spec"]["compression"]["algorithm"] == "gzip"
        everything = get("/profiles", ProfilePage, includeArchived="true", limit=2)
        assert [p["name"] for p in everything["items"]] == ["alpha", "beta"]
        assert everything["total"] == 3 and "offset=2" in everything["next"]
        rest = get("/profiles", ProfilePage, includeArchived="true", offset=2, limit=2)
        assert [(p["name"], p["archived"]) for p in rest["items"]] == [("gamma", True)]

        assert get("/profiles/beta", ProfilePublic)["revision"] == 2
        first = get("/profiles/beta", ProfilePublic, revision=1)
        assert (first["revision"], first["spec"]["compression"]["algorithm"]) == (1, "zstd")
        missing = client.get(f"{BASE}/profiles/beta", params={"revision": 3}, headers=headers)
        assert missing.status_code == 404 and "no revision r3" in missing.json()["message"]
        unknown = client.get(f"{BASE}/profiles/delta", headers=headers)
        assert unknown.status_code == 404 and "no profile 'delta'" in unknown.json()["message"]

        listed = get("/runs", RunPage)
        assert [r["id"] for r in listed["items"]] == runs[::-1] and listed["total"] == 3
        pending = get("/runs", RunPage, status="pending")
        assert [r["id"] for r in pending["items"]] == [runs[2], runs[0]]
        both = get("/runs", RunPage, status=["pending", "cancelled"], profile="beta")
        assert [r["id"] for r in both["items"]] == [runs[1]] and both["total"] == 1
        paged = get("/runs", RunPage, limit=1, offset=1)
        assert [r["id"] for r in paged["items"]] == [runs[1]] and paged["total"] == 3

        run = get(f"/runs/{runs[1]}", RunPublic)
        assert (run["id"], run["status"], run["profile"]) == (runs[1], "cancelled", "beta")
        assert run["createdAt"].endswith("Z") and run["finishedAt"].endswith("Z")
        assert client.get(f"{BASE}/runs/{'0' * 36}", headers=headers).status_code == 404


def test_reads_of_the_embedded_store_stay_on_the_event_loop(opened: Services) -> None:
    """SQLite reads run inline (no thread hop); PostgreSQL reads wait for the network in the
    thread pool, never on the loop."""

    async def where() -> tuple[int, int]:
        return threading.get_ident(), await db_read(opened, threading.get_ident)

    loop_thread, read_thread = asyncio.run(where())
    backend = opened.store.engine.dialect.name
    assert (loop_thread == read_thread) is (backend == "sqlite"), backend
