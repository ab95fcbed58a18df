"""The identity rule (store/identity.py) on SQLite and PostgreSQL: documents that share an id but
are about different subjects are kept apart; a re-published document is a revision."""

from __future__ import annotations

import pytest

from export_center.model import Component, ParsedRecord, Sbom, VexDocument, VexStatement
from export_center.store.identity import qualified_upstream_id, versionless
from export_center.store.repository import EvidenceStore, IngestOutcome
from support.records import osv_record


def _vex(doc_id: str, products: tuple[str, ...], body: bytes, fmt: str = "openvex") -> ParsedRecord:
    statements = tuple(
        VexStatement("CVE-2026-1", p, "not_affected", "Provider A", justification=None)
        for p in products
    )
    return ParsedRecord(
        upstream_id=doc_id,
        doc_type="vex",
        format=fmt,
        media_type="application/openvex+json",
        content=body,
        normalized=VexDocument(doc_id, fmt, "Provider A", statements),
    )


def _sbom(serial: str, subject: str, body: bytes) -> ParsedRecord:
    return ParsedRecord(
        upstream_id=serial,
        doc_type="sbom",
        format="cyclonedx",
        media_type="application/vnd.cyclonedx+json",
        content=body,
        normalized=Sbom(subject, "cyclonedx", "1.5", None, (Component("c", "1"),)),
    )


def _put(store: EvidenceStore, *records: ParsedRecord) -> list[IngestOutcome]:
    with store.session() as s:
        cursor = store.lock_tenant(s, "acme")
        out = [store.put(s, cursor, "src", r) for r in records]
        s.commit()
    return out


@pytest.mark.parametrize(
    ("product", "package"),
    [
        ("pkg:golang/github.com/rancher/webhook@v0.4.7", "pkg:golang/github.com/rancher/webhook"),
        ("pkg:golang/github.com/rancher/webhook", "pkg:golang/github.com/rancher/webhook"),
        ("pkg:npm/@angular/core@1.0.0?x=y#sub", "pkg:npm/@angular/core"),
        ("pkg:npm/@angular/core", "pkg:npm/@angular/core"),
        ("pkg:oci/trivy?repository_url=index.docker.io%2Faquasec%2Ftrivy", "pkg:oci/trivy"),
        ("cpe:2.3:a:vendor:product:1.0", "cpe:2.3:a:vendor:product:1.0"),
    ],
)
def test_versionless_products(product: str, package: str) -> None:
    assert versionless(product) == package


def test_qualified_ids_stay_within_the_key_column() -> None:
    assert qualified_upstream_id("X", "pkg:golang/a") == "X#pkg:golang/a"
    many = qualified_upstream_id("X", "pkg:golang/a\npkg:golang/b")
    assert many.startswith("X#sha256:") and len(many) == len("X#sha256:") + 16
    long_id = "u" * 500
    assert qualified_upstream_id(long_id, "pkg:golang/a").startswith("sha256:")
    assert len(qualified_upstream_id(long_id, "pkg:golang/a")) == 71


def test_vex_documents_sharing_an_id_about_other_products_are_kept_apart(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    a, b = "pkg:golang/example.org/a", "pkg:golang/example.org/b"
    first, second, again = _put(
        store,
        _vex("X", (a,), b"doc about a"),
        _vex("X", (b,), b"doc about b"),
        _vex("X", (b,), b"doc about b"),
    )
    assert (first.outcome, first.observation_id, first.shares_id_with) == (
        "inserted",
        "acme:src:X:1",
        None,
    )
    assert second.outcome == "inserted"
    assert second.observation_id == f"acme:src:X#{b}:1"
    assert second.shares_id_with == "acme:src:X:1"
    assert (again.outcome, again.observation_id) == ("unchanged", f"acme:src:X#{b}:1")

    # Re-published: a new release of the same product is a revision, of each document.
    rev_a, rev_b = _put(
        store,
        _vex("X", (a, f"{a}@v2"), b"doc about a, v2"),
        _vex("X", (f"{b}@v9",), b"doc about b, v9"),
    )
    assert (rev_a.outcome, rev_a.observation_id) == ("revision", "acme:src:X:2")
    assert (rev_b.outcome, rev_b.observation_id) == ("revision", f"acme:src:X#{b}:2")
    current = sorted(r.observation_id for r in store.iter_raw("acme", 100))
    assert current == ["acme:src:X#pkg:golang/example.org/b:2", "acme:src:X:2"]


def test_csaf_ids_are_told_apart_by_publisher_and_sboms_by_subject(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    csaf_a = _vex("RHSA-1", ("cpe:/o:redhat",), b"a", fmt="csaf")
    csaf_b = ParsedRecord(
        upstream_id="RHSA-1",
        doc_type="vex",
        format="csaf",
        media_type="application/csaf+json",
        content=b"b",
        normalized=VexDocument("RHSA-1", "csaf", "Other Vendor", csaf_a.normalized.statements),  # type: ignore[union-attr]
    )
    csaf_a2 = _vex("RHSA-1", ("cpe:/o:redhat", "cpe:/o:other"), b"a2", fmt="csaf")
    outs = _put(
        store,
        csaf_a,
        csaf_b,
        csaf_a2,
        _sbom("urn:uuid:1", "pkg:pypi/app@1", b"s1"),
        _sbom("urn:uuid:1", "pkg:pypi/app@2", b"s2"),
        _sbom("urn:uuid:1", "pkg:pypi/app@1", b"s1 again, edited"),
    )
    assert [(o.outcome, o.observation_id) for o in outs] == [
        ("inserted", "acme:src:RHSA-1:1"),
        ("inserted", "acme:src:RHSA-1#Other Vendor:1"),
        ("revision", "acme:src:RHSA-1:2"),  # same publisher, more products: a revision
        ("inserted", "acme:src:urn:uuid:1:1"),
        ("inserted", "acme:src:urn:uuid:1#pkg:pypi/app@2:1"),
        ("revision", "acme:src:urn:uuid:1:2"),
    ]


def test_advisories_are_identified_by_their_id_alone(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    first, second = _put(store, osv_record("GHSA-1", b"one"), osv_record("GHSA-1", b"two"))
    assert (first.outcome, second.outcome) == ("inserted", "revision")
    assert second.observation_id == "acme:src:GHSA-1:2"
    assert second.shares_id_with is None
