"""parse_document and detect: well-formedness, YAML safety, format recognition."""

from __future__ import annotations

import pytest

from export_center.errors import DocumentRefused
from export_center.ingest.detect import detect, parse_document, unread_format
from export_center.ingest.interface import Skipped
from export_center.ingest.registry import READERS, reader_named
from support.ingest import ReadFn, only_refusal


def test_malformed_spdx_json_names_file_and_position(read_corpus: ReadFn) -> None:
    # NOTES.md: "malformed JSON (extra data at line 2765)".
    rel = "chainguard-bom-shelter/in-the-wild/spdx/powershell-2.2.6.spdx.json"
    refusal = only_refusal(read_corpus(rel))
    assert refusal.where == rel
    assert refusal.reason.startswith("malformed JSON at line 2765 column ")


def test_malformed_json_raises_document_refused_with_position() -> None:
    with pytest.raises(DocumentRefused, match=r"x\.json: malformed JSON at line 2 column 8: "):
        parse_document(b'{"a": 1,\n  "b": }', "x.json")


def test_malformed_yaml_gives_line_and_column() -> None:
    with pytest.raises(DocumentRefused, match=r"malformed YAML at line 2 column \d+: "):
        parse_document(b"id: X\n  - broken: [\n", "v.yaml")


def test_yaml_anchors_and_aliases_are_refused() -> None:
    bomb = b'a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n'
    with pytest.raises(DocumentRefused, match=r"YAML anchor &a at line 1 column 4: anchors"):
        parse_document(bomb, "bomb.yaml")


def test_yaml_timestamps_stay_text() -> None:
    doc = parse_document(b"modified: 2021-07-16T01:31:33.917972Z\nversion: '2.10'\n", "a.yml")
    assert doc == {"modified": "2021-07-16T01:31:33.917972Z", "version": "2.10"}


def test_utf8_bom_is_tolerated() -> None:
    assert parse_document(b'\xef\xbb\xbf{"a": 1}', "bom.json") == {"a": 1}


def test_spdx_tag_value_is_refused_as_unsupported() -> None:
    with pytest.raises(DocumentRefused, match="SPDX tag-value is not supported"):
        parse_document(b"SPDXVersion: SPDX-2.2\nDataLicense: CC0-1.0\n", "a.spdx")


def test_xml_is_refused_with_advice() -> None:
    with pytest.raises(DocumentRefused, match="XML is not supported"):
        parse_document(b'<?xml version="1.0"?><bom/>', "bom.xml")


def test_unknown_json_is_refused_naming_what_was_looked_for(read_corpus: ReadFn) -> None:
    rel = "aquasecurity-trivy/pkg/vex/testdata/unknown.json"
    refusal = only_refusal(read_corpus(rel))
    assert refusal.where == rel
    assert refusal.reason.startswith("unknown format: found an empty object; looked for ")
    for marker in ("CSAF 2.0", "OpenVEX", "CycloneDX", "SPDX", "OSV"):
        assert marker in refusal.reason


@pytest.mark.parametrize(
    ("rel", "found"),
    [
        # NOTES.md: not CycloneDX despite the -cdx name (raw SCANOSS output, a bare list).
        ("chainguard-bom-shelter/in-the-wild/cyclonedx/bashrc2-sbom-cdx.json", "an object"),
        ("chainguard-bom-shelter/in-the-wild/cyclonedx/scanoss-sbom-cdx.json", "an array of"),
        ("google-osv-scanner/internal/remediation/testdata/santatracker/package.json", "an object"),
        ("ctrliq-advisories/mapping/cpe-product-keys.json", "an object"),
    ],
)
def test_non_evidence_files_are_unknown_format(read_corpus: ReadFn, rel: str, found: str) -> None:
    refusal = only_refusal(read_corpus(rel))
    assert refusal.reason.startswith(f"unknown format: found {found}")


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        ("aquasecurity-vexhub/index.json", "VEX repository index (index.json"),
        (
            "aquasecurity-vexhub/pkg/golang/github.com/rancher/webhook/manifest.json",
            "VEX repository manifest (manifest.json",
        ),
        ("aquasecurity-vexhub/vex-repository.json", "VEX repository description"),
        ("cisagov-csaf/csaf_files/IT/white/cisa-csaf-it-feed-tlp-white.json", "CSAF ROLIE feed"),
        ("nodejs-security-wg/vuln/core/index.json", "Node.js security-wg index"),
    ],
)
def test_known_files_that_are_not_evidence_are_skipped_with_the_reason(
    read_corpus: ReadFn, rel: str, reason: str
) -> None:
    outcomes = read_corpus(rel)
    assert len(outcomes) == 1
    skipped = outcomes[0]
    assert isinstance(skipped, Skipped), skipped
    assert skipped.where == rel
    assert skipped.reason.startswith(reason) and skipped.reason.endswith("not evidence")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sboms/usbutils.spdx", "SPDX tag-value is not supported: provide the SPDX document as"),
        ("x/bom.xml", "XML is not supported: provide the document as JSON"),
        ("doc.spdx.rdf", "SPDX RDF/XML is not supported"),
        ("README.md", "not an evidence file (.md)"),
        ("vuln/LICENSE", "not an evidence file (no extension)"),
        ("a/.hidden", "not an evidence file (no extension)"),
        ("x.json.asc", "not an evidence file (.asc)"),
    ],
)
def test_files_not_read_in_folders_are_named_by_format(name: str, reason: str) -> None:
    assert unread_format(name).startswith(reason)


@pytest.mark.parametrize("doc", [[], "text", 3, None, {}])
def test_detect_never_crashes_on_odd_shapes(doc: object) -> None:
    with pytest.raises(DocumentRefused, match="unknown format"):
        detect(doc, "odd.json")


def test_registry_names_are_unique_and_resolvable() -> None:
    names = [r.name for r in READERS]
    assert len(names) == len(set(names))
    assert reader_named("ghsa") is reader_named("osv")
    assert reader_named("nope") is None
