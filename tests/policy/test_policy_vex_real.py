"""Real VEX suppresses real findings: VEX Hub's OpenVEX, a CSAF VEX and a CycloneDX VEX."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from export_center.model import Advisory, AffectedPackage, RangeEvent, VersionRange
from export_center.policy.document import Policy, PolicyDocument, default_policy
from export_center.policy.evaluate import Finding, evaluate
from export_center.policy.matching import AdvisoryIndex
from export_center.policy.purls import parse_purl
from support.policy import AS_OF, one_sbom, sbom, statements

VEXHUB = "aquasecurity-vexhub/pkg/golang/github.com"


def _applies_to_subject(product: str, subject: str) -> bool:
    """Written out independently of the engine: same package, and no version or the same."""
    p, s = parse_purl(product), parse_purl(subject)
    assert p is not None and s is not None
    return p.key == s.key and (p.version is None or p.version == s.version)


@pytest.mark.parametrize(
    ("project", "subject"),
    [
        ("rancher/rancher", "pkg:golang/github.com/rancher/rancher@v2.8.6-rc3"),
        ("longhorn/longhorn-manager", "pkg:golang/github.com/longhorn/longhorn-manager@v1.7.3"),
        ("k3s-io/k3s", "pkg:golang/github.com/k3s-io/k3s@v1.32.11%2Bk3s1"),
    ],
)
def test_vexhub_openvex_turns_findings_not_affected(
    corpora: Path, corpus_index: AdvisoryIndex, project: str, subject: str
) -> None:
    sts = statements(corpora / VEXHUB / project / "scan.openvex.json")
    assert sts and all(s.status == "not_affected" for s in sts)
    mine = [s for s in sts if _applies_to_subject(s.product, subject)]
    # The SBOM of that release: the Go modules the statements name (VEX Hub's statements come
    # from scanning the release, so these are its real dependencies).
    components = sorted({c for s in mine for c in s.subcomponents if c.startswith("pkg:golang/")})
    bom = sbom(subject, components)

    before = evaluate([bom], corpus_index, [], default_policy(), AS_OF)
    after = evaluate([bom], corpus_index, sts, default_policy(), AS_OF)
    assert all(f.effective_status == "affected" for f in before.findings)
    assert [f.key for f in before.findings] == [f.key for f in after.findings]

    expected: dict[tuple[str, str], set[str]] = {}
    for f in before.findings:
        ids = {f.vulnerability_id, *f.aliases}
        for s in mine:
            if f.purl in s.subcomponents and ids & {s.vulnerability, *s.aliases}:
                expected.setdefault((f.purl, f.vulnerability_id), set()).add(s.justification or "")
    assert len(expected) >= 10, "the corpus should give this release real suppressions"

    for f in after.findings:
        want = expected.get((f.purl, f.vulnerability_id))
        if want is None:
            assert f.effective_status == "affected", f
            continue
        assert f.effective_status == "not_affected"
        assert f.verdict == "pass"
        assert f.vex is not None and f.vex.provider == sts[0].provider
        assert f.vex.justification in want
        assert f.reasons[0].code == "vex" and (f.vex.justification or "") in f.reasons[0].message


def test_vexhub_named_example(corpora: Path, corpus_index: AdvisoryIndex) -> None:
    """Rancher: CVE-2020-8911 (GO-2022-0646) in aws-sdk-go v1.49.16 is not_affected."""
    sts = statements(corpora / VEXHUB / "rancher/rancher/scan.openvex.json")
    bom = sbom(
        "pkg:golang/github.com/rancher/rancher@v2.9.0",
        ["pkg:golang/github.com/aws/aws-sdk-go@v1.49.16"],
    )
    ev = evaluate([bom], corpus_index, sts, default_policy(), AS_OF)
    (f,) = [f for f in ev.findings if f.vulnerability_id == "CVE-2020-8911"]
    assert "GO-2022-0646" in f.advisory_ids
    assert f.effective_status == "not_affected"
    assert f.vex is not None and f.vex.justification == "vulnerable_code_not_present"
    assert f.vex.impact_statement == "Govulncheck determined that the vulnerable code isn't called"
    # The same module in another product's SBOM is not covered by Rancher's statement.
    other = sbom(
        "pkg:golang/example.com/other@v1.0.0", ["pkg:golang/github.com/aws/aws-sdk-go@v1.49.16"]
    )
    ev = evaluate([other], corpus_index, sts, default_policy(), AS_OF)
    (f,) = [f for f in ev.findings if f.vulnerability_id == "CVE-2020-8911"]
    assert f.effective_status == "affected" and f.vex is None


def _cve_2024_0001() -> Advisory:
    """Trivy's VEX fixtures speak of CVE-2024-0001 in go-transitive; the corpora hold no such
    advisory (Trivy's tests use their own fixture DB too), so the test writes it."""
    return Advisory(
        id="GO-2024-0001",
        aliases=("CVE-2024-0001",),
        affected=(
            AffectedPackage(
                "golang",
                "github.com/aquasecurity/go-transitive",
                "Go",
                ranges=(
                    VersionRange(
                        "SEMVER", (RangeEvent("introduced", "0"), RangeEvent("fixed", "5.0.0"))
                    ),
                ),
            ),
        ),
        severity_label="HIGH",
    )


def test_csaf_vex_product_is_the_component(corpora: Path) -> None:
    sts = statements(corpora / "aquasecurity-trivy/pkg/vex/testdata/csaf.json")
    bom = sbom(
        "pkg:golang/github.com/aquasecurity/go-direct1@v2.0.0",
        ["pkg:golang/github.com/aquasecurity/go-transitive@v4.0.0"],
    )
    (f,) = evaluate([bom], [_cve_2024_0001()], sts, default_policy(), AS_OF).findings
    assert (f.vulnerability_id, f.effective_status, f.verdict) == (
        "CVE-2024-0001",
        "not_affected",
        "pass",
    )
    assert f.vex is not None and f.vex.provider == "Example Company ProductCERT"
    # CSAF's impact threat text rides along as the impact statement.
    assert f.vex.impact_statement == "vulnerable_code_not_in_execute_path"


def test_csaf_vex_relationship_scopes_to_the_parent_product(corpora: Path) -> None:
    sts = statements(corpora / "aquasecurity-trivy/pkg/vex/testdata/csaf-relationships.json")
    transitive = ["pkg:golang/github.com/aquasecurity/go-transitive@v4.0.0"]
    parent = sbom("pkg:golang/github.com/aquasecurity/go-direct1@v2.0.0", transitive)
    stranger = sbom("pkg:golang/github.com/aquasecurity/go-direct2@v3.0.0", transitive)
    ev = evaluate([parent, stranger], [_cve_2024_0001()], sts, default_policy(), AS_OF)
    by_subject = {f.subject: f for f in ev.findings}
    f = by_subject[parent.subject]
    assert f.effective_status == "not_affected"
    assert f.vex is not None
    assert f.vex.justification == "vulnerable_code_cannot_be_controlled_by_adversary"
    assert by_subject[stranger.subject].effective_status == "affected"
    assert by_subject[stranger.subject].verdict == "fail"  # HIGH, default thresholds


def test_cyclonedx_vex_bom_link(corpora: Path, corpus_index: AdvisoryIndex) -> None:
    """CycloneDX's VEX example: example-app's BOM with jackson-databind 2.10.0, and a VEX BOM
    saying CVE-2020-25649 is not reachable there (BOM-Link into the first BOM)."""
    bom = one_sbom(corpora / "cyclonedx-bom-examples/VEX/bom.json")
    sts = statements(corpora / "cyclonedx-bom-examples/VEX/vex.json")
    before = evaluate([bom], corpus_index, [], default_policy(), AS_OF)
    after = evaluate([bom], corpus_index, sts, default_policy(), AS_OF)
    jackson = "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.10.0?type=jar"
    vulns_before = {f.vulnerability_id: f for f in before.findings if f.purl == jackson}
    assert vulns_before["CVE-2020-25649"].effective_status == "affected"
    assert len(vulns_before) > 1  # other jackson vulnerabilities stay as they are
    for f in after.findings:
        if f.purl == jackson and f.vulnerability_id == "CVE-2020-25649":
            assert f.effective_status == "not_affected"
            assert f.vex is not None
            assert f.vex.justification == "vulnerable_code_not_in_execute_path"
        else:
            assert f.effective_status == "affected", f


def test_conflicting_providers_resolve_by_trust_order(
    corpora: Path, corpus_index: AdvisoryIndex
) -> None:
    vendor = statements(corpora / VEXHUB / "rancher/rancher/scan.openvex.json")
    st = min(
        (
            s
            for s in vendor
            if s.vulnerability == "CVE-2020-8911"
            and "pkg:golang/github.com/aws/aws-sdk-go@v1.49.16" in s.subcomponents
        ),
        key=lambda s: s.product,
    )
    internal = dataclasses.replace(
        st,
        provider="Internal PSIRT",
        status="affected",
        justification=None,
        impact_statement=None,
        action_statement="upgrade aws-sdk-go",
        timestamp="2024-01-01T00:00:00Z",
    )
    subject = st.product if "@" in st.product else st.product + "@v2.9.0"
    bom = sbom(subject, ["pkg:golang/github.com/aws/aws-sdk-go@v1.49.16"])

    def run(order: list[str]) -> Finding:
        doc = PolicyDocument.model_validate(
            {
                "apiVersion": "stella.policy/v1",
                "name": "t",
                "version": "1",
                "vexProviders": {"trustOrder": order},
            }
        )
        ev = evaluate([bom], corpus_index, [st, internal], Policy.from_document(doc), AS_OF)
        (f,) = [f for f in ev.findings if f.vulnerability_id == "CVE-2020-8911"]
        return f

    f = run(["Rancher Security team", "Internal PSIRT"])
    assert f.effective_status == "not_affected"
    assert f.vex is not None and f.vex.conflict
    (conflict,) = [c for c in f.vex.contributions if c.role == "conflicts"]
    assert (conflict.statement.provider, conflict.statement.status) == (
        "Internal PSIRT",
        "affected",
    )

    f = run(["Internal PSIRT", "Rancher Security team"])
    assert f.effective_status == "affected"
    assert f.vex is not None and f.vex.conflict and f.vex.provider == "Internal PSIRT"
    assert "VEX consensus affected from Internal PSIRT" in f.reasons[0].message
