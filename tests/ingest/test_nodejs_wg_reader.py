"""Node.js security-wg npm advisories. Expected values were read from the files with jq."""

from __future__ import annotations

import pytest

from export_center.ingest.nodejs_wg import Unconvertible, npm_range_to_osv
from export_center.model import Advisory, RangeEvent, Severity, VersionRange
from support.ingest import ReadFn, only_record, only_refusal


def test_npm_record(read_corpus: ReadFn) -> None:
    rec = only_record(read_corpus("nodejs-security-wg/vuln/npm/1.json"))
    assert (rec.upstream_id, rec.format, rec.doc_type) == ("NSWG-ECO-1", "nodejs-wg", "advisory")
    assert isinstance(rec.normalized, Advisory)
    adv = rec.normalized
    assert adv.aliases == ("CVE-2014-7205",)
    assert adv.summary == "Arbitrary JavaScript Execution"
    (pkg,) = adv.affected
    assert (pkg.purl_type, pkg.name, pkg.purl) == ("npm", "bassmaster", "pkg:npm/bassmaster")
    # vulnerable_versions "<=1.5.1"
    assert pkg.ranges == (
        VersionRange(
            "SEMVER", (RangeEvent("introduced", "0"), RangeEvent("last_affected", "1.5.1"))
        ),
    )
    assert pkg.fixed == ()
    assert adv.severities == (Severity("CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N"),)
    assert (adv.published, adv.modified) == ("2014-09-27", "2016-04-28")


def test_core_records_are_refused_as_unsupported(read_corpus: ReadFn) -> None:
    refusal = only_refusal(read_corpus("nodejs-security-wg/vuln/core/1.json"))
    assert "core/dependency records" in refusal.reason


def test_unconvertible_range_is_refused(read_corpus: ReadFn) -> None:
    refusal = only_refusal(read_corpus("nodejs-security-wg/vuln/npm/11.json"))
    assert refusal.reason == (
        "invalid Node.js security-wg record: vulnerable_versions: '2.0.x || 2.1.x' cannot be "
        "expressed as OSV SEMVER events (2.0.x is not >=, <, <=, an exact version or *)"
    )


@pytest.mark.parametrize(
    ("expr", "ranges", "exact"),
    [
        ("<2.3.1", [[("introduced", "0"), ("fixed", "2.3.1")]], []),
        (">= 1.0.0 <= 1.2.0", [[("introduced", "1.0.0"), ("last_affected", "1.2.0")]], []),
        (
            "<1.0.0 || >=2.0.0 <2.1.0",
            [
                [("introduced", "0"), ("fixed", "1.0.0")],
                [("introduced", "2.0.0"), ("fixed", "2.1.0")],
            ],
            [],
        ),
        ("*", [[("introduced", "0")]], []),
        ("1.2.3 || =1.2.4", [], ["1.2.3", "1.2.4"]),
        ("<=v0.3.0", [[("introduced", "0"), ("last_affected", "0.3.0")]], []),
    ],
)
def test_npm_ranges(expr: str, ranges: list[list[tuple[str, str]]], exact: list[str]) -> None:
    got_ranges, got_exact = npm_range_to_osv(expr)
    assert [[(e.kind, e.version) for e in r.events] for r in got_ranges] == ranges
    assert list(got_exact) == exact


@pytest.mark.parametrize(
    "expr", [">1.0.0", "^1.2.3", "~1.2.3", "1.x", "<1.2", "", "<1 <2", ">=1.0.0 ||"]
)
def test_npm_ranges_refused(expr: str) -> None:
    with pytest.raises(Unconvertible):
        npm_range_to_osv(expr)
