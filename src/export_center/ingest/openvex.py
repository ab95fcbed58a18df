"""OpenVEX documents, v0.2.0 and the earlier 0.0.x shape.

0.0.x (``@context`` ``https://openvex.dev/ns`` or ``…/v0.0.x``) writes ``vulnerability`` as a
string and ``products``/``subcomponents`` as lists of strings; 0.2.0 uses objects (``name`` and
``aliases``; ``@id``, ``identifiers`` and nested ``subcomponents``). Both shapes are accepted in
either version. Statements inherit the document ``timestamp`` when they have none.

A statement without products is refused: OpenVEX lets products come from an encapsulating
document, but a standalone document with such a statement is incomplete (spec, "Data
Inheritance").

Spec: https://github.com/openvex/spec/blob/main/OPENVEX-SPEC.md
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from export_center.ingest._common import (
    Invalid,
    as_obj,
    as_str,
    at,
    canonical_purl,
    check_upstream_id,
    content_id,
    opt_list,
    opt_obj,
    opt_str,
    req_str,
    sorted_unique,
    str_list,
    unique,
)
from export_center.ingest.interface import RecordRefused
from export_center.model import VEX_STATUSES, ParsedRecord, VexDocument, VexStatement

__all__ = ["JUSTIFICATIONS", "OpenVexReader"]

MEDIA_TYPE = "application/openvex+json"
CONTEXT_PREFIX = "https://openvex.dev/ns"
_CONTEXT = re.compile(r"^https://openvex\.dev/ns(?:/v(?P<version>0\.0\.\d+|0\.2\.0))?/?$")

#: The OpenVEX status justification labels (OPENVEX-SPEC.md, "Status Justifications").
JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)


def product_id(value: Any, path: str) -> str:
    """The identifier of an OpenVEX product or subcomponent: a string (0.0.x), or an object
    whose ``identifiers.purl`` wins over ``@id``, then ``cpe23``, then ``cpe22``. Purls are
    written in canonical form."""
    if isinstance(value, str):
        if not value:
            raise Invalid(path, "is empty")
        return canonical_purl(value) or value
    obj = as_obj(value, path)
    idents = opt_obj(obj, "identifiers", path) or {}
    ipath = at(path, "identifiers")
    purl = canonical_purl(opt_str(idents, "purl", ipath))
    if purl:
        return purl
    iri = opt_str(obj, "@id", path)
    if iri:
        return canonical_purl(iri) or iri
    for key in ("cpe23", "cpe22"):
        cpe = opt_str(idents, key, ipath)
        if cpe:
            return cpe
    raise Invalid(path, "has no @id and no identifiers (purl, cpe23 or cpe22)")


def _subcomponents(values: list[Any], path: str) -> tuple[str, ...]:
    return unique(product_id(v, at(path, i)) for i, v in enumerate(values))


def _vulnerability(st: dict[str, Any], path: str) -> tuple[str, tuple[str, ...]]:
    p = at(path, "vulnerability")
    value = st.get("vulnerability")
    if value is None:
        raise Invalid(p, "missing (required)")
    if isinstance(value, str):
        if not value:
            raise Invalid(p, "is empty")
        return value, ()
    obj = as_obj(value, p)
    # The schema requires "name"; Trivy's VEX repositories write only "@id" (an IRI that is
    # the vulnerability id), which go-vex accepts too.
    name = opt_str(obj, "name", p) or opt_str(obj, "@id", p)
    if name is None:
        raise Invalid(at(p, "name"), "missing (required; no @id either)")
    return name, sorted_unique(str_list(obj, "aliases", p), exclude=name)


def _statements(doc: dict[str, Any], provider: str, doc_time: str | None) -> list[VexStatement]:
    raw = opt_list(doc, "statements")
    if not raw:
        raise Invalid("statements", "missing or empty (a VEX document needs statements)")
    out: list[VexStatement] = []
    for i, item in enumerate(raw):
        path = at("statements", i)
        st = as_obj(item, path)
        vuln, aliases = _vulnerability(st, path)
        status = req_str(st, "status", path)
        if status not in VEX_STATUSES:
            raise Invalid(at(path, "status"), f"{status!r} is not one of {', '.join(VEX_STATUSES)}")
        justification = opt_str(st, "justification", path)
        if justification is not None and justification not in JUSTIFICATIONS:
            raise Invalid(
                at(path, "justification"),
                f"{justification!r} is not an OpenVEX justification ({', '.join(JUSTIFICATIONS)})",
            )
        products = opt_list(st, "products", path)
        if not products:
            raise Invalid(
                at(path, "products"),
                "missing: the statement names no product (inheriting products from an "
                "encapsulating document is not supported)",
            )
        # 0.0.x: subcomponents listed beside the products, applying to each of them.
        shared_subs = _subcomponents(opt_list(st, "subcomponents", path), at(path, "subcomponents"))
        impact = opt_str(st, "impact_statement", path)
        action = opt_str(st, "action_statement", path)
        when = opt_str(st, "timestamp", path) or doc_time
        for j, prod in enumerate(products):
            ppath = at(at(path, "products"), j)
            subs = shared_subs
            if isinstance(prod, dict):
                own = _subcomponents(
                    opt_list(prod, "subcomponents", ppath), at(ppath, "subcomponents")
                )
                subs = unique((*own, *shared_subs))
            out.append(
                VexStatement(
                    vulnerability=vuln,
                    product=product_id(prod, ppath),
                    status=status,
                    provider=provider,
                    aliases=aliases,
                    subcomponents=subs,
                    justification=justification,
                    impact_statement=impact,
                    action_statement=action,
                    timestamp=when,
                )
            )
    return out


def normalize(doc: dict[str, Any], content: bytes) -> VexDocument:
    """The normalized view of one OpenVEX document.

    Raises:
        Invalid: the document is not valid OpenVEX (the message names the field).
    """
    context = as_str(doc.get("@context"), "@context")
    if not _CONTEXT.match(context):
        raise Invalid("@context", f"unsupported OpenVEX version {context!r} (0.0.x and 0.2.0 are)")
    provider = req_str(doc, "author")
    doc_time = opt_str(doc, "timestamp") or opt_str(doc, "last_updated")
    statements = _statements(doc, provider, doc_time)
    doc_id = opt_str(doc, "@id") or content_id(content)
    return VexDocument(
        id=check_upstream_id(doc_id),
        format="openvex",
        provider=provider,
        statements=tuple(statements),
        timestamp=doc_time,
    )


class OpenVexReader:
    """OpenVEX JSON (format ``openvex``)."""

    name = "openvex"

    def sniff(self, doc: Any, filename: str) -> bool:
        if not isinstance(doc, dict):
            return False
        context = doc.get("@context")
        return isinstance(context, str) and context.startswith(CONTEXT_PREFIX)

    def read(self, doc: Any, content: bytes, where: str) -> Iterator[ParsedRecord | RecordRefused]:
        try:
            vex = normalize(as_obj(doc, ""), content)
        except Invalid as e:
            yield RecordRefused(where, f"invalid OpenVEX document: {e.message}")
            return
        yield ParsedRecord(
            upstream_id=vex.id,
            doc_type="vex",
            format="openvex",
            media_type=MEDIA_TYPE,
            content=content,
            normalized=vex,
        )
