"""Cron schedules, retention by age, recovery of stranded runs; settings; pure helpers."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from export_center.errors import BadInputError, ConfigError
from export_center.planner.profiles import parse_profile_spec
from export_center.runs.clock import aware
from export_center.runs.operations import RunService
from export_center.runs.repository import RunRepository
from export_center.runs.schedules import schedule_slot
from export_center.runtime.container import Services
from export_center.settings import Quotas, Settings, load_settings
from export_center.worker.maintenance import Maintenance
from export_center.worker.retry import backoff_seconds, classify
from support.service import put_advisories


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _maintenance(services: Services, clock: Clock) -> tuple[Maintenance, RunRepository]:
    repo = RunRepository(services.store, clock=clock)
    runs = RunService(
        store=services.store,
        repo=repo,
        registry=services.registry,
        queue=lambda: services.queue,
        service=services.service,
    )
    m = Maintenance(
        store=services.store,
        repo=repo,
        runs=runs,
        artifacts=services.artifacts,
        queue=lambda: services.queue,
        service=services.service,
    )
    return m, repo


def test_cron_schedules_fire_once_per_slot(services: Services) -> None:
    put_advisories(services.store, "acme", 3)
    spec = parse_profile_spec({"kind": "json", "variant": "raw", "schedule": "*/15 * * * *"})
    created = aware(services.registry.create("acme", "every-15", spec).created_at)
    assert created is not None
    # At the very time the schedule was set (a minute later would owe the next slot whenever
    # the test runs in the last minute before a quarter hour).
    clock = Clock(created)
    m, repo = _maintenance(services, clock)
    # The last slot before the schedule existed is not owed.
    assert m.sweep().scheduled == []
    clock.now = created.replace(second=0, microsecond=0) + timedelta(minutes=16)
    first = m.sweep().scheduled
    assert len(first) == 1
    assert m.sweep().scheduled == []  # same slot: nothing new
    run = repo.get("acme", first[0])
    assert (run.trigger, run.profile) == ("schedule", "every-15")
    clock.now += timedelta(minutes=15)
    assert len(m.sweep().scheduled) == 1
    # Archived profiles stop firing.
    services.registry.archive("acme", "every-15")
    clock.now += timedelta(minutes=15)
    assert m.sweep().scheduled == []


def test_retention_by_age(services: Services) -> None:
    put_advisories(services.store, "acme", 3)
    spec = parse_profile_spec({"kind": "json", "variant": "raw", "retention": {"days": 7}})
    services.registry.create("acme", "week", spec)
    clock = Clock(datetime.now(UTC))
    m, repo = _maintenance(services, clock)
    from export_center.worker.runner import RunExecutor

    ex = RunExecutor(
        settings=services.settings,
        service=services.service,
        store=services.store,
        repo=repo,
        artifacts=services.artifacts,
        metrics=services.metrics,
        owner="w",
    )
    run, _ = m.runs.create("acme", "week")
    assert ex.execute(run.id) == "succeeded"
    assert m.sweep().expired == []
    clock.now += timedelta(days=8)
    assert m.sweep().expired == [run.id]
    assert repo.get("acme", run.id).status == "expired"
    assert not (services.settings.artifact_dir / "acme" / run.id).exists()


def test_stranded_pending_runs_are_woken(services: Services) -> None:
    put_advisories(services.store, "acme", 3)
    services.registry.create(
        "acme", "plain", parse_profile_spec({"kind": "json", "variant": "raw"})
    )
    clock = Clock(datetime.now(UTC))
    m, _ = _maintenance(services, clock)
    run, _ = m.runs.create("acme", "plain")
    assert run.id in m.repo.due()
    # The embedded queue cannot tell which runs have a job: it is simply woken.
    assert m.sweep().enqueued == []


def test_schedule_slot() -> None:
    now = datetime(2026, 3, 1, 10, 7, 30, tzinfo=UTC)
    assert schedule_slot("*/5 * * * *", now) == datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    assert schedule_slot("0 2 * * *", now) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    on_the_dot = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    assert schedule_slot("*/5 * * * *", on_the_dot) == on_the_dot
    with pytest.raises(ValueError, match="invalid cron"):
        schedule_slot("every monday", now)


def test_classify_and_backoff() -> None:
    assert classify(OSError(errno.ENOSPC, "full")) == (True, "ERR_EXPORT_IO")
    assert classify(OSError(errno.EACCES, "denied")) == (False, "ERR_EXPORT_IO")
    assert classify(TimeoutError()) == (True, "ERR_EXPORT_IO")
    assert classify(OperationalError("select", {}, Exception("gone"))) == (
        True,
        "ERR_EXPORT_DATABASE",
    )
    assert classify(BadInputError("nope")) == (False, "ERR_EXPORT_BAD_INPUT")
    assert classify(ValueError("bug")) == (False, "ERR_EXPORT_INTERNAL")
    delays = [backoff_seconds("run-1", n, base=5, cap=60) for n in range(1, 7)]
    assert all(4 <= d <= 6 for d in delays[:1])
    assert delays[-1] <= 72  # capped (plus jitter)
    assert delays == [backoff_seconds("run-1", n, base=5, cap=60) for n in range(1, 7)]
    assert delays[1] > delays[0] and delays[2] > delays[1]


def test_service_settings(tmp_path: Path, settings: Settings) -> None:
    cfg = tmp_path / "stella.toml"
    cfg.write_text(
        '[stella]\ndefault_tenant = "acme"\n'
        "[service]\nlease_seconds = 45\nquota_runs_per_hour = 10\n"
        "[service.tenant_quotas.big]\nruns_per_hour = 1000\n"
    )
    env = {"STELLA_CONFIG": str(cfg), "STELLA_SERVICE_MAX_ATTEMPTS": "5"}
    loaded = load_settings(env={"STELLA_DATA_DIR": str(settings.data_dir), **env})
    assert loaded.default_tenant == "acme"
    s = loaded.service
    assert (s.lease_seconds, s.max_attempts) == (45.0, 5)
    assert s.quotas_for("acme") == Quotas(concurrent_runs=4, runs_per_hour=10, bytes_per_day=0)
    assert s.quotas_for("big").runs_per_hour == 1000
    assert s.quotas_for("big").concurrent_runs == 4
    with pytest.raises(ConfigError, match="unknown service setting 'lease'"):
        settings.with_service(lease=3)
    with pytest.raises(ConfigError, match="unknown service setting 'lease'"):
        load_settings(env={}, service={"lease": 3})
    with pytest.raises(ConfigError, match="heartbeat_seconds"):
        settings.with_service(heartbeat_seconds=10, lease_seconds=5)
    with pytest.raises(ConfigError, match="not a number"):
        load_settings(env={"STELLA_SERVICE_LEASE_SECONDS": "soon"})
