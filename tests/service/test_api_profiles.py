"""Profiles: list with paging, create, get, new revision, archive; validation errors."""

from __future__ import annotations

from fastapi.testclient import TestClient

from support.service import World, auth

BASE = "/api/export/profiles"
SPEC = {"kind": "json", "variant": "raw"}


def test_create_get_revise_archive(client: TestClient, world: World) -> None:
    h = auth(world.acme)
    r = client.post(
        BASE, json={"name": "nightly", "spec": SPEC | {"schedule": "0 2 * * *"}}, headers=h
    )
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"{BASE}/nightly"
    created = r.json()
    assert (created["name"], created["revision"], created["tenant"]) == ("nightly", 1, "acme")
    assert created["spec"]["schedule"] == "0 2 * * *"
    assert created["digest"].startswith("sha256:")

    assert client.post(BASE, json={"name": "nightly", "spec": SPEC}, headers=h).status_code == 409

    revised = {"spec": SPEC | {"compression": {"algorithm": "gzip", "level": 6}}}
    r = client.post(f"{BASE}/nightly/revisions", json=revised, headers=h)
    assert r.status_code == 201
    assert r.json()["revision"] == 2
    # The same body again is no new revision.
    r = client.post(f"{BASE}/nightly/revisions", json=revised, headers=h)
    assert r.status_code == 200
    assert r.json()["revision"] == 2

    assert client.get(f"{BASE}/nightly", headers=h).json()["revision"] == 2
    first = client.get(f"{BASE}/nightly", params={"revision": 1}, headers=h).json()
    assert first["spec"]["compression"]["algorithm"] == "zstd"
    r = client.get(f"{BASE}/nightly", params={"revision": 9}, headers=h)
    assert r.status_code == 404

    r = client.post(f"{BASE}/nightly/archive", headers=h)
    assert r.status_code == 200
    assert r.json()["archived"] is True
    assert "nightly" not in [p["name"] for p in client.get(BASE, headers=h).json()["items"]]
    listed = client.get(BASE, params={"includeArchived": "true"}, headers=h).json()
    assert "nightly" in [p["name"] for p in listed["items"]]
    # Archived profiles take no new revision and no run.
    assert (
        client.post(f"{BASE}/nightly/revisions", json={"spec": SPEC}, headers=h).status_code == 409
    )
    r = client.post("/api/export/runs", json={"profile": "nightly"}, headers=h)
    assert r.status_code == 409
    assert r.json()["code"] == "ERR_EXPORT_CONFLICT"


def test_paging(client: TestClient, world: World) -> None:
    h = auth(world.acme)
    for name in ("p-one", "p-two", "p-three"):
        assert client.post(BASE, json={"name": name, "spec": SPEC}, headers=h).status_code == 201
    page = client.get(BASE, params={"limit": 2}, headers=h).json()
    assert page["total"] == 4
    assert [p["name"] for p in page["items"]] == ["acme-json", "p-one"]
    assert page["next"] == f"{BASE}?includeArchived=false&offset=2&limit=2"
    page2 = client.get(page["next"], headers=h).json()
    assert [p["name"] for p in page2["items"]] == ["p-three", "p-two"]
    assert page2["next"] is None


def test_bad_bodies_are_400_with_details(client: TestClient, world: World) -> None:
    h = auth(world.acme)
    cases = [
        ({"name": "Bad Name", "spec": SPEC}, "name"),
        ({"name": "ok-name", "spec": {"kind": "json", "variant": "db"}}, "spec"),
        ({"name": "ok-name", "spec": SPEC | {"unknownField": 1}}, "unknownField"),
        ({"name": "ok-name", "spec": SPEC | {"schedule": "every day"}}, "schedule"),
        ({"name": "ok-name"}, "spec"),
    ]
    for body, field in cases:
        r = client.post(BASE, json=body, headers=h)
        assert r.status_code == 400, (body, r.text)
        err = r.json()
        assert err["code"] == "ERR_EXPORT_BAD_INPUT"
        assert field in err["message"] or any(field in str(d) for d in err["details"]), err
    r = client.post(BASE, content=b"{not json", headers=h | {"Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.get(f"{BASE}/UPPER", headers=h)
    assert r.status_code == 400


def test_unknown_routes_and_methods_use_the_envelope(client: TestClient, world: World) -> None:
    r = client.get("/api/export/nothing-here", headers=auth(world.acme))
    assert r.status_code == 404
    assert r.json()["code"] == "ERR_EXPORT_NOT_FOUND"
    r = client.delete(BASE, headers=auth(world.acme))
    assert r.status_code == 405
    assert r.json()["code"] == "ERR_EXPORT_METHOD_NOT_ALLOWED"
