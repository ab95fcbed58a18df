"""OpenVEX, CSAF and CycloneDX VEX from the real corpora. Expected values were read from the
files with jq."""

from __future__ import annotations

import orjson
import pytest

from export_center.model import Advisory, ParsedRecord, Sbom, Severity, VexDocument, VexStatement
from support.ingest import ReadFn, only_record, only_refusal, read_bytes


def vex(rec: ParsedRecord) -> VexDocument:
    assert rec.doc_type == "vex"
    assert isinstance(rec.normalized, VexDocument)
    return rec.normalized


def find(doc: VexDocument, vulnerability: str, product: str) -> VexStatement:
    (st,) = [s for s in doc.statements if s.vulnerability == vulnerability and s.product == product]
    return st


# ---- OpenVEX ----------------------------------------------------------------------------------


def test_vexhub_openvex_statement(read_corpus: ReadFn) -> None:
    rec = only_record(
        read_corpus("aquasecurity-vexhub/pkg/golang/github.com/rancher/rke2/scan.openvex.json")
    )
    doc = vex(rec)
    assert rec.format == "openvex" and rec.media_type == "application/openvex+json"
    assert (
        rec.upstream_id
        == doc.id
        == (
            "https://openvex.dev/docs/public/vex-7b43dded2d7b4f9eed6622e09265435c5679f281728ddac987f274dbc8b368bc"
        )
    )
    assert doc.provider == "Rancher Security team"
    assert len(doc.statements) == 1666  # one product per statement in this file
    first = doc.statements[0]
    assert first == VexStatement(
        vulnerability="CVE-2020-8911",
        product="pkg:golang/github.com/rancher/rke2",
        status="not_affected",
        provider="Rancher Security team",
        aliases=("GHSA-f5pg-7wfw-84q9", "GO-2022-0646"),
        subcomponents=("pkg:golang/github.com/aws/aws-sdk-go@v1.51.21",),
        justification="vulnerable_code_not_present",
        impact_statement="Govulncheck determined that the vulnerable code isn't called",
        timestamp="2026-03-18T06:28:45Z",  # inherited from the document
    )


def test_trivy_oci_vex_products_and_subcomponents(read_corpus: ReadFn) -> None:
    doc = vex(only_record(read_corpus("aquasecurity-trivy/.vex/oci.openvex.json")))
    st = find(doc, "CVE-2023-42363", "pkg:oci/trivy?repository_url=ghcr.io/aquasecurity/trivy")
    assert st.subcomponents == (
        "pkg:apk/alpine/busybox",
        "pkg:apk/alpine/busybox-binsh",
        "pkg:apk/alpine/ssl_client",
    )
    assert st.justification == "vulnerable_code_cannot_be_controlled_by_adversary"
    assert st.impact_statement == "awk is not used"


def test_openvex_v001_string_shapes(read_corpus: ReadFn) -> None:
    doc = vex(only_record(read_corpus("openvex-vexctl/pkg/ctl/testdata/v001-1.vex.json")))
    assert doc.id == "my-vexdoc2" and doc.timestamp is None
    (st,) = doc.statements
    assert (st.vulnerability, st.product, st.status, st.timestamp) == (
        "CVE-1234-5678",
        "pkg:apk/wolfi/bash@1.0.0",
        "under_investigation",
        "2022-12-22T16:36:43-05:00",
    )


def test_openvex_vulnerability_given_by_at_id(read_corpus: ReadFn) -> None:
    rel = (
        "aquasecurity-trivy/pkg/vex/testdata/single-repo/vex/repositories/default/0.1/bash-vex.json"
    )
    (st,) = vex(only_record(read_corpus(rel))).statements
    assert (st.vulnerability, st.product) == ("CVE-2022-3715", "pkg:deb/debian/bash@5.3")


def test_openvex_statement_without_products_is_refused(read_corpus: ReadFn) -> None:
    refusal = only_refusal(read_corpus("openvex-vexctl/pkg/ctl/testdata/test.vex.json"))
    assert refusal.reason.startswith(
        "invalid OpenVEX document: statements[0].products: missing: the statement names no product"
    )


def test_openvex_without_id_gets_a_content_id(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("aquasecurity-trivy/pkg/vex/testdata/openvex-nested.json"))
    assert rec.upstream_id.startswith("sha256:") and len(rec.upstream_id) == 71
    (st,) = vex(rec).statements
    assert st.subcomponents == ("pkg:golang/github.com/aquasecurity/go-transitive@v4.0.0",)


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        (
            {"vulnerability": {"name": "CVE-1"}, "products": ["p"], "status": "fine"},
            "statements[0].status: 'fine' is not one of",
        ),
        (
            {
                "vulnerability": {"name": "CVE-1"},
                "products": ["p"],
                "status": "not_affected",
                "justification": "code_not_present",
            },
            "statements[0].justification: 'code_not_present' is not an OpenVEX justification",
        ),
        (
            {"vulnerability": {}, "products": ["p"], "status": "fixed"},
            "statements[0].vulnerability.name: missing",
        ),
        (
            {"vulnerability": "CVE-1", "products": [{}], "status": "fixed"},
            "statements[0].products[0]: has no @id",
        ),
    ],
)
def test_openvex_violations_name_the_field(statement: dict[str, object], reason: str) -> None:
    doc = {"@context": "https://openvex.dev/ns/v0.2.0", "author": "a", "statements": [statement]}
    refusal = only_refusal(read_bytes(orjson.dumps(doc), "v.json"))
    assert refusal.reason.startswith(f"invalid OpenVEX document: {reason}")


