"""Fixtures of the worker tests (shared helpers live in tests/support/service.py)."""

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
