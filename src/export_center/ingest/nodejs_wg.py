"""Node.js security working group advisories (``nodejs/security-wg`` ``vuln/npm/<n>.json``).

Each npm record becomes an advisory ``NSWG-ECO-<id>`` (the id scheme of the WG's README) for
one npm package. ``vulnerable_versions`` is an npm semver range; it is converted to OSV SEMVER
ranges, one per ``||`` alternative, when every alternative is expressible as OSV events:
``>=a`` (introduced), ``<b`` (fixed), ``<=b`` (last_affected), ``*``, or an exact version (then
listed in ``versions``). Anything else (``>a``, ``^``, ``~``, x-ranges) is refused with the
expression named: an approximate range would be a wrong answer.

The core records (``vuln/core``, keyed by CVE, ranges over Node.js release lines) and the
dependency assessments (``vuln/deps``) are recognised and refused as not supported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from export_center.ingest._common import (
    Invalid,
    as_obj,
    canonical_purl,
    check_upstream_id,
    opt_list,
    opt_str,
    req_str,
    sorted_unique,
    str_list,
    unique,
)
from export_center.ingest.interface import RecordRefused
from export_center.model import (
    Advisory,
    AffectedPackage,
    ParsedRecord,
    RangeEvent,
    Severity,
    VersionRange,
)

__all__ = ["NodeWgReader", "npm_range_to_osv"]

MEDIA_TYPE = "application/json"
FORMAT = "nodejs-wg"

_SEMVER = r"v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)"
_COMPARATOR = re.compile(rf"^(>=|<=|<|=)?{_SEMVER}$")
# "<= 1.2.3" is written with a space in some records: glue operators to their versions.
_OP_SPACE = re.compile(r"(>=|<=|>|<|=)\s+")


class Unconvertible(ValueError):
    """An npm range that OSV events cannot express exactly."""


def npm_range_to_osv(expr: str) -> tuple[tuple[VersionRange, ...], tuple[str, ...]]:
    """(SEMVER ranges, exact versions) equivalent to an npm range expression.

    Raises:
        Unconvertible: some alternative uses a comparator OSV events cannot express.
    """
    ranges: list[VersionRange] = []
    exact: list[str] = []
    for alternative in expr.split("||"):
        tokens = _OP_SPACE.sub(r"\1", alternative.strip()).split()
        if tokens == ["*"]:
            ranges.append(VersionRange("SEMVER", (RangeEvent("introduced", "0"),)))
            continue
        if not tokens:
            raise Unconvertible("(empty)")
        lower: str | None = None
        upper: RangeEvent | None = None
        for token in tokens:
            m = _COMPARATOR.match(token)
            if m is None:
                raise Unconvertible(token)
            op, version = m.group(1) or "=", m.group(2)
            if op == "=" and len(tokens) == 1:
                exact.append(version)
            elif op == ">=" and lower is None:
                lower = version
            elif op in ("<", "<=") and upper is None:
                upper = RangeEvent("fixed" if op == "<" else "last_affected", version)
            else:
                raise Unconvertible(token)
        if lower is None and upper is None:
            continue  # an exact version, listed in versions
        events = [RangeEvent("introduced", lower or "0")]
        if upper is not None:
            events.append(upper)
        ranges.append(VersionRange("SEMVER", tuple(events)))
    return tuple(ranges), tuple(exact)


def _is_npm(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("module_name"), str) and "vulnerable_versions" in doc


def _is_core_or_deps(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("cve"), list) and ("vulnerable" in doc or "reason" in doc)


def normalize(doc: dict[str, Any]) -> Advisory:
    """The normalized view of one npm record.

    Raises:
        Invalid: a field is missing or of the wrong type, or the range cannot be converted.
    """
    raw_id = doc.get("id")
    if not isinstance(raw_id, int) or isinstance(raw_id, bool):
        raise Invalid("id", "expected the record number")
    adv_id = f"NSWG-ECO-{raw_id}"
    module = req_str(doc, "module_name")
    expr = req_str(doc, "vulnerable_versions")
    try:
        ranges, exact = npm_range_to_osv(expr)
    except Unconvertible as e:
        raise Invalid(
            "vulnerable_versions",
            f"{expr!r} cannot be expressed as OSV SEMVER events ({e} is not >=, <, <=, an exact "
            "version or *)",
        ) from e
    fixed = unique(ev.version for r in ranges for ev in r.events if ev.kind == "fixed")
    vector = opt_str(doc, "cvss_vector")
    severities = (Severity("CVSS_V3", vector),) if vector and vector.startswith("CVSS:3") else ()
    references = [r for r in opt_list(doc, "references") if isinstance(r, str)]
    return Advisory(
        id=adv_id,
        aliases=sorted_unique(str_list(doc, "cves"), exclude=adv_id),
        summary=opt_str(doc, "title"),
        details=opt_str(doc, "overview"),
        affected=(
            AffectedPackage(
                purl_type="npm",
                name=module,
                ecosystem="npm",
                purl=canonical_purl(f"pkg:npm/{module}"),
                ranges=ranges,
                versions=exact,
                fixed=fixed,
            ),
        ),
        severities=severities,
        references=unique(references),
        published=opt_str(doc, "publish_date") or opt_str(doc, "created_at"),
        modified=opt_str(doc, "updated_at"),
    )


class NodeWgReader:
    """Node.js security-wg npm advisories (format ``nodejs-wg``)."""

    name = FORMAT

    def sniff(self, doc: Any, filename: str) -> bool:
        return isinstance(doc, dict) and (_is_npm(doc) or _is_core_or_deps(doc))

    def read(self, doc: Any, content: bytes, where: str) -> Iterator[ParsedRecord | RecordRefused]:
        obj = doc if isinstance(doc, dict) else {}
        if not _is_npm(obj):
            yield RecordRefused(
                where,
                "Node.js security-wg core/dependency records (vuln/core, vuln/deps) are not "
                "supported; only the npm ecosystem records (vuln/npm) are",
            )
            return
        try:
            adv = normalize(as_obj(doc, ""))
            upstream_id = check_upstream_id(adv.id)
        except Invalid as e:
            yield RecordRefused(where, f"invalid Node.js security-wg record: {e.message}")
            return
        yield ParsedRecord(
            upstream_id=upstream_id,
            doc_type="advisory",
            format=FORMAT,
            media_type=MEDIA_TYPE,
            content=content,
            normalized=adv,
        )
