"""CSAF 2.0 documents: the ``csaf_vex`` profile becomes a VEX document, every other profile
(security advisory, informational advisory, incident response, base) an advisory.

Products are named by what the product tree says about them: the purl of their
``product_identification_helper``, else its CPE, else the product name. A product defined by a
relationship (``openssl-1.1.1k as a component of Rocky Linux 8``) with no helper of its own
becomes the *parent* product (``relates_to_product_reference``) with the component
(``product_reference``) as its subcomponent: the OpenVEX product/subcomponent model, and what
Trivy does with such relationships.

Spec: https://docs.oasis-open.org/csaf/csaf/v2.0/csaf-v2.0.html
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from packageurl import PackageURL

from export_center.ingest._common import (
    Invalid,
    as_obj,
    as_str,
    at,
    canonical_purl,
    check_upstream_id,
    obj_list,
    opt_obj,
    opt_str,
    parse_purl,
    purl_package_name,
    req_obj,
    req_str,
    sorted_unique,
    str_list,
    unique,
)
from export_center.ingest.interface import RecordRefused
from export_center.ingest.openvex import JUSTIFICATIONS
from export_center.model import (
    Advisory,
    AffectedPackage,
    DocType,
    ParsedRecord,
    Severity,
    VexDocument,
    VexStatement,
)

__all__ = ["CsafReader"]

MEDIA_TYPE = "application/csaf+json"

#: CSAF 2.0 profiles (section 4); any other category not starting with ``csaf_`` is the base
#: profile too.
PROFILES: dict[str, DocType] = {
    "csaf_vex": "vex",
    "csaf_security_advisory": "advisory",
    "csaf_informational_advisory": "advisory",
    "csaf_security_incident_response": "advisory",
    "csaf_base": "advisory",
}

#: product_status key → normalized VEX status. ``recommended`` is advice, not a status.
STATUSES: dict[str, str] = {
    "known_not_affected": "not_affected",
    "known_affected": "affected",
    "first_affected": "affected",
    "last_affected": "affected",
    "fixed": "fixed",
    "first_fixed": "fixed",
    "under_investigation": "under_investigation",
}
_NOT_A_STATUS = ("recommended",)


@dataclass(frozen=True)
class _Product:
    name: str
    purl: str | None
    cpe: str | None
    # (product_reference, relates_to_product_reference) for relationship products.
    component_of: tuple[str, str] | None = None


class _Tree:
    """The product tree: product ids to what identifies them, and product groups."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.products: dict[str, _Product] = {}
        self.groups: dict[str, list[str]] = {}
        tree = opt_obj(doc, "product_tree")
        if tree is None:
            return
        path = "product_tree"
        for fpath, fpn in obj_list(tree, "full_product_names", path):
            self._add(fpn, fpath)
        self._branches(tree, path)
        for rpath, rel in obj_list(tree, "relationships", path):
            fpn = req_obj(rel, "full_product_name", rpath)
            self._add(
                fpn,
                at(rpath, "full_product_name"),
                (
                    req_str(rel, "product_reference", rpath),
                    req_str(rel, "relates_to_product_reference", rpath),
                ),
            )
        for gpath, group in obj_list(tree, "product_groups", path):
            self.groups[req_str(group, "group_id", gpath)] = str_list(group, "product_ids", gpath)

    def _branches(self, node: dict[str, Any], path: str) -> None:
        for bpath, branch in obj_list(node, "branches", path):
            product = opt_obj(branch, "product", bpath)
            if product is not None:
                self._add(product, at(bpath, "product"))
            self._branches(branch, bpath)

    def _add(
        self, fpn: dict[str, Any], path: str, component_of: tuple[str, str] | None = None
    ) -> None:
        helper = opt_obj(fpn, "product_identification_helper", path) or {}
        hpath = at(path, "product_identification_helper")
        self.products[req_str(fpn, "product_id", path)] = _Product(
            name=req_str(fpn, "name", path),
            purl=canonical_purl(opt_str(helper, "purl", hpath)),
            cpe=opt_str(helper, "cpe", hpath),
            component_of=component_of,
        )

    def plain(self, pid: str) -> str:
        p = self.products.get(pid)
        if p is None:
            return pid  # a dangling reference: keep the id rather than invent a product
        return p.purl or p.cpe or p.name

    def identify(self, pid: str) -> tuple[str, tuple[str, ...]]:
        """(product, subcomponents) for a product id."""
        p = self.products.get(pid)
        if p is None:
            return pid, ()
        own = p.purl or p.cpe
        if own:
            return own, ()
        if p.component_of is not None:
            component, parent = p.component_of
            return self.plain(parent), (self.plain(component),)
        return p.name, ()

    def package_purl(self, pid: str) -> PackageURL | None:
        """The purl of the package a product id stands for (a relationship's component)."""
        p = self.products.get(pid)
        if p is None:
            return None
        if p.purl:
            return parse_purl(p.purl)
        if p.component_of is not None:
            component = self.products.get(p.component_of[0])
            if component is not None and component.purl:
                return parse_purl(component.purl)
        return None

    def expand(self, item: dict[str, Any], path: str) -> set[str] | None:
        """The product ids a flag, threat or remediation names; None when it names none (it
        then applies to every product of its vulnerability)."""
        pids = str_list(item, "product_ids", path)
        gids = str_list(item, "group_ids", path)
        if not pids and not gids:
            return None
        out = set(pids)
        for g in gids:
            out.update(self.groups.get(g, ()))
        return out


