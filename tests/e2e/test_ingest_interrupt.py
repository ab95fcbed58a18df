"""Ctrl-C during a real `stella ingest`: one line, exit 130, a consistent store, and a re-run
that completes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from export_center.store.models import ChangeLogEntry, NormalizedRecord, RawRecord, Tenant

pytestmark = pytest.mark.slow

STELLA = str(Path(sys.executable).with_name("stella"))
FEEDS = ("golang-vulndb/data/osv", "pypa-advisory-database/vulns", "rustsec-advisory-db-osv/crates")
TOTAL = 4291 + 2661 + 1206  # SOURCES.md: the three feeds' advisories


def _state(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            seqs = [s for (s,) in conn.execute(select(ChangeLogEntry.seq).order_by("seq"))]
            last = conn.execute(select(Tenant.last_seq).where(Tenant.name == "default")).scalar()
            raw = conn.execute(select(func.count()).select_from(RawRecord)).scalar_one()
            norm = conn.execute(select(func.count()).select_from(NormalizedRecord)).scalar_one()
            orphans = conn.execute(
                select(func.count())
                .select_from(RawRecord)
                .outerjoin(NormalizedRecord, NormalizedRecord.raw_id == RawRecord.id)
                .where(NormalizedRecord.id.is_(None))
            ).scalar_one()
    finally:
        engine.dispose()
    return {"seqs": seqs, "last": last, "raw": raw, "norm": norm, "orphans": orphans}


def _committed(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ChangeLogEntry)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("to", ["process", "process group"])
def test_sigint_mid_ingest_leaves_a_consistent_store_and_a_rerun_completes(
    corpora: Path, tmp_path: Path, db_url: str, to: str
) -> None:
    """``process group``: as Ctrl-C in a terminal, the reading processes get it too."""
    env = {**os.environ, "STELLA_DATA_DIR": str(tmp_path / "data"), "STELLA_DATABASE_URL": db_url}
    args = [STELLA, "ingest", *(str(corpora / f) for f in FEEDS), "--source", "osv"]
    # Migrations first, so that the poll below can read the tables while ingest runs.
    subprocess.run([STELLA, "evidence", "stats"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while _committed(db_url) == 0:
        assert proc.poll() is None, "ingest ended before the first batch was seen"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if to == "process group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("interrupted: ")
    assert "run the same command again to finish" in lines[0]
    assert b"Traceback" not in err

    state = _state(db_url)
    stored = state["raw"]
    assert isinstance(stored, int) and 0 < stored < TOTAL
    assert state["seqs"] == list(range(1, stored + 1))  # gap-free, one change per record
    assert state["last"] == stored
    assert state["norm"] == stored and state["orphans"] == 0

    rerun = subprocess.run([*args, "--format", "json"], env=env, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["unchanged"] == stored
    assert summary["inserted"] == TOTAL - stored
    assert summary["refused"] == []
    final = _state(db_url)
    assert final["seqs"] == list(range(1, TOTAL + 1))
    assert final["raw"] == final["norm"] == final["last"] == TOTAL
