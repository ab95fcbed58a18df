"""Fixtures of the worker tests (the helpers live beside the API tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from service_support import fast_service, generate_key, make_settings

from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.settings import Settings


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
