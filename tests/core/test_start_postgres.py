"""scripts/start-postgres.sh on a port and data directory of its own, then `stop`: what .ci/run
does around `make test` (its EXIT trap), so that a CI run leaves no cluster behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.tools import missing

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "start-postgres.sh"

pytestmark = pytest.mark.postgres


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def pgdata() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are private to this user, and the cluster
    # belongs to the postgres user when the tests run as root.
    parent = Path(tempfile.mkdtemp(prefix="stella-pg-test-"))
    parent.chmod(0o755)
    yield parent / "pg"
    shutil.rmtree(parent, ignore_errors=True)


def test_start_then_stop_on_a_port_of_its_own(pgdata: Path) -> None:
    if not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        missing("PostgreSQL server binaries (Debian package postgresql)")
    port = _free_port()
    env = {**os.environ, "PGDATA": str(pgdata), "PGPORT": str(port)}
    started = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.splitlines()[-1] == (
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/stella_test"
        )
        assert _listening(port)
    finally:
        stopped = subprocess.run(
            [str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0, stopped.stderr
    assert not _listening(port)
    # A second stop (the trap after a failed start, say) is harmless.
    again = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
    assert again.returncode == 0
