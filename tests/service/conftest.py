"""Fixtures of the API tests: a SQLite data directory, the app, tokens, evidence, a worker."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.service.app import create_app
from export_center.service.auth import SCOPE_READ
from export_center.worker.runtime import WorkerRuntime
from support.service import (
    ALL_SCOPES,
    World,
    put_advisories,
    tenant_token,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # StarletteDeprecationWarning
    from fastapi.testclient import TestClient


def pytest_configure(config: pytest.Config) -> None:
    # Starlette's notice that its TestClient will move to httpx2: not ours to act on.
    config.addinivalue_line(
        "filterwarnings", "ignore:Using `httpx` with `starlette.testclient`:UserWarning"
    )


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def world(services: Services) -> World:
    put_advisories(services.store, "acme", 30)
    put_advisories(services.store, "zeta", 5)
    spec = parse_profile_spec({"kind": "json", "variant": "raw"})
    services.registry.create("acme", "acme-json", spec)
    services.registry.create("zeta", "zeta-json", spec)
    return World(
        acme=tenant_token(services, ["acme"]),
        zeta=tenant_token(services, ["zeta"]),
        reader=tenant_token(services, ["acme"], [SCOPE_READ]),
        multi=tenant_token(services, ["acme", "zeta"], ALL_SCOPES),
    )


@pytest.fixture
def worker(services: Services) -> Iterator[WorkerRuntime]:
    rt = WorkerRuntime(services)
    rt.start()
    yield rt
    rt.stop(drain_seconds=5)
