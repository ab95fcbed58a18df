"""Server-sent events on a real loopback server: order, heartbeat comments, Last-Event-ID."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi import FastAPI

from export_center.client import parse_sse
from export_center.runtime.container import Services
from export_center.worker.runtime import WorkerRuntime
from support.service import LiveServer, World, auth, put_advisories, slow_export


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    server = LiveServer.start(app)
    yield server
    server.stop()


def test_heartbeat_comments_while_nothing_happens(live: LiveServer, world: World) -> None:
    with httpx.Client(base_url=live.url, headers=auth(world.acme), timeout=10) as http:
        run_id = http.post("/api/export/runs", json={"profile": "acme-json"}).json()["id"]
        lines: list[str] = []
        deadline = time.monotonic() + 1.5
        with http.stream("GET", f"/api/export/runs/{run_id}/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache"
            for line in r.iter_lines():
                lines.append(line)
                if time.monotonic() > deadline:
                    break
    assert lines[0] == "retry: 2000"
    assert "event: queued" in lines
    assert lines.count(": heartbeat") >= 2  # every sse_heartbeat_seconds (0.3 s here)


def test_order_and_resume_after_a_dropped_connection(
    live: LiveServer, services: Services, world: World
) -> None:
    put_advisories(services.store, "acme", 1200, source="bulk")
    runtime = WorkerRuntime(services, export=slow_export(0.2))
    runtime.executor.progress_seconds = 0.0  # one progress event per report
    runtime.start()
    try:
        with httpx.Client(base_url=live.url, headers=auth(world.acme), timeout=30) as http:
            run_id = http.post("/api/export/runs", json={"profile": "acme-json"}).json()["id"]
            seen: list[tuple[int, str, dict[str, object]]] = []
            # First connection: read until two progress events, then drop it.
            with http.stream("GET", f"/api/export/runs/{run_id}/events") as r:
                for e in parse_sse(r.iter_lines()):
                    assert e.id is not None
                    seen.append((e.id, e.type, e.data))
                    if sum(t == "progress" for _, t, _ in seen) >= 2:
                        break
            dropped_at = seen[-1][0]
            # Resume: everything after Last-Event-ID, nothing twice, up to the final event.
            headers = {"Last-Event-ID": str(dropped_at)}
            with http.stream("GET", f"/api/export/runs/{run_id}/events", headers=headers) as r:
                resumed = [(e.id or 0, e.type, e.data) for e in parse_sse(r.iter_lines())]
            # ?after= is the same as the header (for clients that cannot set headers).
            with http.stream(
                "GET", f"/api/export/runs/{run_id}/events", params={"after": dropped_at}
            ) as r:
                via_query = [e.id for e in parse_sse(r.iter_lines())]
    finally:
        runtime.stop(drain_seconds=5)
    assert resumed[0][0] == dropped_at + 1
    assert via_query == [seq for seq, _, _ in resumed]
    events = seen + resumed
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    types = [t for _, t, _ in events]
    assert types[:2] == ["queued", "started"]
    assert types[-2:] == ["artifact_ready", "succeeded"]
    progress = [d for _, t, d in events if t == "progress"]
    assert len(progress) >= 3
    done = [int(d["data"]["itemsCompleted"]) for d in progress]  # type: ignore[index]
    assert done == sorted(done)
    assert all(d["runId"] == run_id for _, _, d in events)
    assert orjson.loads(orjson.dumps(events[-1][2]))["data"] == {"status": "succeeded"}


def test_bad_last_event_id_is_400(live: LiveServer, world: World) -> None:
    with httpx.Client(base_url=live.url, headers=auth(world.acme), timeout=10) as http:
        run_id = http.post("/api/export/runs", json={"profile": "acme-json"}).json()["id"]
        r = http.get(f"/api/export/runs/{run_id}/events", headers={"Last-Event-ID": "abc"})
        assert r.status_code == 400
        assert r.json()["code"] == "ERR_EXPORT_BAD_INPUT"
