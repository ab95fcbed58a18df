"""The run executor on SQLite: retries with back-off, final failures, lease takeover and
fencing, lost workers, cancellation, metrics and structured logs."""

from __future__ import annotations

import errno
import io
import json
import logging
from collections.abc import Iterator

import pytest

from export_center.errors import BadInputError
from export_center.planner.profiles import parse_profile_spec
from export_center.runs.repository import WORKER_LOST, RunView
from export_center.runtime.container import Services
from export_center.runtime.logs import configure_logging
from export_center.worker.maintenance import Maintenance
from export_center.worker.runner import RunExecutor
from support.service import failing_export, put_advisories, slow_export, wait_for


@pytest.fixture
def profile(services: Services) -> str:
    put_advisories(services.store, "acme", 20)
    services.registry.create(
        "acme", "acme-json", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    return "acme-json"


def _executor(services: Services, owner: str, **kwargs: object) -> RunExecutor:
    return RunExecutor(
        settings=services.settings,
        service=services.service,
        store=services.store,
        repo=services.repo,
        artifacts=services.artifacts,
        metrics=services.metrics,
        owner=owner,
        **kwargs,  # type: ignore[arg-type]
    )


def _run(services: Services, profile: str) -> RunView:
    run, _ = services.runs.create("acme", profile)
    return run


def _types(services: Services, run_id: str) -> list[str]:
    return [e.type for e in services.repo.events_after(run_id, 0)]


def _metric(services: Services, name: str, labels: dict[str, str] | None = None) -> float:
    value = services.metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


def test_transient_failures_are_retried_with_back_off(services: Services, profile: str) -> None:
    enqueued: list[str] = []
    ex = _executor(
        services,
        "w1",
        export=failing_export([OSError(errno.ENOSPC, "No space left on device")]),
        enqueue=lambda run_id, not_before=None: enqueued.append(run_id),
    )
    run = _run(services, profile)
    assert ex.execute(run.id) == "retrying"
    pending = services.repo.get("acme", run.id)
    assert pending.status == "pending"
    assert pending.error_code == "ERR_EXPORT_IO"
    assert pending.next_attempt_at is not None
    assert enqueued == [run.id]
    # Not before its back-off: the claim refuses it.
    assert ex.execute(run.id) == "skipped"
    wait_for(lambda: ex.execute(run.id) == "succeeded", timeout=5)
    done = services.repo.get("acme", run.id)
    assert (done.status, done.attempts, done.error_code) == ("succeeded", 2, None)
    assert _types(services, run.id)[:4] == ["queued", "started", "retrying", "started"]
    assert _metric(services, "export_failures_total", {"error_code": "ERR_EXPORT_IO"}) == 1
    assert (
        _metric(
            services,
            "export_runs_total",
            {"profile": profile, "tenant": "acme", "status": "succeeded"},
        )
        == 1
    )


def test_retries_stop_at_max_attempts(services: Services, profile: str) -> None:
    errors: list[BaseException] = [TimeoutError("slow disk")] * services.service.max_attempts
    ex = _executor(services, "w1", export=failing_export(errors))
    run = _run(services, profile)
    outcomes = []
    for _ in range(services.service.max_attempts):
        wait_for(lambda: run.id in services.repo.due(), timeout=5)
        outcomes.append(ex.execute(run.id))
    assert outcomes == ["retrying"] * (services.service.max_attempts - 1) + ["failed"]
    failed = services.repo.get("acme", run.id)
    assert (failed.status, failed.error_code) == ("failed", "ERR_EXPORT_IO")
    assert failed.error_message == "slow disk"


def test_other_failures_are_final(services: Services, profile: str) -> None:
    ex = _executor(
        services, "w1", export=failing_export([BadInputError("profile option x is wrong")])
    )
    run = _run(services, profile)
    assert ex.execute(run.id) == "failed"
    failed = services.repo.get("acme", run.id)
    assert (failed.status, failed.attempts, failed.error_code) == (
        "failed",
        1,
        "ERR_EXPORT_BAD_INPUT",
    )
    assert _types(services, run.id)[-1] == "failed"
    assert not (services.settings.artifact_dir / "acme" / run.id).exists()


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_is_fenced(
    services: Services, profile: str
) -> None:
    run = _run(services, profile)
    dead = services.repo.claim(run.id, "dead-worker", lease_seconds=0.2)
    assert dead is not None
    live = _executor(services, "live-worker")
    assert live.execute(run.id) == "skipped"  # the lease still holds
    wait_for(lambda: live.execute(run.id) == "succeeded", timeout=5)
    done = services.repo.get("acme", run.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    started = [e.data for e in services.repo.events_after(run.id, 0) if e.type == "started"]
    assert [(s["takeover"], s["worker"]) for s in started] == [
        (False, "dead-worker"),
        (True, "live-worker"),
    ]
    # The old holder wakes up: every write it tries is refused.
    assert not services.repo.heartbeat(run.id, "dead-worker", lease_seconds=30)
    assert not services.repo.finish(run.id, "dead-worker", "failed", code="X", message="late")
    assert services.repo.get("acme", run.id).status == "succeeded"
    assert _metric(services, "export_run_takeovers_total") == 1


def test_a_run_that_keeps_losing_workers_fails(services: Services, profile: str) -> None:
    run = _run(services, profile)
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
    )
    report = wait_for(lambda: maintenance.sweep().settled, timeout=5)
    assert report == [(run.id, "failed")]
    failed = services.repo.get("acme", run.id)
    assert (failed.status, failed.error_code) == ("failed", WORKER_LOST)


def test_cancel_of_a_lapsed_run_settles_it(services: Services, profile: str) -> None:
    run = _run(services, profile)
    assert services.repo.claim(run.id, "gone", lease_seconds=0.1)
    services.runs.cancel("acme", run.id)
    maintenance = Maintenance(
        store=services.store,
        repo=services.repo,
        runs=services.runs,
        artifacts=services.artifacts,
        queue=lambda: services.queue,
        service=services.service,
    )
    assert wait_for(lambda: maintenance.sweep().settled, timeout=5) == [(run.id, "cancelled")]
    assert _types(services, run.id)[-1] == "cancelled"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("INFO", stream=buf)
    yield buf
    root.handlers, root.level = saved[0], saved[1]


def test_log_lines_are_json_with_run_context(
    services: Services, profile: str, captured_logs: io.StringIO
) -> None:
    put_advisories(services.store, "acme", 400, source="more")
    ex = _executor(services, "w-log", export=slow_export(0.01))
    run = _run(services, profile)
    assert ex.execute(run.id) == "succeeded"
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert {"run_id", "tenant", "profile", "event", "level", "timestamp"} <= set(line), line
    ours = [line for line in lines if line["logger"].startswith("export_center.worker")]
    assert any("run claimed" in line["event"] for line in ours)
    assert any("run succeeded" in line["event"] for line in ours)
    assert all(
        (line["run_id"], line["tenant"], line["profile"]) == (run.id, "acme", profile)
        for line in ours
    )


def test_only_succeeded_runs_enter_the_ledger_of_published_exports(
    services: Services, profile: str
) -> None:
    from export_center.store.published import find_published

    # A cancel that arrives while the bundle is being published removes it: it must never be
    # a delta's base (the ledger is what bases are resolved from).
    cancelled = _run(services, profile)

    def cancel_at_publication(*args: object, **kwargs: object) -> object:
        from export_center.exporter import run_export

        outcome = run_export(*args, **kwargs)  # type: ignore[arg-type]
        services.repo.request_cancel(cancelled.tenant, cancelled.id)
        return outcome

    ex = _executor(services, "w-ledger", export=cancel_at_publication)
    assert ex.execute(cancelled.id) == "cancelled"
    export_id = services.repo.get("acme", cancelled.id).export_id
    assert export_id and find_published(services.store, "acme", export_id) is None
    done = _run(services, profile)
    assert _executor(services, "w-ledger-2").execute(done.id) == "succeeded"
    row = find_published(services.store, "acme", services.repo.get("acme", done.id).export_id or "")
    assert row is not None and row.profile == profile and row.kind == "json"
