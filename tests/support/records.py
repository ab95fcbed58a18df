"""Small evidence records built in code, for tests that need a store with known content."""

from __future__ import annotations

from export_center.model import Advisory, AffectedPackage, ParsedRecord

#: Every corpus folder under ../shared/corpora, as (source name, folder): the whole-corpus tests.
CORPUS_SOURCES = [
    ("pypa", "pypa-advisory-database/vulns"),
    ("go-vulndb", "golang-vulndb/data/osv"),
    ("rustsec", "rustsec-advisory-db-osv/crates"),
    ("osv-scanner", "google-osv-scanner"),
    ("osv-scalibr", "google-osv-scalibr"),
    ("trivy-db-testdata", "aquasecurity-trivy-db/pkg/vulnsrc"),
    ("vexhub", "aquasecurity-vexhub/pkg"),
    ("ctrliq", "ctrliq-advisories/csaf"),
    ("cisa", "cisagov-csaf/csaf_files"),
    ("oasis", "oasis-tcs-csaf/csaf_2.0"),
    ("openvex-vexctl", "openvex-vexctl/examples"),
    ("cyclonedx-examples", "cyclonedx-bom-examples"),
    ("bom-shelter", "chainguard-bom-shelter/in-the-wild"),
]


def osv_record(
    upstream: str,
    body: bytes,
    *,
    aliases: tuple[str, ...] = (),
    package: AffectedPackage | None = None,
    withdrawn: str | None = None,
) -> ParsedRecord:
    """An OSV advisory record with ``body`` as its raw bytes and a matching normalized view."""
    return ParsedRecord(
        upstream_id=upstream,
        doc_type="advisory",
        format="osv",
        media_type="application/osv+json",
        content=body,
        normalized=Advisory(
            id=upstream,
            aliases=aliases,
            affected=(package or AffectedPackage("pypi", "demo", "PyPI"),),
            withdrawn=withdrawn,
        ),
        withdrawn=withdrawn is not None,
    )
