"""Runs end to end through the API with the in-process worker: create, progress, list,
cancel, manifest, provenance, download with byte ranges, plan, retention."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.worker.maintenance import Maintenance
from export_center.worker.runtime import WorkerRuntime
from support.service import World, auth, put_advisories, slow_export, wait_for

RUNS = "/api/export/runs"


def _finished(
    client: TestClient, token: str, run_id: str, timeout: float = 30
) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        body: dict[str, object] = client.get(f"{RUNS}/{run_id}", headers=auth(token)).json()
        return body if body["status"] not in ("pending", "running") else None

    result: dict[str, object] = wait_for(done, timeout=timeout)
    return result


def _events(
    client: TestClient, token: str, run_id: str, after: int | None = None
) -> list[tuple[int, str, dict[str, object]]]:
    extra = {"Last-Event-ID": str(after)} if after is not None else {}
    with client.stream("GET", f"{RUNS}/{run_id}/events", headers=auth(token) | extra) as r:
        assert r.status_code == 200
        text = r.read().decode()
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((int(fields["id"]), fields["event"], orjson.loads(fields["data"])))
    return out


def test_run_to_download(client: TestClient, world: World, worker: WorkerRuntime) -> None:
    h = auth(world.acme)
    r = client.post(RUNS, json={"profile": "acme-json"}, headers=h)
    assert r.status_code == 202, r.text
    accepted = r.json()
    run_id = accepted["id"]
    assert accepted["status"] == "pending"
    assert r.headers["Location"] == f"{RUNS}/{run_id}" == accepted["links"]["self"]
    assert accepted["links"]["events"] == f"{RUNS}/{run_id}/events"
    assert {"X-Stella-Quota-Limit", "X-Stella-Quota-Remaining", "X-Stella-Quota-Reset"} <= set(
        r.headers.keys()
    ) | {k.title() for k in r.headers}

    run = _finished(client, world.acme, run_id)
    assert run["status"] == "succeeded", run
    assert run["progress"] == {"percent": 100.0, "itemsCompleted": 30, "itemsTotal": 30}
    assert run["asOf"] == 30
    artifact = run["artifact"]
    assert isinstance(artifact, dict)
    sha, size = artifact["sha256"], artifact["bytes"]

    # Manifest and provenance, byte for byte from the published archive.
    m = client.get(f"{RUNS}/{run_id}/manifest", headers=h)
    assert m.status_code == 200
    assert m.headers["content-type"] == "application/json"
    assert orjson.loads(m.content)["exportId"] == run["exportId"]
    p = client.get(f"{RUNS}/{run_id}/provenance", headers=h)
    assert p.status_code == 200
    assert "in-toto" in orjson.loads(p.content)["_type"]

    # The whole archive: ETag and Digest name its SHA-256.
    full = client.get(f"{RUNS}/{run_id}/download", headers=h)
    assert full.status_code == 200
    assert len(full.content) == size
    assert hashlib.sha256(full.content).hexdigest() == sha
    assert full.headers["ETag"] == f'"{sha}"'
    assert full.headers["Digest"] == "sha-256=" + base64.b64encode(bytes.fromhex(sha)).decode()
    assert full.headers["Accept-Ranges"] == "bytes"

    # Byte ranges reassemble into the exact archive.
    parts = []
    for start in range(0, size, 997):
        end = min(size, start + 997) - 1
        r = client.get(f"{RUNS}/{run_id}/download", headers=h | {"Range": f"bytes={start}-{end}"})
        assert r.status_code == 206
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        parts.append(r.content)
    assert b"".join(parts) == full.content
    tail = client.get(f"{RUNS}/{run_id}/download", headers=h | {"Range": "bytes=-100"})
    assert tail.status_code == 206
    assert tail.content == full.content[-100:]
    # If-Range with the ETag resumes; a stale validator gets the whole file again.
    r = client.get(
        f"{RUNS}/{run_id}/download", headers=h | {"Range": "bytes=10-", "If-Range": f'"{sha}"'}
    )
    assert (r.status_code, r.content) == (206, full.content[10:])
    r = client.get(
        f"{RUNS}/{run_id}/download", headers=h | {"Range": "bytes=10-", "If-Range": '"stale"'}
    )
    assert (r.status_code, r.content) == (200, full.content)
    r = client.get(f"{RUNS}/{run_id}/download", headers=h | {"If-None-Match": f'"{sha}"'})
    assert r.status_code == 304
    r = client.get(f"{RUNS}/{run_id}/download", headers=h | {"Range": f"bytes={size}-"})
    assert r.status_code == 416
    assert r.json()["code"] == "ERR_EXPORT_RANGE_NOT_SATISFIABLE"
    assert r.headers["Content-Range"] == f"bytes */{size}"
    # Downloading needs its own scope.
    assert client.get(f"{RUNS}/{run_id}/download", headers=auth(world.reader)).status_code == 403

    events = _events(client, world.acme, run_id)
    types = [t for _, t, _ in events]
    assert types[0] == "queued"
    assert types[1] == "started"
    assert types[-2:] == ["artifact_ready", "succeeded"]
    assert set(types[2:-2]) <= {"progress"}
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    assert events[-2][2]["data"]["sha256"] == sha  # type: ignore[index]


def test_list_filter_and_paging(client: TestClient, world: World) -> None:
    h = auth(world.acme)
    ids = [
        client.post(RUNS, json={"profile": "acme-json"}, headers=h).json()["id"] for _ in range(3)
    ]
    client.post(f"{RUNS}/{ids[0]}/cancel", headers=h)
    page = client.get(RUNS, params={"status": "pending", "limit": 1}, headers=h).json()
    assert page["total"] == 2
    assert page["items"][0]["id"] == ids[2]  # newest first
    assert page["next"] == f"{RUNS}?status=pending&offset=1&limit=1"
    assert client.get(page["next"], headers=h).json()["items"][0]["id"] == ids[1]
    both = client.get(
        RUNS, params=[("status", "pending"), ("status", "cancelled")], headers=h
    ).json()
    assert both["total"] == 3
    assert client.get(RUNS, params={"profile": "nope"}, headers=h).json()["total"] == 0
    assert client.get(RUNS, params={"status": "bogus"}, headers=h).status_code == 400


def test_cancel_pending_run(client: TestClient, world: World) -> None:
    h = auth(world.acme)
    run_id = client.post(RUNS, json={"profile": "acme-json"}, headers=h).json()["id"]
    r = client.post(f"{RUNS}/{run_id}/cancel", headers=h)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert client.post(f"{RUNS}/{run_id}/cancel", headers=h).status_code == 200
    for what in ("download", "manifest", "provenance"):
        r = client.get(f"{RUNS}/{run_id}/{what}", headers=h)
        assert r.status_code == 409
        assert r.json()["code"] == "ERR_EXPORT_NOT_READY"
    assert [t for _, t, _ in _events(client, world.acme, run_id)] == ["queued", "cancelled"]
    # Resuming after the final event: nothing follows, the stream says so with 204.
    r = client.get(f"{RUNS}/{run_id}/events", headers=h | {"Last-Event-ID": "2"})
    assert r.status_code == 204


@pytest.fixture
def slow_worker(services: Services) -> Iterator[WorkerRuntime]:
    rt = WorkerRuntime(services, export=slow_export(0.25))
    rt.start()
    yield rt
    rt.stop(drain_seconds=5)


def test_cancel_running_run_publishes_nothing(
    client: TestClient, services: Services, world: World, slow_worker: WorkerRuntime
) -> None:
    put_advisories(services.store, "acme", 2000, source="bulk")
    h = auth(world.acme)
    run_id = client.post(RUNS, json={"profile": "acme-json"}, headers=h).json()["id"]
    wait_for(
        lambda: client.get(f"{RUNS}/{run_id}", headers=h).json()["progress"]["itemsCompleted"] > 0
    )
    r = client.post(f"{RUNS}/{run_id}/cancel", headers=h)
    assert r.status_code == 202
    assert r.json()["cancelRequested"] is True
    run = _finished(client, world.acme, run_id, timeout=5)
    assert run["status"] == "cancelled"
    assert run["artifact"] is None
    run_dir = services.settings.artifact_dir / "acme" / run_id
    assert not run_dir.exists() or not any(run_dir.iterdir())
    assert [t for _, t, _ in _events(client, world.acme, run_id)][-1] == "cancelled"
    r = client.post(f"{RUNS}/{run_id}/cancel", headers=h)
    assert r.status_code == 200


def test_cancel_finished_run_is_409(
    client: TestClient, world: World, worker: WorkerRuntime
) -> None:
    h = auth(world.acme)
    run_id = client.post(RUNS, json={"profile": "acme-json"}, headers=h).json()["id"]
    assert _finished(client, world.acme, run_id)["status"] == "succeeded"
    r = client.post(f"{RUNS}/{run_id}/cancel", headers=h)
    assert r.status_code == 409
    assert r.json()["code"] == "ERR_EXPORT_CONFLICT"


def test_plan_and_pinned_runs(client: TestClient, world: World, worker: WorkerRuntime) -> None:
    h = auth(world.acme)
    r = client.post("/api/export/plan", json={"profile": "acme-json"}, headers=h)
    assert r.status_code == 200
    plan = r.json()
    assert plan["counts"] == {"advisory": 30}
    assert plan["itemsTotal"] == 30
    assert plan["asOf"]["sequence"] == 30
    assert plan["estimatedBytes"] > 0
    assert plan["profile"] == {"name": "acme-json", "revision": 1, "kind": "json:raw"}
    r = client.post("/api/export/plan", json={"profile": "acme-json", "asOf": 10}, headers=h)
    assert r.json()["counts"] == {"advisory": 10}
    assert (
        client.post(
            "/api/export/plan", json={"profile": "acme-json", "asOf": 99}, headers=h
        ).status_code
        == 404
    )
    assert (
        client.post("/api/export/plan", json={"profile": "missing"}, headers=h).status_code == 404
    )
    assert client.post(RUNS, json={"profile": "missing"}, headers=h).status_code == 404
    assert (
        client.post(RUNS, json={"profile": "acme-json", "revision": 7}, headers=h).status_code
        == 404
    )

    run_id = client.post(RUNS, json={"profile": "acme-json", "asOf": 10}, headers=h).json()["id"]
    run = _finished(client, world.acme, run_id)
    assert run["status"] == "succeeded"
    assert run["asOf"] == 10
    assert run["progress"]["itemsTotal"] == 10  # type: ignore[index]
    assert "-s10-" in str(run["exportId"])


def test_retention_expires_old_bundles(
    client: TestClient, services: Services, world: World, worker: WorkerRuntime
) -> None:
    h = auth(world.acme)
    spec = parse_profile_spec({"kind": "json", "variant": "raw", "retention": {"count": 1}})
    services.registry.create("acme", "keep-one", spec)
    first = client.post(RUNS, json={"profile": "keep-one"}, headers=h).json()["id"]
    assert _finished(client, world.acme, first)["status"] == "succeeded"
    second = client.post(RUNS, json={"profile": "keep-one"}, headers=h).json()["id"]
    assert _finished(client, world.acme, second)["status"] == "succeeded"
    assert worker.maintenance is not None
    wait_for(lambda: client.get(f"{RUNS}/{first}", headers=h).json()["status"] == "expired")
    report = Maintenance.sweep(worker.maintenance)
    assert report.expired == [] or report.skipped  # nothing left to expire
    assert client.get(f"{RUNS}/{second}", headers=h).json()["status"] == "succeeded"
    r = client.get(f"{RUNS}/{first}/download", headers=h)
    assert r.status_code == 410
    assert r.json()["code"] == "ERR_EXPORT_EXPIRED"
    # The run is marked expired before its directory is deleted (same sweep, next statement):
    # on a loaded machine the status can be seen first.
    wait_for(lambda: not (services.settings.artifact_dir / "acme" / first).exists(), timeout=20)
    # A stream ends with the first final event; expiry follows it for whoever resumes.
    history = _events(client, world.acme, first)
    assert history[-1][1] == "succeeded"
    later = _events(client, world.acme, first, after=history[-1][0])
    assert [t for _, t, _ in later] == ["expired"]
    assert later[0][0] == history[-1][0] + 1
