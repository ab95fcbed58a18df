"""The series behind the dashboards and alerts, produced by the real executor, maintenance
loop and run repository: retries by reason, pushes, latency and bytes by profile, the
queue gauges on SQLite and PostgreSQL."""

from __future__ import annotations

import errno
import threading
from datetime import UTC, datetime, timedelta

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.worker.maintenance import Maintenance
from export_center.worker.runner import RunExecutor
from support.service import failing_export, free_port, slow_export, wait_for


def _executor(services: Services, owner: str, **kwargs: object) -> RunExecutor:
    return RunExecutor(
        settings=services.settings,
        service=kwargs.pop("service", services.service),  # type: ignore[arg-type]
        store=services.store,
        repo=services.repo,
        artifacts=services.artifacts,
        metrics=services.metrics,
        owner=owner,
        **kwargs,  # type: ignore[arg-type]
    )


def _value(services: Services, name: str, **labels: str) -> float | None:
    return services.metrics.registry.get_sample_value(name, labels)


RUN = {"profile": "acme-json", "tenant": "acme"}


def test_a_transient_failure_is_a_retry_by_its_code_and_the_run_is_measured(
    services: Services,
) -> None:
    ex = _executor(
        services, "w1", export=failing_export([OSError(errno.ENOSPC, "No space left on device")])
    )
    run, _ = services.runs.create("acme", "acme-json")
    assert ex.execute(run.id) == "retrying"
    assert _value(services, "export_run_retries_total", reason="ERR_EXPORT_IO") == 1
    # The other reasons exist from the start, at 0: their first increase is visible.
    assert _value(services, "export_run_retries_total", reason="worker_lost") == 0
    # The profile's final statuses exist at 0 once one of its runs has started.
    assert _value(services, "export_runs_total", **RUN, status="failed") == 0
    wait_for(lambda: ex.execute(run.id) == "succeeded", timeout=5)
    done = services.repo.get("acme", run.id)
    assert done.archive_bytes
    assert _value(services, "export_runs_total", **RUN, status="succeeded") == 1
    assert _value(services, "export_bytes_total", **RUN) == done.archive_bytes
    count = _value(services, "export_run_duration_seconds_count", **RUN, status="succeeded")
    assert count == 1
    le = _value(
        services, "export_run_duration_seconds_bucket", **RUN, status="succeeded", le="1800.0"
    )
    assert le == 1  # the bucket the latency SLO rule reads, under its exact label value
    assert _value(services, "export_worker_active_runs") == 0


def test_a_takeover_is_a_retry_for_a_lost_worker(services: Services) -> None:
    run, _ = services.runs.create("acme", "acme-json")
    assert services.repo.claim(run.id, "dead-worker", lease_seconds=0.1) is not None
    live = _executor(services, "live-worker")
    wait_for(lambda: live.execute(run.id) == "succeeded", timeout=5)
    assert _value(services, "export_run_retries_total", reason="worker_lost") == 1
    assert _value(services, "export_run_takeovers_total") == 1


def test_a_run_given_back_on_shutdown_is_a_retry_released(services: Services) -> None:
    ex = _executor(services, "w1", export=slow_export(0.05))
    run, _ = services.runs.create("acme", "acme-json")
    outcome: list[str] = []
    t = threading.Thread(target=lambda: outcome.append(ex.execute(run.id)))
    t.start()
    wait_for(lambda: _value(services, "export_worker_active_runs") == 1, timeout=10)
    ex.aborting.set()
    t.join(timeout=30)
    assert outcome == ["released"]
    assert _value(services, "export_run_retries_total", reason="released") == 1
    assert _value(services, "export_worker_active_runs") == 0
    assert services.repo.get("acme", run.id).status == "pending"


def test_a_failed_push_is_counted_by_outcome_and_as_a_failure(services: Services) -> None:
    closed = free_port()  # nothing listens there: the registry is down
    service = services.service.model_copy(
        update={"oci_repository": f"oci://127.0.0.1:{closed}/stella/bundles"}
    )
    ex = _executor(services, "w1", service=service)
    run, _ = services.runs.create("acme", "acme-json")
    assert ex.execute(run.id) == "succeeded"
    assert _value(services, "export_pushes_total", outcome="failed") == 1
    assert _value(services, "export_pushes_total", outcome="pushed") == 0
    assert _value(services, "export_failures_total", error_code="ERR_EXPORT_OCI_PUSH") == 1


def test_runs_settled_by_maintenance_are_counted(services: Services) -> None:
    services.registry.create(
        "acme", "doomed", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    run, _ = services.runs.create("acme", "doomed")
    for n in range(services.service.max_attempts):
        wait_for(
            lambda n=n: services.repo.claim(run.id, f"doomed-{n}", lease_seconds=0.1), timeout=5
        )
    maintenance = Maintenance(
        store=services.store,
        repo=services.repo,
        runs=services.runs,
        artifacts=services.artifacts,
        queue=lambda: services.queue,
        service=services.service,
        metrics=services.metrics,
    )
    assert wait_for(lambda: maintenance.sweep().settled, timeout=5) == [(run.id, "failed")]
    labels = {"profile": "doomed", "tenant": "acme"}
    assert _value(services, "export_runs_total", **labels, status="failed") == 1
    assert _value(services, "export_runs_total", **labels, status="succeeded") == 0
    assert _value(services, "export_failures_total", error_code="ERR_EXPORT_WORKER_LOST") == 1


def test_queue_gauges_on_the_database(db_services: Services) -> None:
    services = db_services
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    now = [t0]
    services.repo.clock = lambda: now[0]
    services.metrics.watch_queue(services.repo.queue_stats)
    created = [services.runs.create("acme", "acme-json")[0] for _ in range(4)]
    due, backoff, live, lapsed = (r.id for r in created)
    now[0] = t0 + timedelta(seconds=10)
    assert services.repo.claim(backoff, "w-backoff", lease_seconds=30) is not None
    assert services.repo.retry_later(
        backoff, "w-backoff", at=t0 + timedelta(hours=1), code="ERR_EXPORT_IO", message="disk"
    )
    assert services.repo.claim(live, "w-live", lease_seconds=600) is not None
    now[0] = t0 + timedelta(seconds=20)
    assert services.repo.claim(lapsed, "w-lapsed", lease_seconds=5) is not None
    now[0] = t0 + timedelta(seconds=100)
    expected = {
        ("export_runs_in_state", "pending"): 2,
        ("export_runs_in_state", "running"): 2,
        ("export_runs_due", None): 1,  # the one in back-off is not due
        ("export_run_leases_active", None): 1,
        ("export_runs_lease_expired", None): 1,
        ("export_oldest_pending_run_age_seconds", None): 100,  # created at t0, due
        ("export_running_run_idle_seconds", None): 90,  # claimed at t0+10, silent since
    }
    got = {
        (name, state): _value(services, name, **({"state": state} if state else {}))
        for name, state in expected
    }
    assert got == expected
    # Progress is an event: the idle time restarts from it.
    now[0] = t0 + timedelta(seconds=150)
    assert services.repo.progress(live, "w-live", 5, 20, event=True)
    now[0] = t0 + timedelta(seconds=160)
    # The lapsed run's last event (its claim at t0+20) is now the stalest.
    assert _value(services, "export_running_run_idle_seconds") == 140
    # Claiming the due run leaves nothing due and nothing waiting.
    assert services.repo.claim(due, "w-due", lease_seconds=600) is not None
    assert _value(services, "export_runs_due") == 0
    assert _value(services, "export_oldest_pending_run_age_seconds") == 0
    assert _value(services, "export_run_leases_active") == 2
