"""Fixtures of the telemetry tests (the Prometheus helpers live in tests/support/prometheus.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from support.service import fast_service, generate_key, make_settings, put_advisories


def _open(tmp_path: Path, db_url: str | None) -> Services:
    settings = make_settings(tmp_path / "data", db_url)
    generate_key(settings)
    svc = Services.open(fast_service(settings), metrics=Metrics())
    put_advisories(svc.store, "acme", 20)
    svc.registry.create("acme", "acme-json", parse_profile_spec({"kind": "json", "variant": "raw"}))
    return svc


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """SQLite services with a key, 20 advisories and the profile acme-json."""
    svc = _open(tmp_path, None)
    yield svc
    svc.close()


@pytest.fixture
def db_services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    """The same on SQLite and on PostgreSQL."""
    svc = _open(tmp_path, db_url)
    yield svc
    svc.close()