def _applies(scope: set[str] | None, pid: str) -> bool:
    return scope is None or pid in scope


def _vuln_id(v: dict[str, Any], path: str) -> tuple[str, list[str]]:
    """(main id, other ids): the CVE when given, else the first of ``ids``."""
    ids = [req_str(i, "text", p) for p, i in obj_list(v, "ids", path)]
    cve = opt_str(v, "cve", path)
    if cve:
        return cve, ids
    if ids:
        return ids[0], ids[1:]
    raise Invalid(path, "names no vulnerability (neither cve nor ids)")


def _text(item: dict[str, Any], path: str) -> str | None:
    return opt_str(item, "details", path)


def _statements(
    doc: dict[str, Any], tree: _Tree, provider: str, when: str | None
) -> list[VexStatement]:
    out: dict[VexStatement, None] = {}
    for vpath, v in obj_list(doc, "vulnerabilities"):
        vuln, others = _vuln_id(v, vpath)
        aliases = sorted_unique(others, exclude=vuln)
        flags: list[tuple[set[str] | None, str]] = []
        for fpath, flag in obj_list(v, "flags", vpath):
            label = req_str(flag, "label", fpath)
            if label not in JUSTIFICATIONS:
                raise Invalid(at(fpath, "label"), f"{label!r} is not a CSAF flag label")
            flags.append((tree.expand(flag, fpath), label))
        impacts = [
            (tree.expand(t, tpath), _text(t, tpath))
            for tpath, t in obj_list(v, "threats", vpath)
            if opt_str(t, "category", tpath) == "impact"
        ]
        remedies = [
            (tree.expand(r, rpath), _text(r, rpath))
            for rpath, r in obj_list(v, "remediations", vpath)
        ]
        statuses = opt_obj(v, "product_status", vpath) or {}
        spath = at(vpath, "product_status")
        for key, pids in statuses.items():
            if key in _NOT_A_STATUS:
                continue
            status = STATUSES.get(key)
            if status is None:
                raise Invalid(at(spath, key), "unknown product status")
            if not isinstance(pids, list):
                raise Invalid(at(spath, key), "expected an array of product ids")
            for i, raw in enumerate(pids):
                pid = as_str(raw, at(at(spath, key), i))
                product, subs = tree.identify(pid)
                justification = None
                impact = None
                action = None
                if status == "not_affected":
                    justification = next((lb for sc, lb in flags if _applies(sc, pid)), None)
                    impact = (
                        "\n".join(unique(t for sc, t in impacts if t and _applies(sc, pid))) or None
                    )
                else:
                    action = (
                        "\n".join(unique(t for sc, t in remedies if t and _applies(sc, pid)))
                        or None
                    )
                st = VexStatement(
                    vulnerability=vuln,
                    product=product,
                    status=status,
                    provider=provider,
                    aliases=aliases,
                    subcomponents=subs,
                    justification=justification,
                    impact_statement=impact,
                    action_statement=action,
                    timestamp=when,
                )
                out.setdefault(st, None)
    return list(out)