def test_openvex_unknown_version_is_refused() -> None:
    doc = {"@context": "https://openvex.dev/ns/v9.9.9", "author": "a", "statements": []}
    refusal = only_refusal(read_bytes(orjson.dumps(doc), "v.json"))
    assert "unsupported OpenVEX version" in refusal.reason


# ---- CSAF -------------------------------------------------------------------------------------


def test_oasis_csaf_vex_flag_and_impact(read_corpus: ReadFn) -> None:
    rec = only_record(
        read_corpus("oasis-tcs-csaf/csaf_2.0/examples/csaf/csaf_vex/sec-vex-2022-0001.json")
    )
    doc = vex(rec)
    assert (rec.upstream_id, rec.format, rec.media_type) == (
        "SEC-VEX-2022-0001",
        "csaf",
        "application/csaf+json",
    )
    assert doc.provider == "Secvisogram"
    assert [s.vulnerability for s in doc.statements] == [
        "CVE-2021-44228",
        "CVE-2021-45046",
        "CVE-2021-45105",
    ]
    st = doc.statements[0]
    assert (st.product, st.status, st.justification) == (
        "Secvisogram <=1.14.0",
        "not_affected",
        "component_not_present",
    )
    assert st.impact_statement == "Secvisogram is written in JavaScript. No Java is included."


def test_ctrliq_csaf_vex_relationship_products(read_corpus: ReadFn) -> None:
    doc = vex(only_record(read_corpus("ctrliq-advisories/csaf/vex/cve/2026/cve-2026-12617.json")))
    assert (doc.id, doc.provider) == ("CVE-2026-12617", "Ctrl IQ, Inc")
    centos = "cpe:2.3:o:ciq:centos_linux_bridge:7.9:*:*:*:*:*:*:*"
    rocky = "cpe:2.3:o:ciq:rocky_linux_from_ciq_lts:8.6:*:*:*:*:*:*:*"
    # "cbr-7.9:bind" is "bind as a component of CIQ Bridge for CentOS 7.9".
    (bridge,) = [s for s in doc.statements if s.product == centos]
    assert bridge.subcomponents == ("bind",)
    assert (bridge.status, bridge.justification) == (
        "not_affected",
        "vulnerable_code_cannot_be_controlled_by_adversary",
    )
    lts = [s for s in doc.statements if s.product == rocky]
    assert [s.subcomponents for s in lts] == [("bind",), ("bind9.16",)]
    assert {s.justification for s in lts} == {"component_not_present"}


def test_csaf_relationship_with_purls(read_corpus: ReadFn) -> None:
    (st,) = vex(
        only_record(read_corpus("aquasecurity-trivy/pkg/vex/testdata/csaf-relationships.json"))
    ).statements
    assert st.product == "pkg:golang/github.com/aquasecurity/go-direct1@v2.0.0"
    assert st.subcomponents == ("pkg:golang/github.com/aquasecurity/go-transitive@v4.0.0",)
    assert st.justification == "vulnerable_code_cannot_be_controlled_by_adversary"


def test_csaf_all_statuses(read_corpus: ReadFn) -> None:
    doc = vex(
        only_record(
            read_corpus("oasis-tcs-csaf/csaf_2.0/examples/csaf/csaf_vex/2022-evd-uc-07-001.json")
        )
    )
    by_product = {s.product: s for s in doc.statements}
    assert by_product["Example Company JKL 5.1"].status == "fixed"
    affected = by_product["Example Company ABC 2.4"]
    assert (affected.status, affected.action_statement) == (
        "affected",
        "Update to version 4.2 or later.",
    )
    assert by_product["Example Company JKL >=1.0|<=4.4"].impact_statement == (
        "Log4j was not included in those versions at all."
    )


def test_csaf_security_advisory(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("oasis-tcs-csaf/csaf_2.0/examples/csaf/rhsa-2021_5186.json"))
    assert (rec.doc_type, rec.upstream_id) == ("advisory", "RHSA-2021:5186")
    assert isinstance(rec.normalized, Advisory)
    adv = rec.normalized
    assert adv.aliases == ("CVE-2021-4104", "CVE-2021-4125")
    assert (
        adv.summary
        == "Red Hat Security Advisory: OpenShift Container Platform 4.6.52 security update"
    )
    assert adv.severity_label == "Critical"
    assert adv.cwe_ids == ("CWE-20",)
    assert (adv.published, adv.modified) == ("2021-12-16T22:34:00Z", "2021-12-16T22:34:00Z")
    assert adv.affected == ()  # products are identified by CPE only
    assert len(adv.references) <= 14 and adv.references


