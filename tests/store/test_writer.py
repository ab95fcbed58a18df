"""The batched ingest writer on SQLite and PostgreSQL: the tenant lock is held for a whole
transaction (also after a commit), two concurrent ingests never interleave inside a batch, and a
record the database refuses is refused alone while its neighbours are stored."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from export_center.ingest import pipeline
from export_center.ingest.pipeline import ingest_paths
from export_center.store.models import ChangeLogEntry, RawRecord, Tenant
from export_center.store.repository import EvidenceStore
from support.records import osv_record


def _can_lock(url: str, tenant: str) -> bool:
    """Whether another connection can take the tenant's write lock right now (no waiting)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(parsed.database), timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            assert "locked" in str(e)
            return False
        finally:
            conn.close()
        return True
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '200ms'"))
            try:
                # As the writer does: an uncommitted new tenant row is not visible to a
                # SELECT, but an insert of the same name waits for it.
                conn.execute(
                    text(
                        "INSERT INTO tenants (name, last_seq) VALUES (:t, 0) ON CONFLICT DO NOTHING"
                    ),
                    {"t": tenant},
                )
                conn.execute(select(Tenant.last_seq).where(Tenant.name == tenant).with_for_update())
            except OperationalError as e:
                assert "lock" in str(e)
                return False
            conn.rollback()
        return True
    finally:
        engine.dispose()


def test_the_tenant_lock_is_held_until_commit_and_again_after_it(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    with store.session() as s:
        cursor = store.lock_tenant(s, "acme")
        store.put(s, cursor, "src", osv_record("A-1", b"a1"))
        assert not _can_lock(db_url, "acme")
        store.put(s, cursor, "src", osv_record("A-2", b"a2"))
        assert not _can_lock(db_url, "acme")
        s.commit()
        assert _can_lock(db_url, "acme")
        # The second transaction of the same session locks again (pysqlite's legacy mode did
        # not: its SELECT opened no transaction, so records were committed one by one).
        cursor = store.lock_tenant(s, "acme")
        assert not _can_lock(db_url, "acme")
        store.put(s, cursor, "src", osv_record("A-3", b"a3"))
        assert not _can_lock(db_url, "acme")
        s.rollback()
    assert store.current_sequence("acme") == 2
    assert [r.upstream_id for r in store.iter_raw("acme", 10)] == ["A-1", "A-2"]


def _osv_folder(folder: Path, prefix: str, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        doc = {"id": f"{prefix}-{i:04d}", "modified": "2026-01-01T00:00:00Z", "summary": prefix}
        (folder / f"{prefix}-{i:04d}.json").write_bytes(orjson.dumps(doc))
    return folder


@pytest.mark.slow
def test_two_concurrent_ingests_never_interleave_inside_a_batch(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "BATCH_RECORDS", 100)
    sizes = {"alpha": 730, "beta": 660}
    folders = {name: _osv_folder(tmp_path / name, name.upper(), n) for name, n in sizes.items()}
    EvidenceStore.open(db_url)  # migrate once, before the two writers race
    start = threading.Barrier(2)
    reports = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            store = EvidenceStore.open(db_url, run_migrations=False)
            start.wait()
            reports[name] = ingest_paths(
                store, [folders[name]], source=name, tenant="acme", max_bytes=1 << 20
            )
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(name,)) for name in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name, n in sizes.items():
        assert reports[name].refused == [] and reports[name].inserted == n

    store = EvidenceStore.open(db_url)
    with store.engine.connect() as conn:
        log = conn.execute(
            select(ChangeLogEntry.seq, RawRecord.source, RawRecord.upstream_id)
            .join(RawRecord, RawRecord.id == ChangeLogEntry.raw_id)
            .where(ChangeLogEntry.tenant == "acme")
            .order_by(ChangeLogEntry.seq)
        ).all()
    total = sum(sizes.values())
    assert [seq for seq, _, _ in log] == list(range(1, total + 1))  # gap-free
    assert store.current_sequence("acme") == total
    # Files are read in name order, 100 records a batch: record i of a source is in batch
    # i // 100. Each batch's sequences must be contiguous: a gap would mean the other ingest
    # wrote while the batch's transaction was open.
    batches: dict[tuple[str, int], list[int]] = {}
    for seq, source, upstream in log:
        index = int(upstream.rsplit("-", 1)[1])
        batches.setdefault((source, index // 100), []).append(seq)
    assert len(batches) == 8 + 7
    for key, seqs in batches.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), key


def _poison(db_url: str) -> None:
    """A real database refusal for one record: a trigger rejects upstream id ``POISON``."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON raw_records "
                    "WHEN NEW.upstream_id = 'POISON' "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned record'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.upstream_id = 'POISON' THEN RAISE EXCEPTION 'poisoned record' "
                    "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON raw_records "
                    "FOR EACH ROW EXECUTE FUNCTION poison()"
                )
            )
    engine.dispose()


def test_a_record_the_database_refuses_is_refused_alone(db_url: str, tmp_path: Path) -> None:
    store = EvidenceStore.open(db_url)
    _poison(db_url)
    folder = tmp_path / "in"
    folder.mkdir()
    ids = ["A-1", "A-2", "POISON", "A-3", "A-4"]
    for i, upstream in enumerate(ids):
        doc = {"id": upstream, "modified": "2026-01-01T00:00:00Z"}
        (folder / f"{i}.json").write_bytes(orjson.dumps(doc))
    report = ingest_paths(store, [folder], source="src", tenant="acme", max_bytes=1 << 20)

    assert report.inserted == 4
    (refusal,) = report.refused
    assert refusal.where == str(folder / "2.json")
    assert "store rejected record POISON" in refusal.reason
    assert "poisoned record" in refusal.reason
    assert "\n" not in refusal.reason
    # The batch failed as a whole and was retried record by record: 1 + 5 transactions, of
    # which the poisoned one rolled back.
    assert report.batches == 4
    stored = [r.upstream_id for r in store.iter_raw("acme", 100)]
    assert stored == ["A-1", "A-2", "A-3", "A-4"]
    assert [c.seq for c in store.changes("acme", 0, 100)] == [1, 2, 3, 4]
    assert store.current_sequence("acme") == 4
