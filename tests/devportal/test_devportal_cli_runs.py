"""devportal:offline runs through the real entry points: ``stella export run`` in-process, and a
``stella worker`` process (on PostgreSQL) taking a queued run, each packaging the operator's
STELLA_DEVPORTAL_DIR and the API's own OpenAPI document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from export_center.adapters.devportal import PORTAL_BUNDLE
from export_center.devportal.service_spec import INDEX_PATH, SPEC_PATH
from export_center.planner.profiles import parse_profile_spec
from export_center.runs.artifacts import read_bundle_files
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.service.app import openapi_document
from support.devportal import DEMO, copy_tree, unpack
from support.service import fast_service, generate_key, make_settings, wait_for

STELLA = str(Path(sys.executable).with_name("stella"))
SPEC = {"kind": "devportal", "variant": "offline", "compression": {"algorithm": "gzip"}}


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")}
    return env | {"STELLA_DATA_DIR": str(data)} | extra


def _portal_files(archive: Path) -> dict[str, bytes]:
    return unpack(read_bundle_files(archive, [PORTAL_BUNDLE])[PORTAL_BUNDLE])


def test_stella_export_run_in_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    for args in (
        ["keys", "generate", "--type", "ed25519"],
        ["export", "profile", "create", "portal", "--kind", "devportal", "--variant", "offline"],
    ):
        done = subprocess.run([STELLA, *args], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [STELLA, "export", "run", "portal", "--out", str(tmp_path / "out"), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    files = _portal_files(Path(json.loads(done.stdout)["archive"]))
    assert files[SPEC_PATH] == openapi_document()
    assert INDEX_PATH in files  # no operator tree: the generated page


def test_a_stella_worker_process_runs_a_queued_devportal_run(pg_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", pg_url)
    generate_key(settings)
    tree = copy_tree(DEMO, tmp_path / "operator-tree")
    services = Services.open(fast_service(settings), metrics=Metrics())
    worker = None
    try:
        services.registry.create("acme", "portal", parse_profile_spec(SPEC))
        run, _ = services.runs.create("acme", "portal")
        env = _env(
            settings.data_dir,
            STELLA_DATABASE_URL=settings.database_url,
            STELLA_DEVPORTAL_DIR=str(tree),
        )
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen([STELLA, "worker"], env=env, stdout=log, stderr=log)
        done = wait_for(
            lambda: (r := services.repo.get("acme", run.id)).terminal and r, timeout=120
        )
        assert done.status == "succeeded", (tmp_path / "worker.log").read_text()
        assert done.archive_path is not None
        files = _portal_files(services.artifacts.resolve(done.archive_path))
        assert files[SPEC_PATH] == openapi_document()
        # The operator's tree is there, portal included (so no page was generated over it).
        assert files[INDEX_PATH] == (tree / INDEX_PATH).read_bytes()
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        services.close()
