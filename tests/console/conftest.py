"""Fixtures of the web console tests: the API app with its console on a loopback port, an
in-process worker whose runs of ``gated-*`` profiles wait for the test, tokens of two tenants,
and a headless Chromium.

The tests write a screenshot of every page to docs/console/ (fixed names: the committed PNGs
are the latest run's); ``STELLA_CONSOLE_SCREENSHOTS=DIR`` sends them to DIR instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.service.app import create_app
from export_center.service.auth import SCOPE_READ
from export_center.worker.runtime import WorkerRuntime
from support.browser import Browser, chromium
from support.console import ACME_RECORDS, Gate, Tokens
from support.service import (
    LiveServer,
    put_advisories,
    tenant_token,
)


@pytest.fixture
def tokens(services: Services) -> Tokens:
    put_advisories(services.store, "acme", ACME_RECORDS)
    put_advisories(services.store, "zeta", 5)
    spec = parse_profile_spec({"kind": "json", "variant": "raw"})
    services.registry.create("zeta", "zeta-json", spec)
    return Tokens(
        acme=tenant_token(services, ["acme"]),
        zeta=tenant_token(services, ["zeta"]),
        reader=tenant_token(services, ["acme"], [SCOPE_READ]),
        multi=tenant_token(services, ["acme", "zeta"]),
    )


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
def server(app: FastAPI, services: Services, gate: Gate) -> Iterator[LiveServer]:
    # Two at a time: a gated run never keeps another test run waiting behind it.
    runtime = WorkerRuntime(services, export=gate.export, concurrency=2)
    runtime.start()
    live = LiveServer.start(app)
    try:
        yield live
    finally:
        gate.open()
        live.stop()
        runtime.stop(drain_seconds=5)


@pytest.fixture
def api(server: LiveServer, tokens: Tokens) -> Iterator[httpx.Client]:
    """The REST API as tenant acme (every scope), for what the browser's results are
    compared with."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {tokens.acme}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def chromium_window() -> Iterator[Browser]:
    """One headless Chromium for a module's tests (each gets it fresh: ``browser``)."""
    with chromium("about:blank") as b:
        yield b


@pytest.fixture
def browser(chromium_window: Browser, server: LiveServer, tmp_path: Path) -> Browser:
    return chromium_window.fresh(server.url, tmp_path / "downloads")


@pytest.fixture(scope="session")
def shots() -> Path:
    chosen = os.environ.get("STELLA_CONSOLE_SCREENSHOTS")
    if chosen:
        path = Path(chosen).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    docs = Path(__file__).resolve().parents[2] / "docs" / "console"
    docs.mkdir(parents=True, exist_ok=True)
    return docs
