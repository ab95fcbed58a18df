"""Console sessions over plain HTTP (no browser), on SQLite and on the CI PostgreSQL: the
session cookie and what the database keeps of it, expiry, and CSRF tokens that belong to one
session. The server is the API app under uvicorn."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from export_center.runs.clock import utcnow
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.service.app import create_app
from export_center.service.console.sessions import SessionStore
from export_center.settings import Settings
from export_center.store.models import ConsoleSession
from support.console import Tokens, form_csrf, sign_in_http
from support.service import (
    LiveServer,
    fast_service,
    generate_key,
    make_settings,
    wait_for,
)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """The console's settings (conftest.py), on each database."""
    s = make_settings(tmp_path / "data", db_url)
    generate_key(s)
    return s


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as c:
        yield c


def _rows(services: Services) -> list[ConsoleSession]:
    with services.store.session() as s:
        return list(s.execute(select(ConsoleSession)).scalars())


def test_the_session_cookie_and_what_the_database_keeps(
    client: httpx.Client, services: Services, tokens: Tokens
) -> None:
    signed_in = sign_in_http(client, tokens.acme)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/console/runs"
    set_cookie = [v for v in signed_in.headers.get_list("set-cookie") if "stella_console=" in v]
    assert len(set_cookie) == 1
    attributes = {a.strip().lower() for a in set_cookie[0].split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console"} <= attributes
    assert "secure" not in attributes  # plain HTTP on loopback; set under https
    cookie = client.cookies["stella_console"]
    secret = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    assert len(secret) == 32

    [row] = _rows(services)
    # The row is found by the secret's hash; neither the secret nor the token is stored.
    assert row.id == hashlib.sha256(secret).hexdigest()
    assert row.tenant == "acme"
    stored = b"".join(
        str(v).encode() if not isinstance(v, bytes) else v
        for v in (row.id, row.tenant, row.subject, row.csrf, bytes(row.credential))
    )
    assert tokens.acme.encode() not in stored
    assert cookie.encode() not in stored and secret not in stored
    assert client.get("/console/runs").status_code == 200

    # A row altered in the database does not decrypt: no session (never another credential).
    altered = bytearray(row.credential)
    altered[-1] ^= 1
    with services.store.session() as s, s.begin():
        s.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id == row.id)
            .values(credential=bytes(altered))
        )
    refused = client.get("/console/runs")
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/console/sign-in")


def test_a_session_ends_at_its_expiry(
    client: httpx.Client, services: Services, tokens: Tokens
) -> None:
    sign_in_http(client, tokens.acme)
    assert client.get("/console/evidence").status_code == 200
    with services.store.session() as s, s.begin():
        s.execute(update(ConsoleSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    ended = client.get("/console/evidence")
    assert ended.status_code == 303
    assert "notice=session-ended" in ended.headers["location"]
    # The next sign-in forgets the expired row.
    with httpx.Client(base_url=str(client.base_url), timeout=30) as other:
        sign_in_http(other, tokens.zeta)
    assert [r.tenant for r in _rows(services)] == ["zeta"]


def test_session_store_lifetime_and_delete(services: Services) -> None:
    now = utcnow()
    clock = [now]
    store = SessionStore(services.store, lifetime=timedelta(hours=1), clock=lambda: clock[0])
    cookie, opened = store.create("stl_example-credential", tenant="acme", subject="tok_x")
    loaded = store.load(cookie)
    assert loaded is not None
    assert (loaded.credential, loaded.tenant, loaded.csrf) == (
        "stl_example-credential",
        "acme",
        opened.csrf,
    )
    assert store.load(cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")) is None
    assert store.load("not base64 !") is None
    clock[0] = now + timedelta(minutes=59)
    assert store.load(cookie) is not None
    clock[0] = now + timedelta(hours=1)
    assert store.load(cookie) is None
    clock[0] = now
    store.delete(cookie)
    assert store.load(cookie) is None


def test_a_form_with_another_sessions_csrf_token_is_refused(
    client: httpx.Client, server: LiveServer, api: httpx.Client, tokens: Tokens
) -> None:
    sign_in_http(client, tokens.acme)
    with httpx.Client(base_url=server.url, timeout=30) as other:
        sign_in_http(other, tokens.acme)
        theirs = form_csrf(other.get("/console/profiles/new").text)
    mine = form_csrf(client.get("/console/profiles/new").text)
    assert theirs != mine
    form = {"name": "sneaky", "kind": "json:raw", "include": "advisories", "compression": "zstd"}
    refused = client.post("/console/profiles", data={**form, "csrf": theirs})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "ERR_EXPORT_FORBIDDEN" in refused.text and "CSRF" in refused.text
    assert api.get("/api/export/profiles/sneaky").status_code == 404
    # The same form with this session's token goes through (the refusal was the token's).
    accepted = client.post("/console/profiles", data={**form, "csrf": mine})
    assert accepted.status_code == 303
    assert api.get("/api/export/profiles/sneaky").status_code == 200


def _jwks(tmp: Path) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    path = tmp / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path, key


@pytest.mark.slow  # waits for a JWT to expire (a few seconds)
def test_sign_in_with_a_jwt_until_it_expires(tmp_path: Path, settings: Settings) -> None:
    path, key = _jwks(tmp_path)
    jwks = {"jwks_file": str(path), "jwt_issuer": "https://idp.example", "jwt_audience": "stella"}
    services = Services.open(fast_service(settings, **jwks), metrics=Metrics())
    live = LiveServer.start(create_app(services))
    claims = {
        "sub": "auditor@example",
        "iss": "https://idp.example",
        "aud": "stella",
        "stella_tenants": ["acme"],
        "scope": "export:read",
    }
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            forged = jwt.encode(
                claims | {"exp": int(time.time()) + 300},
                Ed25519PrivateKey.generate(),
                algorithm="EdDSA",
                headers={"kid": "k1"},
            )
            refused = sign_in_http(client, forged)
            assert refused.status_code == 401
            assert "ERR_EXPORT_UNAUTHENTICATED" in refused.text
            assert "stella_console" not in client.cookies

            expires = int(time.time()) + 3
            token = jwt.encode(
                claims | {"exp": expires}, key, algorithm="EdDSA", headers={"kid": "k1"}
            )
            assert sign_in_http(client, token).status_code == 303
            page = client.get("/console/runs", follow_redirects=False)
            assert page.status_code == 200
            assert "auditor@example" in page.text  # who the JWT says, not a console account
            assert "export:read" in page.text
            # Past its exp the JWT no longer works, and neither does the session built on it.
            wait_for(lambda: time.time() > expires + 1, timeout=10)
            ended = client.get("/console/runs", follow_redirects=False)
            assert ended.status_code == 303
            assert "notice=session-ended" in ended.headers["location"]
            assert _rows(services) == []
    finally:
        live.stop()
        services.close()
