"""The console's server side over plain HTTP (no browser): where sign-in may send the browser,
the pages' security headers, and the relay's limits. The server is the API app under uvicorn
(on SQLite; test_console_sessions.py runs the sessions on PostgreSQL too)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from export_center.service.console.pages import CSP
from support.console import Tokens, sign_in_http
from support.service import LiveServer


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as c:
        yield c


@pytest.mark.parametrize(
    "asked",
    [
        "//evil.example/console/runs",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/console/api/runs",  # the relay answers JSON, not a page
        "/console/../api/export/runs",
        "/console/%2E%2E/metrics",
        "/console/\n../api/export/runs",
        "/elsewhere",
    ],
)
def test_sign_in_never_sends_the_browser_out_of_the_console(
    client: httpx.Client, tokens: Tokens, asked: str
) -> None:
    signed_in = sign_in_http(client, tokens.acme, next_=asked)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/console/runs"


def test_sign_in_returns_to_the_console_page_asked_for(
    client: httpx.Client, tokens: Tokens
) -> None:
    asked = client.get("/console/runs?status=failed")
    assert asked.status_code == 303
    assert asked.headers["location"].startswith("/console/sign-in?")
    signed_in = sign_in_http(client, tokens.acme, next_="/console/runs?status=failed")
    assert signed_in.headers["location"] == "/console/runs?status=failed"


def test_pages_carry_the_security_headers(client: httpx.Client, tokens: Tokens) -> None:
    pages = [client.get("/console/sign-in")]
    sign_in_http(client, tokens.acme)
    pages += [client.get(p) for p in ("/console/runs", "/console/profiles", "/console/nowhere")]
    assert [p.status_code for p in pages] == [200, 200, 200, 404]
    for page in pages:
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP


def test_the_relay_forwards_reads_only_and_plain_paths_only(
    client: httpx.Client, api: httpx.Client, tokens: Tokens
) -> None:
    sign_in_http(client, tokens.acme)
    listed = client.get("/console/api/runs")
    assert listed.status_code == 200
    assert listed.json()["items"] == []
    # A write through the relay: refused, nothing started.
    posted = client.post("/console/api/runs", json={"profile": "anything"})
    assert posted.status_code == 405
    assert api.get("/api/export/runs").json()["total"] == 0
    # Dot segments (encoded so that the client sends them as typed) are refused by the relay.
    for path in ("/console/api/runs/%2e%2e/profiles", "/console/api/runs/..%2Fprofiles"):
        refused = client.get(path)
        assert refused.status_code == 404, path
        assert "ERR_EXPORT_NOT_FOUND" in refused.text
    # Only runs and what hangs off them: not the API's other resources, nor its docs page.
    for path in ("/console/api/docs", "/console/api/profiles", "/console/api/openapi.json"):
        assert client.get(path).status_code == 404, path
    assert listed.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert listed.headers["x-content-type-options"] == "nosniff"
    # Signed out, the relay answers 401 (a script's fetch), not a redirect to a page.
    client.cookies.clear()
    assert client.get("/console/api/runs").status_code == 401
