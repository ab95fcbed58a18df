"""Idempotency-Key replay and conflict; per-tenant quotas with their headers and 429."""

from __future__ import annotations

from fastapi.testclient import TestClient

from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.service.app import create_app
from export_center.settings import Quotas, Settings
from support.service import World, auth, fast_service

RUNS = "/api/export/runs"


def test_idempotent_replay_and_conflict(client: TestClient, world: World) -> None:
    h = auth(world.acme) | {"Idempotency-Key": "key-1"}
    first = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
    assert first.status_code == 202
    again = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    # Only one run exists; the same JSON spelled differently is the same request.
    spaced = client.post(
        RUNS,
        content=b'{ "profile" : "acme-json" }',
        headers=h | {"Content-Type": "application/json"},
    )
    assert spaced.json()["id"] == first.json()["id"]
    assert client.get(RUNS, headers=auth(world.acme)).json()["total"] == 1

    changed = client.post(RUNS, json={"profile": "acme-json", "asOf": 3}, headers=h)
    assert changed.status_code == 409
    assert changed.json()["code"] == "ERR_EXPORT_IDEMPOTENCY"
    # The same key on another endpoint is another request too.
    other = client.post("/api/export/plan", json={"profile": "acme-json"}, headers=h)
    assert other.status_code == 409

    # Keys are per tenant: zeta's "key-1" is its own.
    z = client.post(
        RUNS, json={"profile": "zeta-json"}, headers=auth(world.zeta) | {"Idempotency-Key": "key-1"}
    )
    assert z.status_code == 202
    assert z.json()["id"] != first.json()["id"]


def test_failed_requests_release_their_key(client: TestClient, world: World) -> None:
    h = auth(world.acme) | {"Idempotency-Key": "retry-me"}
    r = client.post(RUNS, json={"profile": "not-yet"}, headers=h)
    assert r.status_code == 404
    client.post(
        "/api/export/profiles",
        json={"name": "not-yet", "spec": {"kind": "json", "variant": "raw"}},
        headers=auth(world.acme),
    )
    assert client.post(RUNS, json={"profile": "not-yet"}, headers=h).status_code == 202
    r = client.post(RUNS, json={"profile": "not-yet"}, headers=h | {"Idempotency-Key": "x" * 300})
    assert r.status_code == 400


def _client_with(settings: Settings, quotas: Quotas) -> tuple[Services, TestClient]:
    services = Services.open(fast_service(settings, quotas=quotas), metrics=Metrics())
    return services, TestClient(create_app(services))


def test_runs_per_hour_quota(settings: Settings, world: World) -> None:
    services, client = _client_with(settings, Quotas(concurrent_runs=0, runs_per_hour=2))
    try:
        h = auth(world.acme)
        r1 = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
        assert r1.headers["X-Stella-Quota-Limit"] == "2"
        assert r1.headers["X-Stella-Quota-Remaining"] == "1"
        assert 3590 <= int(r1.headers["X-Stella-Quota-Reset"]) <= 3600
        r2 = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
        assert r2.headers["X-Stella-Quota-Remaining"] == "0"
        r3 = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
        assert r3.status_code == 429
        body = r3.json()
        assert body["code"] == "ERR_EXPORT_QUOTA"
        assert r3.headers["X-Stella-Quota-Limit"] == "2"
        assert r3.headers["X-Stella-Quota-Remaining"] == "0"
        assert 1 <= int(r3.headers["Retry-After"]) <= 3600
        assert r3.headers["Retry-After"] == r3.headers["X-Stella-Quota-Reset"]
        assert {
            "quota": "runsPerHour",
            "limit": 2,
            "retryAfter": int(r3.headers["Retry-After"]),
        } in body["details"]
        # Another tenant has its own budget.
        assert (
            client.post(RUNS, json={"profile": "zeta-json"}, headers=auth(world.zeta)).status_code
            == 202
        )
    finally:
        services.close()


def test_concurrent_runs_quota(settings: Settings, world: World) -> None:
    services, client = _client_with(settings, Quotas(concurrent_runs=1, runs_per_hour=0))
    try:
        h = auth(world.acme)
        first = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
        assert first.status_code == 202
        assert "X-Stella-Quota-Limit" not in first.headers  # no hourly limit to report
        r = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "15"
        assert r.json()["details"][-1]["quota"] == "concurrentRuns"
        # A finished (here: cancelled) run frees its slot.
        client.post(f"{RUNS}/{first.json()['id']}/cancel", headers=h)
        assert client.post(RUNS, json={"profile": "acme-json"}, headers=h).status_code == 202
    finally:
        services.close()
