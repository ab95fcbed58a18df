"""The ``settings`` and ``services`` fixtures of the service, worker and console tests: a
SQLite data directory with a key of the test tenants, and the services over it with fast
timings. Registered for the whole suite by tests/conftest.py (``pytest_plugins``); a folder
that needs other ones defines its own, which wins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.settings import Settings
from support.service import fast_service, generate_key, make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path / "data")
    generate_key(s)
    return s


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = Services.open(fast_service(settings), metrics=Metrics())
    yield svc
    svc.close()
