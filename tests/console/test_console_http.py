"""The console's server side over plain HTTP (no browser): the session cookie and what the
database keeps of it, CSRF across sessions, where sign-in may send the browser, the pages'
security headers, and the relay's limits. The server is the API app under uvicorn."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from export_center.runs.clock import utcnow
from export_center.runtime.container import Services
from export_center.service.console.pages import CSP
from export_center.service.console.sessions import SessionStore
from export_center.store.models import ConsoleSession
from support.console import Tokens
from support.service import LiveServer

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


def _sign_in(client: httpx.Client, token: str, next_: str = "") -> httpx.Response:
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    return client.post(
        "/console/sign-in", data={"csrf": _csrf(form.text), "token": token, "next": next_}
    )


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
    signed_in = _sign_in(client, tokens.acme)
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
    _sign_in(client, tokens.acme)
    assert client.get("/console/evidence").status_code == 200
    with services.store.session() as s, s.begin():
        s.execute(update(ConsoleSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    ended = client.get("/console/evidence")
    assert ended.status_code == 303
    assert "notice=session-ended" in ended.headers["location"]
    # The next sign-in forgets the expired row.
    with httpx.Client(base_url=str(client.base_url), timeout=30) as other:
        _sign_in(other, tokens.zeta)
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
    _sign_in(client, tokens.acme)
    with httpx.Client(base_url=server.url, timeout=30) as other:
        _sign_in(other, tokens.acme)
        theirs = _csrf(other.get("/console/profiles/new").text)
    mine = _csrf(client.get("/console/profiles/new").text)
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


@pytest.mark.parametrize(
    "asked",
    [
        "//evil.example/console/runs",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/console/api/runs",  # the relay answers JSON, not a page
        "/elsewhere",
    ],
)
def test_sign_in_never_sends_the_browser_out_of_the_console(
    client: httpx.Client, tokens: Tokens, asked: str
) -> None:
    signed_in = _sign_in(client, tokens.acme, next_=asked)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/console/runs"


def test_sign_in_returns_to_the_console_page_asked_for(
    client: httpx.Client, tokens: Tokens
) -> None:
    asked = client.get("/console/runs?status=failed")
    assert asked.status_code == 303
    assert asked.headers["location"].startswith("/console/sign-in?")
    signed_in = _sign_in(client, tokens.acme, next_="/console/runs?status=failed")
    assert signed_in.headers["location"] == "/console/runs?status=failed"


def test_pages_carry_the_security_headers(client: httpx.Client, tokens: Tokens) -> None:
    pages = [client.get("/console/sign-in")]
    _sign_in(client, tokens.acme)
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
    _sign_in(client, tokens.acme)
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
    # Signed out, the relay answers 401 (a script's fetch), not a redirect to a page.
    client.cookies.clear()
    assert client.get("/console/api/runs").status_code == 401
