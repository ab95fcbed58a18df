"""With ``oci_repository`` set, every published bundle is also pushed to the registry."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from export_center.bundle.verify import verify_bundle
from export_center.oci.registry import pull_bundle
from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.settings import Settings
from export_center.signing.interface import load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.worker.runtime import WorkerRuntime
from support.service import fast_service, put_advisories, wait_for


def _oci_conftest() -> ModuleType:
    # tests/oci/conftest.py's `registry` fixture: Debian's docker-registry on 127.0.0.1.
    path = Path(__file__).resolve().parents[1] / "oci" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_oci_conftest_for_service", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


registry = _oci_conftest().registry


def _run_once(settings: Settings, repository: str) -> tuple[Services, str]:
    services = Services.open(fast_service(settings, oci_repository=repository), metrics=Metrics())
    put_advisories(services.store, "acme", 12)
    services.registry.create(
        "acme", "acme-json", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    run, _quota = services.runs.create("acme", "acme-json")
    worker = WorkerRuntime(services)
    worker.start()
    try:
        wait_for(
            lambda: any(
                e.type.startswith("artifact_push") for e in services.repo.events_after(run.id, 0)
            ),
            timeout=60,
        )
    finally:
        worker.stop(drain_seconds=5)
    return services, run.id


def test_published_bundle_is_pushed_and_verifies_from_the_registry(
    registry: str, settings: Settings, tmp_path: Path
) -> None:
    services, run_id = _run_once(settings, f"oci://{registry}/stella/exports")
    try:
        run = services.repo.find(run_id)
        assert run is not None and run.status == "succeeded"
        events = {e.type: e for e in services.repo.events_after(run_id, 0)}
        assert "artifact_pushed" in events and "succeeded" in events
        pushed = events["artifact_pushed"].data
        assert pushed["ref"] == f"oci://{registry}/stella/exports:{run.export_id}"
        pulled = pull_bundle(pushed["ref"], tmp_path / "pulled")
        assert pulled.manifest_digest == pushed["digest"]
        keys = KeyStore.from_settings(settings)
        roots = load_trust_roots(keys.export_public(keys.newest().keyid))
        report = verify_bundle(tmp_path / "pulled", roots)
        assert report.ok, report.as_json()
        assert report.export_id == run.export_id
    finally:
        services.close()


def test_unreachable_registry_is_reported_not_fatal(settings: Settings) -> None:
    services, run_id = _run_once(settings, "oci://127.0.0.1:9/stella/exports")
    try:
        run = services.repo.find(run_id)
        assert run is not None and run.status == "succeeded"  # the filesystem copy stands
        failed = [
            e for e in services.repo.events_after(run_id, 0) if e.type == "artifact_push_failed"
        ]
        assert len(failed) == 1 and "127.0.0.1:9" in failed[0].data["ref"]
    finally:
        services.close()
