"""VEX consensus: which statements apply, and how they reduce."""

from __future__ import annotations

import itertools

from export_center.model import VexStatement
from export_center.policy.consensus import (
    ProviderTrust,
    VexIndex,
    applies,
    reduce_statements,
)

SUBJECT = "pkg:golang/github.com/rancher/rancher@v2.9.0"
COMPONENT = "pkg:golang/github.com/aws/aws-sdk-go@v1.49.16"


def st(provider: str, status: str, *, ts: str | None = None, **kw: object) -> VexStatement:
    fields: dict[str, object] = {
        "vulnerability": "CVE-2020-8911",
        "product": "pkg:golang/github.com/rancher/rancher",
        "subcomponents": (COMPONENT,),
        "justification": "vulnerable_code_not_present" if status == "not_affected" else None,
    }
    fields.update(kw)
    return VexStatement(provider=provider, status=status, timestamp=ts, **fields)  # type: ignore[arg-type]


def test_statement_applies_to_subject_and_subcomponent() -> None:
    ok = st("p", "not_affected")
    assert applies(ok, subject=SUBJECT, component_purl=COMPONENT)
    # Another version of the component is another component.
    assert not applies(ok, subject=SUBJECT, component_purl=COMPONENT.replace("16", "17"))
    # Another product's SBOM is not covered.
    assert not applies(ok, subject="pkg:golang/example.com/x@v1", component_purl=COMPONENT)
    # A versioned product applies to that version only; Go's "v" prefix is not significant.
    versioned = st("p", "not_affected", product="pkg:golang/github.com/rancher/rancher@2.9.0")
    assert applies(versioned, subject=SUBJECT, component_purl=COMPONENT)
    assert not applies(
        versioned, subject=SUBJECT.replace("2.9.0", "2.9.1"), component_purl=COMPONENT
    )
    # A subcomponent without version names every version.
    loose = st("p", "not_affected", subcomponents=("pkg:golang/github.com/aws/aws-sdk-go",))
    assert applies(loose, subject=SUBJECT, component_purl=COMPONENT)
    # Build metadata is part of a release's identity.
    rke = st("p", "not_affected", product="pkg:golang/github.com/rancher/rke2@v1.27.16%2Brke2r2")
    assert applies(
        rke,
        subject="pkg:golang/github.com/rancher/rke2@v1.27.16%2Brke2r2",
        component_purl=COMPONENT,
    )
    assert not applies(
        rke,
        subject="pkg:golang/github.com/rancher/rke2@v1.27.16%2Brke2r1",
        component_purl=COMPONENT,
    )


def test_product_level_statement_covers_every_component() -> None:
    whole = st("p", "not_affected", subcomponents=())
    assert applies(whole, subject=SUBJECT, component_purl=COMPONENT)
    assert applies(whole, subject=SUBJECT, component_purl="pkg:npm/left-pad@1.0.0")


def test_statement_about_the_component_itself() -> None:
    direct = st("p", "not_affected", product=COMPONENT, subcomponents=())
    assert applies(direct, subject="anything", component_purl=COMPONENT)
    qualified = st("p", "fixed", product=COMPONENT + "?type=module", subcomponents=())
    assert not applies(qualified, subject="x", component_purl=COMPONENT)  # qualifier not present
    assert applies(qualified, subject="x", component_purl=COMPONENT + "?type=module&os=linux")


def test_bom_link_and_bom_ref() -> None:
    link = st(
        "p", "not_affected", product="urn:cdx:3e67/1#pkg:npm/left-pad@1.0.0", subcomponents=()
    )
    assert applies(link, subject="x", component_purl="pkg:npm/left-pad@1.0.0")
    ref = st("p", "not_affected", product="acme-product", subcomponents=("component-7",))
    assert applies(
        ref, subject="acme-product", component_purl="pkg:npm/x@1", component_ref="component-7"
    )
    assert not applies(
        ref, subject="acme-product", component_purl="pkg:npm/x@1", component_ref="c-8"
    )


