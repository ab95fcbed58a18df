"""CycloneDX JSON, spec versions 1.2 to 1.6: SBOMs, and the VEX statements of a
``vulnerabilities`` array.

A BOM with components is an SBOM; its vulnerabilities' analyses ride along in ``Sbom.vex``. A
BOM with vulnerabilities and no components is a standalone VEX document. ``affects[].ref`` is
resolved through the ``bom-ref``s of this BOM (metadata component, components at any depth,
services); a BOM-link (``urn:cdx:<serial>/<version>#<bom-ref>``) into another BOM cannot be
resolved here and keeps its fragment when that is a purl, else the whole link.

A vulnerability without ``analysis.state`` is a finding, not an exploitability statement, and
yields no VEX statement; one without ``affects`` names no product and yields none either.

Spec: https://cyclonedx.org/docs/1.6/json/
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from export_center.ingest._common import (
    Invalid,
    as_obj,
    at,
    canonical_purl,
    check_upstream_id,
    content_id,
    file_label,
    obj_list,
    opt_obj,
    opt_str,
    parse_purl,
    purl_with_version,
    req_str,
    sorted_unique,
)
from export_center.ingest.interface import RecordRefused
from export_center.model import Component, ParsedRecord, Sbom, VexDocument, VexStatement

__all__ = ["CycloneDxReader"]

MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPEC_VERSIONS = ("1.2", "1.3", "1.4", "1.5", "1.6")

#: analysis.state → normalized VEX status.
STATES: dict[str, str] = {
    "not_affected": "not_affected",
    "false_positive": "not_affected",
    "exploitable": "affected",
    "resolved": "fixed",
    "resolved_with_pedigree": "fixed",
    "in_triage": "under_investigation",
}

#: analysis.justification → OpenVEX justification. CycloneDX is finer-grained: the
#: ``requires_*`` and ``protected_*`` labels all say that the vulnerable code is present but
#: cannot be exercised by an attacker here, so they map to the OpenVEX label with that meaning
#: and the original label is kept in the impact statement (see docs/formats.md).
JUSTIFICATIONS: dict[str, str] = {
    "code_not_present": "vulnerable_code_not_present",
    "code_not_reachable": "vulnerable_code_not_in_execute_path",
    "requires_configuration": "vulnerable_code_cannot_be_controlled_by_adversary",
    "requires_dependency": "vulnerable_code_cannot_be_controlled_by_adversary",
    "requires_environment": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_by_compiler": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_at_runtime": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_at_perimeter": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_by_mitigating_control": "inline_mitigations_already_exist",
}
_EXACT = ("code_not_present", "code_not_reachable", "protected_by_mitigating_control")


def hash_alg(alg: str) -> str:
    """``SHA-256`` → ``sha256``, ``SHA3-512`` → ``sha3512``, ``BLAKE2b-256`` → ``blake2b256``."""
    return alg.lower().replace("-", "").replace("_", "")


@dataclass(frozen=True)
class _Ref:
    """What a bom-ref points at, as a VEX product string."""

    product: str
    purl: str | None
    name: str


def _component(c: dict[str, Any], path: str) -> Component:
    purl = canonical_purl(opt_str(c, "purl", path))
    parsed = parse_purl(purl)
    hashes = tuple(
        (hash_alg(req_str(h, "alg", hp)), req_str(h, "content", hp).lower())
        for hp, h in obj_list(c, "hashes", path)
    )
    return Component(
        name=req_str(c, "name", path),
        version=opt_str(c, "version", path),
        purl=purl,
        purl_type=str(parsed.type) if parsed is not None else None,
        hashes=hashes,
        ref=opt_str(c, "bom-ref", path),
    )


def _flatten(node: dict[str, Any], path: str, out: list[Component]) -> None:
    """Components depth-first in source order, nested ``components`` after their parent."""
    for cpath, c in obj_list(node, "components", path):
        out.append(_component(c, cpath))
        _flatten(c, cpath, out)


def _label(name: str, version: str | None, purl: str | None) -> str:
    if purl:
        return purl
    return f"{name}@{version}" if version else name


def _refs(doc: dict[str, Any], components: list[Component]) -> dict[str, _Ref]:
    refs: dict[str, _Ref] = {}
    meta = opt_obj(doc, "metadata") or {}
    mc = opt_obj(meta, "component", "metadata")
    if mc is not None:
        c = _component(mc, "metadata.component")
        if c.ref:
            refs[c.ref] = _Ref(_label(c.name, c.version, c.purl), c.purl, c.name)
    for c in components:
        if c.ref:
            refs.setdefault(c.ref, _Ref(_label(c.name, c.version, c.purl), c.purl, c.name))
    for spath, s in obj_list(doc, "services"):
        ref = opt_str(s, "bom-ref", spath)
        if ref:
            name = req_str(s, "name", spath)
            refs.setdefault(ref, _Ref(_label(name, opt_str(s, "version", spath), None), None, name))
    return refs


def _resolve(ref: str, refs: dict[str, _Ref], serial: str | None) -> _Ref:
    if ref in refs:
        return refs[ref]
    if ref.startswith("urn:cdx:") and "#" in ref:
        bom, fragment = ref.split("#", 1)
        fragment = unquote(fragment)
        same_bom = serial and bom[len("urn:cdx:") :].split("/", 1)[0] == serial.removeprefix(
            "urn:uuid:"
        )
        if same_bom and fragment in refs:
            return refs[fragment]
        purl = canonical_purl(fragment)
        if purl:
            return _Ref(purl, purl, fragment)
    return _Ref(ref, None, ref)


def _products(
    affect: dict[str, Any], path: str, base: _Ref, state_status: str
) -> list[tuple[str, str]]:
    """(product, status) pairs of one ``affects`` entry.

    Without ``versions`` the product is the referenced component. With them, each version
    becomes its own product (the purl, or ``name@version``); a version *range* is appended to
    the product text so that it can never match an unversioned product (see docs/formats.md).
    The per-version ``status`` (affected/unaffected) overrides the analysis state.
    """
    entries = obj_list(affect, "versions", path)
    if not entries:
        return [(base.product, state_status)]
    out: list[tuple[str, str]] = []
    for vpath, entry in entries:
        vstatus = opt_str(entry, "status", vpath)
        status = {"affected": "affected", "unaffected": "not_affected"}.get(
            vstatus or "", state_status
        )
        if status == "affected" and state_status in ("fixed", "under_investigation"):
            status = state_status
        version = opt_str(entry, "version", vpath)
        vrange = opt_str(entry, "range", vpath)
        if version:
            product = (
                purl_with_version(base.purl, version) if base.purl else f"{base.name}@{version}"
            )
        elif vrange:
            product = f"{base.purl or base.name} {vrange}"
        else:
            raise Invalid(vpath, "has neither version nor range")
        out.append((product, status))
    return out


def _provider(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        for key in ("supplier", "manufacture", "manufacturer"):
            org = meta.get(key)
            if isinstance(org, dict) and isinstance(org.get("name"), str) and org["name"]:
                return str(org["name"])
        authors = meta.get("authors")
        if isinstance(authors, list):
            for a in authors:
                if isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"]:
                    return str(a["name"])
        mc = meta.get("component")
        if isinstance(mc, dict):
            sup = mc.get("supplier")
            if isinstance(sup, dict) and isinstance(sup.get("name"), str) and sup["name"]:
                return str(sup["name"])
    return "unknown"


def _statements(
    doc: dict[str, Any], refs: dict[str, _Ref], serial: str | None
) -> list[VexStatement]:
    provider = _provider(doc)
    meta = doc.get("metadata")
    doc_time = meta.get("timestamp") if isinstance(meta, dict) else None
    out: dict[VexStatement, None] = {}
    for vpath, v in obj_list(doc, "vulnerabilities"):
        analysis = opt_obj(v, "analysis", vpath)
        apath = at(vpath, "analysis")
        state = opt_str(analysis, "state", apath) if analysis is not None else None
        affects = obj_list(v, "affects", vpath)
        if analysis is None or state is None or not affects:
            continue
        vuln = req_str(v, "id", vpath)
        status = STATES.get(state)
        if status is None:
            raise Invalid(at(apath, "state"), f"unknown analysis state {state!r}")
        label = opt_str(analysis, "justification", apath)
        justification = None
        if label is not None:
            justification = JUSTIFICATIONS.get(label)
            if justification is None:
                raise Invalid(at(apath, "justification"), f"unknown justification {label!r}")
        detail = opt_str(analysis, "detail", apath)
        if label is not None and label not in _EXACT and not detail:
            detail = f"CycloneDX justification: {label}"
        if state == "false_positive" and not detail:
            detail = "CycloneDX analysis state: false_positive"
        raw_responses = analysis.get("response")
        responses = (
            [r for r in raw_responses if isinstance(r, str)]
            if isinstance(raw_responses, list)
            else []
        )
        action = opt_str(v, "recommendation", vpath) or (
            f"response: {', '.join(responses)}" if responses else None
        )
        aliases = sorted_unique(
            (opt_str(r, "id", p) or "" for p, r in obj_list(v, "references", vpath)), exclude=vuln
        )
        when = (
            opt_str(analysis, "lastUpdated", apath)
            or opt_str(analysis, "firstIssued", apath)
            or opt_str(v, "updated", vpath)
            or opt_str(v, "published", vpath)
            or (doc_time if isinstance(doc_time, str) else None)
        )
        for fpath, affect in affects:
            base = _resolve(req_str(affect, "ref", fpath), refs, serial)
            for product, st_status in _products(affect, fpath, base, status):
                not_affected = st_status == "not_affected"
                st = VexStatement(
                    vulnerability=vuln,
                    product=product,
                    status=st_status,
                    provider=provider,
                    aliases=aliases,
                    justification=justification if not_affected else None,
                    impact_statement=detail if not_affected else None,
                    action_statement=None if not_affected else action,
                    timestamp=when,
                )
                out.setdefault(st, None)
    return list(out)


def normalize(doc: dict[str, Any], content: bytes, where: str) -> tuple[str, Sbom | VexDocument]:
    """(upstream id, normalized view) of one CycloneDX BOM.

    The upstream id is the ``serialNumber``; else the subject when the metadata names a
    component; else the content digest (a file name is no identity: every CISA example is
    called ``vex.json``).

    Raises:
        Invalid: the BOM is not valid CycloneDX JSON 1.2–1.6 (the message names the field).
    """
    spec = req_str(doc, "specVersion")
    if spec not in SPEC_VERSIONS:
        raise Invalid("specVersion", f"{spec!r} is not supported ({', '.join(SPEC_VERSIONS)} are)")
    components: list[Component] = []
    _flatten(doc, "", components)
    meta = opt_obj(doc, "metadata") or {}
    mc = opt_obj(meta, "component", "metadata")
    subject_component = _component(mc, "metadata.component") if mc is not None else None
    serial = opt_str(doc, "serialNumber")
    if subject_component is not None:
        subject = _label(subject_component.name, subject_component.version, subject_component.purl)
        upstream = serial or subject
    else:
        subject = serial or file_label(where)
        upstream = serial or content_id(content)
    check_upstream_id(upstream)
    statements = _statements(doc, _refs(doc, components), serial)
    if not components and obj_list(doc, "vulnerabilities"):
        if not statements:
            raise Invalid(
                "vulnerabilities",
                "a VEX BOM (no components) whose vulnerabilities state nothing: none has both "
                "analysis.state and affects[]",
            )
        return upstream, VexDocument(
            id=upstream,
            format="cyclonedx",
            provider=_provider(doc),
            statements=tuple(statements),
            timestamp=opt_str(meta, "timestamp", "metadata"),
        )
    return upstream, Sbom(
        subject=subject,
        format="cyclonedx",
        spec_version=spec,
        name=subject_component.name if subject_component is not None else None,
        components=tuple(components),
        vex=tuple(statements),
    )


class CycloneDxReader:
    """CycloneDX JSON (format ``cyclonedx``): SBOM, or VEX when it has no components."""

    name = "cyclonedx"

    def sniff(self, doc: Any, filename: str) -> bool:
        return isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX"

    def read(self, doc: Any, content: bytes, where: str) -> Iterator[ParsedRecord | RecordRefused]:
        try:
            upstream_id, normalized = normalize(as_obj(doc, ""), content, where)
        except Invalid as e:
            yield RecordRefused(where, f"invalid CycloneDX document: {e.message}")
            return
        yield ParsedRecord(
            upstream_id=upstream_id,
            doc_type="vex" if isinstance(normalized, VexDocument) else "sbom",
            format="cyclonedx",
            media_type=MEDIA_TYPE,
            content=content,
            normalized=normalized,
        )
