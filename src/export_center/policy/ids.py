"""The one rule that names a vulnerability, shared by ``stella findings``, json:policy and trivy:db.

A scanner administrator sees the same vulnerability in three places: the findings we print, the
json:policy bundle, and the report of a Trivy that reads our trivy.db. VEX statements, ignore
lists and tickets are written against that name, so it must be the same everywhere. The rule works
on one advisory (its own id and its aliases), so a database writer that sees advisories one at a
time and a matcher that sees them per component give the same answer:

- an advisory with CVE ids (its own id or aliases) names one vulnerability **per CVE**: a record
  that bundles two CVEs reports two findings, as upstream trivy-db writes one entry per CVE, so a
  statement about one of them does not silence the other;
- an advisory without a CVE is named by the bytewise smallest of its ids (in practice its GHSA id
  when it has one: ``GHSA-…`` sorts before ``GO-…``, ``PYSEC-…`` and ``RUSTSEC-…``), so two feeds'
  records of one vulnerability that alias each other meet under one name.

The other ids of the advisory (:func:`other_ids`) travel with each name: Trivy's ``VendorIDs``, a
finding's ``aliases``. A CVE-named finding does not list the advisory's other CVEs there: they are
findings of their own.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["is_cve", "names_and_other_ids", "other_ids", "vulnerability_names"]


def is_cve(identifier: str) -> bool:
    """A CVE id (``CVE-2024-1234``; upstream feeds spell it in capitals)."""
    return identifier.startswith("CVE-")


def vulnerability_names(advisory_id: str, aliases: Iterable[str] = ()) -> tuple[str, ...]:
    """The names of the vulnerabilities an advisory describes, bytewise sorted: its CVE ids, or
    the bytewise smallest of its ids when it has no CVE."""
    return names_and_other_ids(advisory_id, aliases)[0]


def other_ids(advisory_id: str, aliases: Iterable[str] = ()) -> tuple[str, ...]:
    """Every id of the advisory that is not one of its names, bytewise sorted."""
    return names_and_other_ids(advisory_id, aliases)[1]


def names_and_other_ids(
    advisory_id: str, aliases: Iterable[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(:func:`vulnerability_names`, :func:`other_ids`) in one pass over the ids."""
    ids = {advisory_id, *aliases}
    cves = [i for i in ids if is_cve(i)]
    if cves:
        names = tuple(sorted(cves, key=str.encode))
        others = [i for i in ids if not is_cve(i)]
    else:
        name = min(ids, key=str.encode)
        names = (name,)
        others = [i for i in ids if i != name]
    return names, tuple(sorted(others, key=str.encode))
