"""Readers turn any document shape into records or refusals: never an unexpected exception.

Random JSON values are grafted onto each format's marker fields (so that detection picks the
reader) and onto real field names, which is where a reader indexing without checking would
crash.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export_center.ingest.interface import RecordRefused
from export_center.model import ParsedRecord
from support.ingest import read_bytes

FIELDS = [
    "id",
    "modified",
    "affected",
    "package",
    "ranges",
    "events",
    "severity",
    "aliases",
    "versions",
    "vulns",
    "database_specific",
    "document",
    "product_tree",
    "branches",
    "relationships",
    "vulnerabilities",
    "product_status",
    "flags",
    "threats",
    "remediations",
    "statements",
    "products",
    "vulnerability",
    "status",
    "justification",
    "components",
    "hashes",
    "purl",
    "analysis",
    "affects",
    "ref",
    "packages",
    "externalRefs",
    "checksums",
    "relationships",
    "name",
    "version",
    "module_name",
    "vulnerable_versions",
    "publisher",
    "tracking",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from(
        ["", "x", "CVE-2024-1", "pkg:npm/a@1", "2.0", "csaf_vex", "not_affected", "<1.0.0"]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)
    ),
    max_leaves=12,
)

MARKERS: list[dict[str, Any]] = [
    {
        "document": {
            "csaf_version": "2.0",
            "category": "csaf_vex",
            "publisher": {"name": "p"},
            "tracking": {"id": "t"},
        }
    },
    {"@context": "https://openvex.dev/ns/v0.2.0", "author": "a"},
    {"bomFormat": "CycloneDX", "specVersion": "1.5"},
    {"spdxVersion": "SPDX-2.3", "documentNamespace": "n"},
    {"id": "OSV-1", "modified": "2024-01-01T00:00:00Z"},
    {"vulns": []},
    {"id": 1, "module_name": "m", "vulnerable_versions": "<1.0.0"},
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    marker=st.sampled_from(MARKERS),
    extra=st.dictionaries(st.sampled_from(FIELDS), values),
    override=st.booleans(),
)
def test_readers_never_raise(marker: dict[str, Any], extra: dict[str, Any], override: bool) -> None:
    # override: random values replace the marker's own fields (a wrong-typed "document", ...).
    doc = {**marker, **extra} if override else {**extra, **marker}
    if "vulns" in marker:
        doc = {"vulns": [extra, {**marker, "vulns": None}]}
    for outcome in read_bytes(orjson.dumps(doc), "fuzz.json"):
        assert isinstance(outcome, ParsedRecord | RecordRefused)
        if isinstance(outcome, RecordRefused):
            assert outcome.reason and outcome.where.startswith("fuzz.json")
