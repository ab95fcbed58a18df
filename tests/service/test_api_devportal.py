"""devportal:offline end to end over the API: profile, run, SSE until ``succeeded``, a download
in byte ranges, then ``verify-offline.sh`` under dash on what was downloaded; retention expires
an older devportal bundle like any other."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import orjson
import pytest
import rfc8785
from fastapi import FastAPI

from export_center.client import parse_sse
from export_center.devportal.service_spec import SPEC_PATH
from export_center.exporter import run_export
from export_center.runtime.container import Services
from export_center.service.app import openapi_document
from export_center.settings import Settings
from export_center.signing.keystore import KeyStore
from export_center.worker.runtime import WorkerRuntime
from support.service import LiveServer, auth, tenant_token, wait_for
from support.tools import need_tool

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

PROFILE = {
    "kind": "devportal",
    "variant": "offline",
    "compression": {"algorithm": "gzip"},
    "retention": {"count": 1},
    "options": {"metadata": {"product": "stella"}},
}


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    server = LiveServer.start(app)
    yield server
    server.stop()


@pytest.fixture
def portal_worker(services: Services) -> Iterator[WorkerRuntime]:
    # What `stella serve` wires: the worker's runs can package the API's OpenAPI document.
    rt = WorkerRuntime(services, export=partial(run_export, openapi=openapi_document))
    rt.start()
    yield rt
    rt.stop(drain_seconds=5)


def _events(http: httpx.Client, run_id: str) -> list[str]:
    with http.stream("GET", f"/api/export/runs/{run_id}/events") as r:
        assert r.status_code == 200
        return [e.type for e in parse_sse(r.iter_lines())]


def _download_in_ranges(http: httpx.Client, run_id: str, size: int) -> tuple[bytes, str]:
    half = size // 2
    first = http.get(
        f"/api/export/runs/{run_id}/download", headers={"Range": f"bytes=0-{half - 1}"}
    )
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-{half - 1}/{size}"
    etag = first.headers["etag"]
    rest = http.get(
        f"/api/export/runs/{run_id}/download",
        headers={"Range": f"bytes={half}-", "If-Range": etag},
    )
    assert rest.status_code == 206
    return first.content + rest.content, etag


def test_devportal_run_over_the_api(
    live: LiveServer,
    services: Services,
    settings: Settings,
    portal_worker: WorkerRuntime,
    tmp_path: Path,
) -> None:
    dash = need_tool("dash")
    need_tool("openssl")
    token = tenant_token(services, ["acme"])
    keys = KeyStore.from_settings(settings)
    pem = tmp_path / "publisher.pem"
    pem.write_bytes(keys.export_public(keys.signer(None).keyid))

    with httpx.Client(base_url=live.url, headers=auth(token), timeout=60) as http:
        created = http.post("/api/export/profiles", json={"name": "portal", "spec": PROFILE})
        assert created.status_code == 201, created.text
        run_id = http.post("/api/export/runs", json={"profile": "portal"}).json()["id"]
        events = _events(http, run_id)
        assert events[-1] == "succeeded"
        assert {"started", "artifact_ready"} <= set(events)
        run = http.get(f"/api/export/runs/{run_id}").json()
        artifact = run["artifact"]
        data, etag = _download_in_ranges(http, run_id, artifact["bytes"])
        served_spec = http.get("/.well-known/openapi")
        assert served_spec.status_code == 200

    digest = hashlib.sha256(data).hexdigest()
    assert etag == f'"{digest}"'
    assert digest == artifact["sha256"]

    # On the downloaded bytes: the export bundle holds the documented devportal archive.
    downloaded = tmp_path / artifact["name"]
    downloaded.write_bytes(data)
    outer = tmp_path / "outer"
    outer.mkdir()
    with tarfile.open(downloaded, "r:gz") as tar:
        tar.extractall(outer, filter="data")
    portal = tmp_path / "portal"
    portal.mkdir()
    subprocess.run(
        ["tar", "-xzf", str(outer / "portal" / "devportal-offline-bundle.tgz"), "-C", str(portal)],
        check=True,
    )
    result = subprocess.run(
        [dash, "verify-offline.sh", str(pem)],
        cwd=portal,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "FAIL" not in result.stdout + result.stderr
    # The portal's spec is the document the service serves, as RFC 8785 bytes.
    assert (portal / SPEC_PATH).read_bytes() == rfc8785.dumps(served_spec.json())
    assert orjson.loads((portal / "manifest.json").read_bytes())["metadata"]["product"] == "stella"

    # Retention (count 1) expires the older devportal bundle once a newer one succeeds.
    with httpx.Client(base_url=live.url, headers=auth(token), timeout=60) as http:
        second = http.post("/api/export/runs", json={"profile": "portal"}).json()["id"]
        assert _events(http, second)[-1] == "succeeded"
        wait_for(
            lambda: http.get(f"/api/export/runs/{run_id}").json()["status"] == "expired",
            timeout=30,
        )
        gone = http.get(f"/api/export/runs/{run_id}/download")
        assert gone.status_code == 410
        assert http.get(f"/api/export/runs/{second}/download").status_code == 200


def test_a_profile_naming_a_server_directory_is_refused(
    client: TestClient, services: Services
) -> None:
    token = tenant_token(services, ["acme"])
    spec = PROFILE | {"options": {"inputDir": "etc"}}
    r = client.post(
        "/api/export/profiles", json={"name": "sneaky", "spec": spec}, headers=auth(token)
    )
    assert r.status_code == 400
    assert r.json()["code"] == "ERR_EXPORT_BAD_INPUT"
    assert "options.inputDir: names a directory, which runs never read" in r.json()["message"]
    assert client.get("/api/export/profiles/sneaky", headers=auth(token)).status_code == 404
    r = client.post("/api/export/runs", json={"profile": "sneaky"}, headers=auth(token))
    assert r.status_code == 404
    assert services.repo.list_runs("acme", statuses=[], profile=None, offset=0, limit=10)[1] == 0