def test_cisa_ics_advisory_scores(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("cisagov-csaf/csaf_files/OT/white/2024/icsa-24-004-01.json"))
    assert isinstance(rec.normalized, Advisory)
    assert rec.normalized.aliases == ("CVE-2023-38545", "CVE-2023-3935")
    assert rec.normalized.severities == (
        Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
    )
    assert rec.normalized.cwe_ids == ("CWE-787",)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            {"category": "csaf_vex", "csaf_version": "2.1"},
            "document.csaf_version: '2.1' is not supported",
        ),
        ({"csaf_version": "2.0"}, "document.category: missing (required)"),
        ({"csaf_version": "2.0", "category": "csaf_vex"}, "document.publisher: missing (required)"),
        (
            {
                "csaf_version": "2.0",
                "category": "csaf_vex",
                "publisher": {"name": "P"},
                "tracking": {},
            },
            "document.tracking.id: missing (required)",
        ),
        (
            {"csaf_version": "2.0", "category": "csaf_made_up"},
            "document.category: unknown CSAF profile",
        ),
    ],
)
def test_csaf_required_fields(document: dict[str, object], reason: str) -> None:
    refusal = only_refusal(read_bytes(orjson.dumps({"document": document}), "c.json"))
    assert refusal.reason.startswith(f"invalid CSAF document: {reason}")


# ---- CycloneDX VEX ----------------------------------------------------------------------------


def test_cyclonedx_standalone_vex(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("cyclonedx-bom-examples/VEX/Use-Cases/Case-1/vex.json"))
    doc = vex(rec)
    assert rec.format == "cyclonedx" and rec.upstream_id == "Acme Product@2.4.0"
    (st,) = doc.statements
    assert (st.vulnerability, st.product, st.status, st.justification) == (
        "CVE-2020-25649",
        "Acme Product@2.4.0",  # affects[].ref "acme-product" is the metadata component
        "not_affected",
        "vulnerable_code_not_in_execute_path",  # code_not_reachable
    )
    assert st.impact_statement and st.impact_statement.startswith("Automated dataflow analysis")
    assert st.timestamp == "2022-01-13T00:00:00Z"


def test_cyclonedx_bom_link_to_purl(read_corpus: ReadFn) -> None:
    doc = vex(only_record(read_corpus("aquasecurity-trivy/pkg/vex/testdata/cyclonedx.json")))
    st = doc.statements[0]
    assert (st.product, st.status) == (
        "pkg:maven/org.springframework.boot/spring-boot@2.6.0",
        "not_affected",
    )


def test_cyclonedx_version_entries(read_corpus: ReadFn) -> None:
    doc = vex(only_record(read_corpus("cyclonedx-bom-examples/VEX/CISA-Use-Cases/Case-8/vex.json")))
    link = "urn:cdx:cbb2cd68-2857-43b8-a10b-e8c03d277d18/1#product-ABC"
    assert find(doc, "CVE-2021-44228", f"{link}@2.4").status == "affected"
    assert find(doc, "CVE-2021-44228", f"{link}@2.5").status == "not_affected"
    # A range never collapses into the bare product.
    assert find(doc, "CVE-2021-44228", f"{link} vers:generic/>=1.0|<=2.3").status == "not_affected"
    assert not [s for s in doc.statements if s.product == link]


def test_cyclonedx_vex_stating_nothing_is_refused(read_corpus: ReadFn) -> None:
    refusal = only_refusal(read_corpus("cyclonedx-bom-examples/VEX/Use-Cases/Case-7/vex.json"))
    assert "none has both analysis.state and affects[]" in refusal.reason


def test_cyclonedx_sbom_with_embedded_vex() -> None:
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:1",
        "components": [{"name": "a", "version": "1", "purl": "pkg:npm/a@1", "bom-ref": "r1"}],
        "vulnerabilities": [
            {"id": "CVE-1", "analysis": {"state": "exploitable"}, "affects": [{"ref": "r1"}]},
            {"id": "CVE-2", "affects": [{"ref": "r1"}]},  # a finding, no analysis
            {
                "id": "CVE-3",
                "analysis": {"state": "not_affected", "justification": "requires_environment"},
                "affects": [{"ref": "urn:cdx:1/1#r1"}],
            },
        ],
    }
    rec = only_record(read_bytes(orjson.dumps(bom), "b.json"))
    assert rec.doc_type == "sbom" and isinstance(rec.normalized, Sbom)
    first, third = rec.normalized.vex
    assert (first.vulnerability, first.product, first.status) == (
        "CVE-1",
        "pkg:npm/a@1",
        "affected",
    )
    assert (third.product, third.justification, third.impact_statement) == (
        "pkg:npm/a@1",  # a BOM-link into this very BOM resolves locally
        "vulnerable_code_cannot_be_controlled_by_adversary",
        "CycloneDX justification: requires_environment",
    )