def _advisory(doc: dict[str, Any], tree: _Tree, head: dict[str, Any]) -> Advisory:
    tracking = head["tracking"]
    adv_id = tracking["id"]
    cves: list[str] = []
    severities: dict[Severity, None] = {}
    cwes: list[str] = []
    refs = [req_str(r, "url", p) for p, r in obj_list(head, "references", "document")]
    # (purl type, package name) → [purl, affected versions, fixed versions]
    packages: dict[tuple[str, str], tuple[str, list[str], list[str]]] = {}
    for vpath, v in obj_list(doc, "vulnerabilities"):
        cve = opt_str(v, "cve", vpath)
        if cve:
            cves.append(cve)
        cwe = opt_obj(v, "cwe", vpath)
        if cwe is not None:
            cwes.append(req_str(cwe, "id", at(vpath, "cwe")))
        refs.extend(req_str(r, "url", p) for p, r in obj_list(v, "references", vpath))
        for spath, score in obj_list(v, "scores", vpath):
            for key, stype in (("cvss_v3", "CVSS_V3"), ("cvss_v2", "CVSS_V2")):
                cvss = opt_obj(score, key, spath)
                if cvss is not None:
                    severities[Severity(stype, req_str(cvss, "vectorString", at(spath, key)))] = (
                        None
                    )
        statuses = opt_obj(v, "product_status", vpath) or {}
        for key, pids in statuses.items():
            status = STATUSES.get(key)
            if status not in ("affected", "fixed") or not isinstance(pids, list):
                continue
            for pid in pids:
                purl = tree.package_purl(pid) if isinstance(pid, str) else None
                if purl is None:
                    continue
                k = (str(purl.type), purl_package_name(purl))
                base = canonical_purl(
                    PackageURL(purl.type, purl.namespace, purl.name).to_string()
                ) or str(purl.to_string())
                entry = packages.setdefault(k, (base, [], []))
                if purl.version:
                    (entry[1] if status == "affected" else entry[2]).append(str(purl.version))
    affected = tuple(
        AffectedPackage(
            purl_type=ptype,
            name=name,
            ecosystem=ptype,
            purl=base,
            versions=unique(versions),
            fixed=unique(fixed),
        )
        for (ptype, name), (base, versions, fixed) in packages.items()
    )
    notes = {
        opt_str(n, "category", p): opt_str(n, "text", p)
        for p, n in reversed(obj_list(head, "notes", "document"))
    }
    label = opt_obj(head, "aggregate_severity", "document")
    return Advisory(
        id=adv_id,
        aliases=sorted_unique(cves, exclude=adv_id),
        summary=opt_str(head, "title", "document"),
        details=notes.get("summary") or notes.get("description"),
        affected=affected,
        severities=tuple(severities),
        severity_label=opt_str(label, "text", "document.aggregate_severity") if label else None,
        cwe_ids=sorted_unique(cwes),
        references=unique(refs),
        published=opt_str(tracking, "initial_release_date", "document.tracking"),
        modified=opt_str(tracking, "current_release_date", "document.tracking"),
    )


def _header(doc: dict[str, Any]) -> tuple[dict[str, Any], DocType]:
    head = req_obj(doc, "document")
    version = req_str(head, "csaf_version", "document")
    if version != "2.0":
        raise Invalid("document.csaf_version", f"{version!r} is not supported (CSAF 2.0 is)")
    category = req_str(head, "category", "document")
    doc_type = PROFILES.get(category)
    if doc_type is None:
        if category.lower().startswith("csaf_"):
            raise Invalid("document.category", f"unknown CSAF profile {category!r}")
        doc_type = "advisory"  # the base profile, with a vendor's own category name
    req_str(req_obj(head, "publisher", "document"), "name", "document.publisher")
    req_str(req_obj(head, "tracking", "document"), "id", "document.tracking")
    return head, doc_type


def normalize(doc: dict[str, Any]) -> tuple[DocType, Advisory | VexDocument]:
    """The normalized view of one CSAF document.

    Raises:
        Invalid: a required CSAF field is missing or a field has the wrong type.
    """
    head, doc_type = _header(doc)
    tree = _Tree(doc)
    if doc_type == "advisory":
        return doc_type, _advisory(doc, tree, head)
    provider: str = head["publisher"]["name"]
    when = opt_str(head["tracking"], "current_release_date", "document.tracking")
    statements = _statements(doc, tree, provider, when)
    if not statements:
        raise Invalid(
            "vulnerabilities", "no product_status entries: the VEX document states nothing"
        )
    return doc_type, VexDocument(
        id=head["tracking"]["id"],
        format="csaf",
        provider=provider,
        statements=tuple(statements),
        timestamp=when,
    )


class CsafReader:
    """CSAF 2.0 JSON (format ``csaf``)."""

    name = "csaf"

    def sniff(self, doc: Any, filename: str) -> bool:
        return (
            isinstance(doc, dict)
            and isinstance(doc.get("document"), dict)
            and "csaf_version" in doc["document"]
        )

    def read(self, doc: Any, content: bytes, where: str) -> Iterator[ParsedRecord | RecordRefused]:
        try:
            doc_type, normalized = normalize(as_obj(doc, ""))
            upstream_id = check_upstream_id(normalized.id)
        except Invalid as e:
            yield RecordRefused(where, f"invalid CSAF document: {e.message}")
            return
        yield ParsedRecord(
            upstream_id=upstream_id,
            doc_type=doc_type,
            format="csaf",
            media_type=MEDIA_TYPE,
            content=content,
            normalized=normalized,
        )
