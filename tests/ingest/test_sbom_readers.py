"""CycloneDX and SPDX SBOMs from the real corpora. Expected values were read from the files
with jq."""

from __future__ import annotations

import orjson
import pytest

from export_center.model import Component, ParsedRecord, Sbom
from support.ingest import ReadFn, only_record, only_refusal, read_bytes


def sbom(rec: ParsedRecord) -> Sbom:
    assert rec.doc_type == "sbom"
    assert isinstance(rec.normalized, Sbom)
    return rec.normalized


def by_purl(doc: Sbom, purl: str) -> Component:
    (c,) = [c for c in doc.components if c.purl == purl]
    return c


def test_keycloak_cyclonedx(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("cyclonedx-bom-examples/SBOM/keycloak-10.0.2/bom.json"))
    doc = sbom(rec)
    assert (rec.upstream_id, rec.format, rec.media_type) == (
        "urn:uuid:411dafd2-c29f-491a-97d7-e97de5bc2289",
        "cyclonedx",
        "application/vnd.cyclonedx+json",
    )
    assert doc.subject == "pkg:maven/org.keycloak/keycloak-parent@10.0.2"
    assert (doc.spec_version, doc.name) == ("1.2", "keycloak-parent")
    assert len(doc.components) == 903
    bc = by_purl(doc, "pkg:maven/org.bouncycastle/bcprov-jdk15on@1.62?type=jar")
    assert (bc.name, bc.version, bc.purl_type) == ("bcprov-jdk15on", "1.62", "maven")
    assert bc.hash("sha1") == "633b6739ef8f07f2e71f8eebd1c6f25b17a4ec7d"  # alg "SHA-1"
    assert doc.vex == ()


def test_juice_shop_cyclonedx(read_corpus: ReadFn) -> None:
    doc = sbom(only_record(read_corpus("cyclonedx-bom-examples/SBOM/juice-shop/v11.1.2/bom.json")))
    assert doc.subject == "pkg:npm/juice-shop@11.1.2"
    assert len(doc.components) == 840


def test_nested_components_are_flattened(read_corpus: ReadFn) -> None:
    # 156 top-level components, 705 with their nested components.
    doc = sbom(
        only_record(
            read_corpus("chainguard-bom-shelter/in-the-wild/cyclonedx/harp-darwin-amd64.sbom.json")
        )
    )
    assert len(doc.components) == 705
    assert [c.purl for c in doc.components[:3]] == [
        "pkg:golang/filippo.io/age@v1.0.0?type=module",
        "pkg:golang/filippo.io/age@v1.0.0?type=package",
        "pkg:golang/filippo.io/age/armor@v1.0.0?type=package",
    ]


def test_flux_spdx(read_corpus: ReadFn) -> None:
    rec = only_record(
        read_corpus("chainguard-bom-shelter/in-the-wild/spdx/flux_0.26.3_sbom.spdx.json")
    )
    doc = sbom(rec)
    assert (rec.format, rec.media_type) == ("spdx", "application/spdx+json")
    assert rec.upstream_id == (
        "https://anchore.com/syft/file/flux_0.26.3_source_code.tar.gz-cf8af9a1-1d33-4d88-b967-a550aad98fd5"
    )
    assert (doc.spec_version, doc.subject) == ("2.2", "flux_0.26.3_source_code.tar.gz")
    assert len(doc.components) == 244
    ssa = by_purl(doc, "pkg:golang/github.com/fluxcd/pkg/ssa@v0.13.0")  # after a cpe23 ref
    assert (ssa.name, ssa.version, ssa.purl_type) == (
        "github.com/fluxcd/pkg/ssa",
        "v0.13.0",
        "golang",
    )


def test_spdx_subject_from_describes(read_corpus: ReadFn) -> None:
    doc = sbom(
        only_record(
            read_corpus("chainguard-bom-shelter/in-the-wild/spdx/microsoft-sbom-tool.spdx.json")
        )
    )
    assert doc.subject == "SBOMTool@1.1.2"  # SPDXRef-RootPackage, no purl
    assert len(doc.components) == 123


def test_trivy_spdx_describe_relationship(read_corpus: ReadFn) -> None:
    # Trivy writes "DESCRIBE" (sic) for the document's subject.
    rel = (
        "chainguard-bom-shelter/in-the-lab/spdx-popular-containers/data/spdx-trivy-bitnami_kibana-"
        "sha256:8fea4e8805e8e580ac7a901f6f6ed0816a77af97954a3ed09d054cea6571f523.json"
    )
    doc = sbom(only_record(read_corpus(rel)))
    assert doc.subject.startswith("pkg:oci/kibana@sha256:8fea4e88")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (
            {"spdxVersion": "SPDX-2.1", "documentNamespace": "n"},
            "spdxVersion: 'SPDX-2.1' is not supported",
        ),
        ({"spdxVersion": "SPDX-2.3"}, "documentNamespace: missing (required)"),
        (
            {"spdxVersion": "SPDX-2.3", "documentNamespace": "n", "packages": [{"SPDXID": "a"}]},
            "packages[0].name: missing (required)",
        ),
    ],
)
def test_spdx_violations(doc: dict[str, object], reason: str) -> None:
    refusal = only_refusal(read_bytes(orjson.dumps(doc), "s.json"))
    assert refusal.reason.startswith(f"invalid SPDX document: {reason}")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"bomFormat": "CycloneDX", "specVersion": "1.1"}, "specVersion: '1.1' is not supported"),
        (
            {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"version": "1"}]},
            "components[0].name: missing (required)",
        ),
        (
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.6",
                "components": [{"name": "a", "hashes": [{"alg": "MD5"}]}],
            },
            "components[0].hashes[0].content: missing (required)",
        ),
    ],
)
def test_cyclonedx_violations(doc: dict[str, object], reason: str) -> None:
    refusal = only_refusal(read_bytes(orjson.dumps(doc), "c.json"))
    assert refusal.reason.startswith(f"invalid CycloneDX document: {reason}")


def test_cyclonedx_without_identity_uses_content_digest() -> None:
    bom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"name": "a"}]}
    rec = only_record(read_bytes(orjson.dumps(bom), "dir/bom.json"))
    assert rec.upstream_id.startswith("sha256:")
    assert sbom(rec).subject == "bom.json"


def test_purl_with_encoded_slash_keeps_its_identity(read_corpus: ReadFn) -> None:
    # packageurl-python would re-serialize this as pkg:k8s/k8s.io/kubelet (another package).
    doc = sbom(
        only_record(
            read_corpus("aquasecurity-trivy/integration/testdata/fixtures/sbom/minikube-kbom.json")
        )
    )
    kubelet = by_purl(doc, "pkg:k8s/k8s.io%2Fkubelet@1.27.0")
    assert kubelet.purl_type == "k8s"
    assert doc.subject == "pkg:k8s/k8s.io%2Fkubernetes@1.27.0"
