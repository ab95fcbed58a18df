"""Authentication and tenancy: 401 / 403 / 404 rules, token revocation, JWTs from a JWKS file."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.service.app import create_app
from export_center.service.auth import SCOPE_READ
from export_center.settings import Settings
from export_center.store.models import ApiToken
from support.service import World, auth, fast_service


def _code(resp: object) -> str:
    body = resp.json()  # type: ignore[attr-defined]
    assert set(body) == {"code", "message", "details", "traceId", "timestamp"}
    return str(body["code"])


def test_missing_malformed_and_unknown_tokens_are_401(client: TestClient, world: World) -> None:
    r = client.get("/api/export/profiles")
    assert r.status_code == 401
    assert _code(r) == "ERR_EXPORT_UNAUTHENTICATED"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.headers["X-Trace-Id"] == r.json()["traceId"]
    for header in ("Basic abc", "Bearer", "Bearer stl_not-a-real-token", "Bearer a.b.c"):
        r = client.get("/api/export/profiles", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert _code(r) == "ERR_EXPORT_UNAUTHENTICATED"


def test_revoked_and_expired_tokens_are_401(client: TestClient, app: FastAPI, world: World) -> None:
    # The API's own token store: a revocation clears the cache of verified tokens it keeps.
    tokens = app.state.api.tokens
    info, secret = tokens.create("short", ["acme"], [SCOPE_READ])
    assert client.get("/api/export/profiles", headers=auth(secret)).status_code == 200
    tokens.revoke(info.id)
    r = client.get("/api/export/profiles", headers=auth(secret))
    assert r.status_code == 401
    # A lifetime that is not positive is refused (it once made a token that never expired);
    # an expired token is one whose expiry passed.
    gone, expired = tokens.create("gone", ["acme"], [SCOPE_READ], expires_in=timedelta(days=1))
    with tokens.store.session() as s, s.begin():
        s.execute(
            update(ApiToken)
            .where(ApiToken.id == gone.id)
            .values(expires_at=datetime(2001, 1, 1, tzinfo=UTC))
        )
    assert client.get("/api/export/profiles", headers=auth(expired)).status_code == 401


def test_missing_scope_is_403(client: TestClient, world: World) -> None:
    assert client.get("/api/export/profiles", headers=auth(world.reader)).status_code == 200
    r = client.post("/api/export/runs", json={"profile": "acme-json"}, headers=auth(world.reader))
    assert r.status_code == 403
    assert _code(r) == "ERR_EXPORT_FORBIDDEN"
    assert "export:run" in r.json()["message"]
    r = client.post(
        "/api/export/profiles",
        json={"name": "new-one", "spec": {"kind": "json", "variant": "raw"}},
        headers=auth(world.reader),
    )
    assert r.status_code == 403


def test_tenant_selection(client: TestClient, world: World) -> None:
    # A token of one tenant may not pick another.
    r = client.get("/api/export/profiles", headers=auth(world.acme, "zeta"))
    assert r.status_code == 403
    assert _code(r) == "ERR_EXPORT_FORBIDDEN"
    # A token of several tenants must pick one...
    r = client.get("/api/export/profiles", headers=auth(world.multi))
    assert r.status_code == 400
    assert "X-Stella-Tenant" in r.json()["message"]
    # ...and sees that tenant's objects only.
    names = {
        t: [
            p["name"]
            for p in client.get("/api/export/profiles", headers=auth(world.multi, t)).json()[
                "items"
            ]
        ]
        for t in ("acme", "zeta")
    }
    assert names == {"acme": ["acme-json"], "zeta": ["zeta-json"]}


def test_other_tenants_objects_are_404(client: TestClient, world: World) -> None:
    r = client.get("/api/export/profiles/acme-json", headers=auth(world.zeta))
    assert r.status_code == 404
    assert _code(r) == "ERR_EXPORT_NOT_FOUND"
    run = client.post("/api/export/runs", json={"profile": "acme-json"}, headers=auth(world.acme))
    assert run.status_code == 202
    run_id = run.json()["id"]
    for method, path in (
        ("GET", f"/api/export/runs/{run_id}"),
        ("POST", f"/api/export/runs/{run_id}/cancel"),
        ("GET", f"/api/export/runs/{run_id}/events"),
        ("GET", f"/api/export/runs/{run_id}/manifest"),
        ("GET", f"/api/export/runs/{run_id}/provenance"),
        ("GET", f"/api/export/runs/{run_id}/download"),
    ):
        r = client.request(method, path, headers=auth(world.zeta))
        assert r.status_code == 404, path
        assert _code(r) == "ERR_EXPORT_NOT_FOUND"
    # The same answer as for a run that never existed: existence does not leak.
    r = client.get(
        "/api/export/runs/00000000-0000-0000-0000-000000000000", headers=auth(world.zeta)
    )
    assert r.status_code == 404
    assert client.get("/api/export/runs", headers=auth(world.zeta)).json()["total"] == 0


def _jwks(tmp: Path) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    path = tmp / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path, key


def test_jwt_against_offline_jwks(tmp_path: Path, settings: Settings, world: World) -> None:
    path, key = _jwks(tmp_path)
    jwks = {"jwks_file": str(path), "jwt_issuer": "https://idp.example", "jwt_audience": "stella"}
    services = Services.open(fast_service(settings, **jwks), metrics=Metrics())
    try:
        client = TestClient(create_app(services))
        claims = {
            "sub": "ci-bot",
            "iss": "https://idp.example",
            "aud": "stella",
            "exp": int(time.time()) + 300,
            "stella_tenants": ["acme"],
            "scope": "export:read export:run",
        }
        good = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})
        r = client.get("/api/export/profiles", headers=auth(good))
        assert r.status_code == 200
        assert [p["name"] for p in r.json()["items"]] == ["acme-json"]
        # Scopes come from the token: no profile management.
        r = client.post(
            "/api/export/profiles",
            json={"name": "from-jwt", "spec": {"kind": "json", "variant": "raw"}},
            headers=auth(good),
        )
        assert r.status_code == 403
        bad = [
            jwt.encode(
                claims | {"exp": int(time.time()) - 10},
                key,
                algorithm="EdDSA",
                headers={"kid": "k1"},
            ),
            jwt.encode(claims | {"aud": "other"}, key, algorithm="EdDSA", headers={"kid": "k1"}),
            jwt.encode(
                claims | {"iss": "https://evil"}, key, algorithm="EdDSA", headers={"kid": "k1"}
            ),
            jwt.encode(
                claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "k1"}
            ),
            jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "unknown"}),
        ]
        for token in bad:
            r = client.get("/api/export/profiles", headers=auth(token))
            assert r.status_code == 401, jwt.get_unverified_header(token)
            assert _code(r) == "ERR_EXPORT_UNAUTHENTICATED"
    finally:
        services.close()


# /metrics names every tenant: it needs the export:metrics scope (test_api_edge.py).
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/.well-known/openapi"])
def test_operational_endpoints_need_no_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200