def test_index_finds_statements_by_alias_and_dedups() -> None:
    a = st("p", "not_affected", aliases=("GO-2022-0646",))
    index = VexIndex([a, a, st("q", "affected", vulnerability="CVE-1999-0001")])
    assert index.count == 2
    assert index.about(["go-2022-0646"]) == [a]
    assert index.about(["GHSA-x", "CVE-2020-8911"]) == [a]


def test_trust_order_wins_and_conflict_is_recorded() -> None:
    vendor, scanner = st("vendor", "not_affected"), st("scanner", "affected")
    c = reduce_statements([scanner, vendor], ProviderTrust(order=("vendor", "scanner")))
    assert c is not None
    assert (c.status, c.provider, c.justification, c.conflict) == (
        "not_affected",
        "vendor",
        "vulnerable_code_not_present",
        True,
    )
    roles = {x.statement.provider: (x.role, x.weight) for x in c.contributions}
    assert roles == {"vendor": ("winner", 2), "scanner": ("conflicts", 1)}


def test_unknown_providers_get_the_default_weight_or_are_ignored() -> None:
    listed, unknown = st("vendor", "not_affected"), st("someone", "affected")
    c = reduce_statements([listed, unknown], ProviderTrust(order=("vendor",)))
    assert c is not None and c.status == "not_affected"
    c = reduce_statements([listed, unknown], ProviderTrust(order=("vendor",), default_weight=5))
    assert c is not None and c.status == "affected"
    c = reduce_statements([listed, unknown], ProviderTrust(order=("vendor",), ignore_unknown=True))
    assert c is not None and not c.conflict
    assert {x.statement.provider: x.role for x in c.contributions}["someone"] == "ignored"
    assert reduce_statements([unknown], ProviderTrust(ignore_unknown=True)) is None


def test_ties_go_to_status_precedence_then_time_then_name() -> None:
    a, b = st("a", "not_affected"), st("b", "affected")
    c = reduce_statements([a, b], ProviderTrust())
    assert c is not None and c.status == "affected"  # default: the finding stays visible
    custom = ProviderTrust(
        status_precedence=("fixed", "not_affected", "affected", "under_investigation")
    )
    c = reduce_statements([a, b], custom)
    assert c is not None and c.status == "not_affected"
    old, new = (
        st("a", "fixed", ts="2023-01-01T00:00:00Z"),
        st("b", "fixed", ts="2024-01-01T00:00:00Z"),
    )
    c = reduce_statements([old, new], ProviderTrust())
    assert c is not None and c.provider == "b" and not c.conflict
    c = reduce_statements([st("zed", "fixed"), st("abe", "fixed")], ProviderTrust())
    assert c is not None and c.provider == "abe"


def test_a_providers_latest_statement_supersedes_its_older_ones() -> None:
    first = st("vendor", "under_investigation", ts="2023-01-01T00:00:00Z")
    later = st("vendor", "not_affected", ts="2023-06-01T00:00:00+00:00")
    c = reduce_statements([later, first], ProviderTrust())
    assert c is not None and c.status == "not_affected" and not c.conflict
    assert {x.statement.status: x.role for x in c.contributions} == {
        "under_investigation": "superseded",
        "not_affected": "winner",
    }


def test_reduction_is_independent_of_input_order() -> None:
    statements = [
        st("a", "not_affected", ts="2024-01-01T00:00:00Z"),
        st("b", "affected", ts="2024-02-01T00:00:00Z"),
        st("b", "fixed", ts="2024-03-01T00:00:00Z"),
        st("c", "under_investigation"),
        st("c", "under_investigation", justification="x"),
    ]
    trust = ProviderTrust(order=("b", "a"))
    results = {
        repr(reduce_statements(list(p), trust).to_json())  # type: ignore[union-attr]
        for p in itertools.permutations(statements)
    }
    assert len(results) == 1
