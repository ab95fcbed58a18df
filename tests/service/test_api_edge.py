"""The HTTP edge (docs/security.md, "HTTP edge"): request bodies bounded before they are read,
parsed or authenticated; every error answer in the error body; header values that cannot crash
a route; /metrics behind an operator's scope; token lifetimes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from export_center.errors import BadInputError, ExitCode
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.service.app import create_app
from export_center.service.auth import SCOPE_METRICS, SCOPE_READ, TokenStore
from export_center.settings import Settings
from export_center.store.models import ApiToken
from export_center.worker.runtime import WorkerRuntime
from support.cli import run_cli_captured
from support.service import LiveServer, World, auth, fast_service, tenant_token, wait_for

PROFILES = "/api/export/profiles"
RUNS = "/api/export/runs"
LIMIT = 4096


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert {"message", "details", "traceId", "timestamp"} <= body.keys()
    return body


@pytest.fixture
def small(settings: Settings) -> Iterator[Services]:
    svc = Services.open(fast_service(settings, max_request_bytes=LIMIT), metrics=Metrics())
    yield svc
    svc.close()


class _Body:
    """An ASGI ``receive`` that hands out ``chunks`` chunks of 64 KiB and counts them."""

    def __init__(self, chunks: int) -> None:
        self.left = chunks
        self.pulled = 0

    async def __call__(self) -> dict[str, Any]:
        if self.left == 0:
            await asyncio.sleep(3600)  # a client that sends nothing more
        self.left -= 1
        self.pulled += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": self.left > 0}


def _asgi(app: Any, headers: list[tuple[bytes, bytes]], receive: Any) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PROFILES,
        "raw_path": PROFILES.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=60))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), body


def test_declared_oversize_body_is_refused_unread_and_before_auth(small: Services) -> None:
    app = create_app(small)
    receive = _Body(2400)  # 150 MiB, were it read
    status, body = _asgi(app, [(b"content-length", str(150 << 20).encode())], receive)
    assert status == 413
    doc = orjson.loads(body)
    assert doc["code"] == "ERR_EXPORT_TOO_LARGE" and str(LIMIT) in doc["message"]
    assert receive.pulled == 0  # not one byte of the body was read


def test_chunked_oversize_body_is_cut_off_at_the_limit(small: Services) -> None:
    app = create_app(small)
    receive = _Body(2400)
    status, body = _asgi(app, [(b"transfer-encoding", b"chunked")], receive)
    assert status == 413 and orjson.loads(body)["code"] == "ERR_EXPORT_TOO_LARGE"
    assert receive.pulled == 1  # the first chunk is over the limit already; no more was read


def test_limits_over_a_real_socket(small: Services) -> None:
    live = LiveServer.start(create_app(small))
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            # No token, a declared length over the limit: 413, not 401.
            r = http.post(PROFILES, content=b"{" + b" " * (LIMIT * 4) + b"}")
            _error(r, 413, "ERR_EXPORT_TOO_LARGE")

            def chunks() -> Iterator[bytes]:
                for _ in range(64):
                    yield b" " * 1024

            r = http.post(PROFILES, content=chunks(), headers={"content-type": "application/json"})
            _error(r, 413, "ERR_EXPORT_TOO_LARGE")
            # Under the limit, the request goes on to authentication as before.
            r = http.post(PROFILES, json={"name": "abc"})
            _error(r, 401, "ERR_EXPORT_UNAUTHENTICATED")
            # With a good token too, an over-limit profile is refused and nothing is stored.
            token = tenant_token(small, ["acme"])
            body = {
                "name": "too-big",
                "spec": {"kind": "json", "variant": "raw"},
                "description": "x" * LIMIT,
            }
            _error(http.post(PROFILES, json=body, headers=auth(token)), 413, "ERR_EXPORT_TOO_LARGE")
            listed = http.get(PROFILES, headers=auth(token))
            assert listed.status_code == 200 and listed.json()["items"] == []
    finally:
        live.stop()
    # A length that is not one (uvicorn refuses most of these itself; the app on its own too).
    for headers in (
        [(b"content-length", b"1x")],
        [(b"content-length", "²".encode())],
        [(b"content-length", b"2"), (b"content-length", b"3")],
    ):
        status, body = _asgi(create_app(small), headers, _Body(1))
        assert status == 400 and orjson.loads(body)["code"] == "ERR_EXPORT_BAD_INPUT"


def test_limit_is_a_setting(settings: Settings) -> None:
    assert settings.service.max_request_bytes == 1024 * 1024
    with pytest.raises(Exception, match="max_request_bytes"):
        settings.with_service(max_request_bytes=0)


def test_framework_errors_use_the_error_body(
    client: TestClient, world: World, worker: WorkerRuntime
) -> None:
    h = auth(world.acme)
    run_id = client.post(RUNS, json={"profile": "acme-json"}, headers=h).json()["id"]

    def done() -> bool:
        return bool(client.get(f"{RUNS}/{run_id}", headers=h).json()["status"] == "succeeded")

    wait_for(done, timeout=30)
    url = f"{RUNS}/{run_id}/download"
    size = int(client.get(url, headers=h).headers["content-length"])
    # Starlette's own answers (text/plain before): a malformed range, another unit, and a set
    # of ranges one of which starts past the end.
    for bad, status, code in (
        ("bytes=5-2", 400, "ERR_EXPORT_BAD_INPUT"),
        ("items=0-1", 400, "ERR_EXPORT_BAD_INPUT"),
        (f"bytes=0-1,{size + 5}-{size + 9}", 416, "ERR_EXPORT_RANGE_NOT_SATISFIABLE"),
    ):
        r = client.get(url, headers=h | {"Range": bad})
        body = _error(r, status, code)
        assert body["message"] and body["traceId"] == r.headers["x-trace-id"]
    assert r.headers["content-range"] == f"bytes */{size}"  # headers kept
    # HEAD keeps the status and the JSON type, without a body.
    r = client.head(url, headers=h | {"Range": "bytes=5-2"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.content == b""
    # Routing errors, wrong methods: the envelope as well.
    _error(client.get("/nowhere"), 404, "ERR_EXPORT_NOT_FOUND")
    _error(client.delete(RUNS, headers=h), 405, "ERR_EXPORT_METHOD_NOT_ALLOWED")


def test_last_event_id_is_ascii_digits(client: TestClient, world: World) -> None:
    h = auth(world.acme)
    run_id = client.post(RUNS, json={"profile": "acme-json"}, headers=h).json()["id"]
    # b"\xb2" is '²' as the server reads header bytes (latin-1): str.isdigit() said yes.
    for bad in (b"\xb2", "٣".encode(), b"1e3", b"-1", b"99999999999", b"0x10"):
        r = client.get(f"{RUNS}/{run_id}/events", headers=h | {"Last-Event-ID": bad})
        body = _error(r, 400, "ERR_EXPORT_BAD_INPUT")
        assert "Last-Event-ID" in body["message"]


def test_metrics_need_the_operator_scope(
    client: TestClient, services: Services, world: World
) -> None:
    services.metrics.runs_total.labels("acme-json", "acme", "succeeded").inc()
    _error(client.get("/metrics"), 401, "ERR_EXPORT_UNAUTHENTICATED")
    reader = tenant_token(services, ["acme"], [SCOPE_READ])
    _error(client.get("/metrics", headers=auth(reader)), 403, "ERR_EXPORT_FORBIDDEN")
    # Scope, not tenant, decides: a token of several tenants needs no X-Stella-Tenant here.
    operator = tenant_token(services, ["acme", "zeta"], [SCOPE_METRICS])
    r = client.get("/metrics", headers=auth(operator))
    assert r.status_code == 200 and 'tenant="acme"' in r.text
    # The operator's scope reads nothing of a tenant's.
    _error(client.get(PROFILES, headers=auth(operator, "acme")), 403, "ERR_EXPORT_FORBIDDEN")


def test_metrics_public_when_the_operator_says_so(settings: Settings) -> None:
    svc = Services.open(fast_service(settings, metrics_public=True), metrics=Metrics())
    try:
        with TestClient(create_app(svc)) as c:
            assert c.get("/metrics").status_code == 200
    finally:
        svc.close()


def test_token_lifetimes(services: Services) -> None:
    tokens = TokenStore(services.store)
    for bad in (timedelta(0), timedelta(days=-1), timedelta(days=3651)):
        with pytest.raises(BadInputError, match="lifetime must be positive"):
            tokens.create("t", ["acme"], [SCOPE_READ], expires_in=bad)
    assert tokens.list_tokens() == []


_cli = run_cli_captured


def test_tokens_cli_expiry(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STELLA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("STELLA_CONFIG", "")
    base = ["tokens", "create", "--tenant", "acme", "--scope", SCOPE_READ]
    for days in ("0", "-3", "3651"):
        code, _, err = _cli([*base, "--expires-days", days], monkeypatch, capsys)
        assert code == ExitCode.BAD_INPUT, err
        assert f"--expires-days must be between 1 and 3650, not {days}" in err
    code, out, _ = _cli([*base, "--format", "json"], monkeypatch, capsys)
    assert code == 0
    made = orjson.loads(out)
    assert made["expiresAt"] is not None  # 90 days by default, never "forever" by accident
    code, out, _ = _cli([*base, "--no-expiry", "--format", "json"], monkeypatch, capsys)
    forever = orjson.loads(out)
    assert code == 0 and forever["expiresAt"] is None
    code, out, _ = _cli([*base, "--expires-days", "1", "--format", "json"], monkeypatch, capsys)
    soon = orjson.loads(out)
    # Let the one-day token run out (its row, as time would leave it).
    store = Services.open(settings, metrics=Metrics()).store
    with store.session() as s, s.begin():
        s.execute(
            update(ApiToken)
            .where(ApiToken.id == soon["id"])
            .values(expires_at=datetime(2001, 1, 1, tzinfo=UTC))
        )
    code, out, _ = _cli(["tokens", "list", "--format", "json"], monkeypatch, capsys)
    listed = {t["id"]: t for t in orjson.loads(out)}
    assert listed[made["id"]]["state"] == "active"
    assert listed[made["id"]]["expiresAt"] == made["expiresAt"]
    assert listed[forever["id"]]["expiresAt"] is None
    assert listed[soon["id"]]["state"] == "expired"
    code, out, _ = _cli(["tokens", "list"], monkeypatch, capsys)
    assert "expired" in out and "never" in out and made["expiresAt"][:10] in out


def test_worker_metrics_listener_stays_on_loopback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker's own /metrics has no authentication: not on the network unless public."""
    monkeypatch.setenv("STELLA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("STELLA_CONFIG", "")
    args = ["worker", "--metrics-port", "9", "--metrics-host", "0.0.0.0"]  # noqa: S104
    code, _, err = _cli(args, monkeypatch, capsys)
    assert code == ExitCode.BAD_INPUT
    assert "--metrics-host 0.0.0.0: the worker's metrics name every tenant" in err
