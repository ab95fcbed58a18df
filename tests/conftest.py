"""Shared fixtures. Real-corpus tests read ../shared/corpora (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import network
from support.tools import missing

REPO = Path(__file__).resolve().parents[1]
CORPORA = Path(os.environ.get("STELLA_CORPORA", REPO.parent / "shared" / "corpora")).resolve()


# settings/services of the service, worker and console tests (one definition).
pytest_plugins = ["support.service_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    # Loopback only, for the whole run (subprocesses are separate: they run offline by design).
    config.add_cleanup(network.install())


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.is_dir():
        pytest.fail(f"corpora not found at {CORPORA}: set STELLA_CORPORA")
    return CORPORA


def _pg_url_or_fail() -> str:
    url = os.environ.get("STELLA_TEST_PG_URL")
    if not url:
        missing("PostgreSQL (STELLA_TEST_PG_URL, which .ci/run sets)")
    return url


def _reset_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, and the CI PostgreSQL (schema reset)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stella.db'}"
    url = _pg_url_or_fail()
    _reset_pg(url)
    return url


@pytest.fixture
def pg_url() -> str:
    url = _pg_url_or_fail()
    _reset_pg(url)
    return url
