"""Evidence store semantics on SQLite and PostgreSQL: revisions, change log, as-of, tenants."""

from __future__ import annotations

import hashlib

import pytest

from export_center.errors import BadInputError, NotFoundError
from export_center.model import ParsedRecord
from export_center.store.repository import EvidenceStore
from support.records import osv_record


def _adv(upstream: str, body: bytes, *, withdrawn: bool = False) -> ParsedRecord:
    return osv_record(
        upstream,
        body,
        aliases=("CVE-2026-1",),
        withdrawn="2026-01-01T00:00:00Z" if withdrawn else None,
    )


def _put(store: EvidenceStore, tenant: str, rec: ParsedRecord, source: str = "src") -> str:
    with store.session() as s:
        t = store.lock_tenant(s, tenant)
        out = store.put(s, t, source, rec)
        s.commit()
    return out.outcome


def test_revisions_change_log_and_as_of(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    assert _put(store, "acme", _adv("A-1", b'{"v":1}')) == "inserted"
    assert _put(store, "acme", _adv("A-1", b'{"v":1}')) == "unchanged"
    assert _put(store, "acme", _adv("B-1", b'{"b":1}')) == "inserted"
    assert store.current_sequence("acme") == 2
    assert _put(store, "acme", _adv("A-1", b'{"v":2}')) == "revision"
    assert _put(store, "acme", _adv("A-1", b'{"v":3}', withdrawn=True)) == "withdrawal"
    assert store.current_sequence("acme") == 4

    # Raw bytes kept exactly, with their digest; revisions linked by `supersedes`.
    r3 = store.get_raw("acme", "acme:src:A-1:3")
    assert r3.content == b'{"v":3}'
    assert r3.digest == "sha256:" + hashlib.sha256(b'{"v":3}').hexdigest()
    assert r3.supersedes == "acme:src:A-1:2"
    assert r3.withdrawn
    assert store.get_raw("acme", "A-1").observation_id == "acme:src:A-1:3"

    # As of sequence 2 the first revision is visible; as of 3 the second.
    at2 = {r.observation_id for r in store.iter_raw("acme", 2)}
    assert at2 == {"acme:src:A-1:1", "acme:src:B-1:1"}
    at3 = {r.observation_id for r in store.iter_raw("acme", 3)}
    assert at3 == {"acme:src:A-1:2", "acme:src:B-1:1"}
    assert [r.observation_id for r in store.iter_raw("acme", 4, include_withdrawn=False)] == [
        "acme:src:B-1:1"
    ]
    norm = list(store.iter_normalized("acme", 4))
    assert [n.record_key for n in norm] == ["A-1", "B-1"]
    assert norm[0].withdrawn

    changes = list(store.changes("acme", 1, 4))
    assert [(c.seq, c.kind) for c in changes] == [(2, "insert"), (3, "revision"), (4, "withdrawal")]
    assert changes[1].previous_observation_id == "acme:src:A-1:1"
    assert store.counts("acme", 4) == {"advisory": 2}


def test_tenants_are_isolated(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    _put(store, "acme", _adv("A-1", b"1"))
    _put(store, "other", _adv("Z-9", b"2"))
    assert [r.upstream_id for r in store.iter_raw("acme", 10)] == ["A-1"]
    assert [r.upstream_id for r in store.iter_raw("other", 10)] == ["Z-9"]
    assert next(iter(store.changes("acme", 0, 10))).observation_id == "acme:src:A-1:1"
    with pytest.raises(NotFoundError, match="Z-9"):
        store.get_raw("acme", "Z-9")
    with pytest.raises(NotFoundError):
        store.get_raw("acme", "other:src:Z-9:1")
    assert {r.tenant for r in store.stats("acme")} == {"acme"}


def test_bad_names_are_refused(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    with pytest.raises(BadInputError, match="invalid tenant"):
        _put(store, "Bad Tenant", _adv("A", b"x"))
    with pytest.raises(BadInputError, match="invalid source"):
        _put(store, "acme", _adv("A", b"x"), source="a:b")
