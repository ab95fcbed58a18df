"""The I/O edge of the policy overlay: read the evidence store as of a cursor, evaluate, render.

An export adapter (``json:policy``) needs one call::

    outputs = overlay_from_store(store, tenant, as_of_seq, policy)
    for path, data in outputs.files():   # data/policy/snapshot.json, …/evaluations.jsonl,
        ...                              # data/consensus/vex_consensus.jsonl (uncompressed)

Advisories are streamed from the normalized records straight into the index (raw documents are
never loaded); SBOMs and VEX statements are read whole, since evaluation needs them all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from export_center.errors import BadInputError, DocumentRefused, NotFoundError
from export_center.ingest.detect import detect, parse_document
from export_center.ingest.interface import RecordRefused
from export_center.model import (
    ParsedRecord,
    Sbom,
    VexStatement,
    advisory_from_json,
    component_from_json,
    vex_statement_from_json,
)
from export_center.policy.document import Policy
from export_center.policy.evaluate import AsOf, Evaluation, PolicyOutputs, evaluate, render
from export_center.policy.matching import AdvisoryIndex
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)


def sbom_from_json(d: dict[str, Any]) -> Sbom:
    """Inverse of ``to_json_dict`` for :class:`Sbom`."""
    return Sbom(
        subject=d["subject"],
        format=d["format"],
        spec_version=d["spec_version"],
        name=d.get("name"),
        components=tuple(component_from_json(c) for c in d.get("components", ())),
        vex=tuple(vex_statement_from_json(s) for s in d.get("vex", ())),
    )


def resolve_as_of(store: EvidenceStore, tenant: str, seq: int | None = None) -> AsOf:
    """The cursor to evaluate over: ``seq``, or the tenant's newest sequence.

    Raises:
        NotFoundError: the tenant has no evidence, or ``seq`` is beyond its newest sequence.
    """
    newest = store.current_sequence(tenant)
    if newest == 0:
        raise NotFoundError(
            f"tenant {tenant!r} has no evidence",
            hint="ingest advisories (and VEX) first: stella ingest PATH --source NAME",
        )
    use = newest if seq is None else seq
    if use < 1 or use > newest:
        raise NotFoundError(
            f"sequence {use} does not exist for tenant {tenant!r} (newest: {newest})"
        )
    at = store.sequence_time(tenant, use)
    if at is None:
        raise NotFoundError(f"no change-log entry for sequence {use} of tenant {tenant!r}")
    return AsOf(time=at, tenant=tenant, seq=use)


def load_index(store: EvidenceStore, as_of: AsOf) -> AdvisoryIndex:
    """Stream the advisories visible at the cursor into an index (withdrawn ones left out)."""
    tenant, seq = _cursor(as_of)
    index = AdvisoryIndex(as_of=as_of.time)
    for row in store.iter_normalized(tenant, seq, record_type="advisory"):
        if row.withdrawn:
            index.withdrawn += 1
            continue
        index.add(advisory_from_json(orjson.loads(row.data)))
    return index


def load_statements(store: EvidenceStore, as_of: AsOf) -> list[VexStatement]:
    """Every VEX statement visible at the cursor: VEX documents, and those carried in SBOMs."""
    tenant, seq = _cursor(as_of)
    out: list[VexStatement] = []
    for row in store.iter_normalized(tenant, seq, record_type="vex", include_withdrawn=False):
        out.extend(vex_statement_from_json(s) for s in orjson.loads(row.data).get("statements", ()))
    for row in store.iter_normalized(tenant, seq, record_type="sbom", include_withdrawn=False):
        out.extend(vex_statement_from_json(s) for s in orjson.loads(row.data).get("vex", ()))
    return out


def load_sboms(
    store: EvidenceStore, as_of: AsOf, subjects: Sequence[str] | None = None
) -> list[Sbom]:
    """The SBOMs visible at the cursor, all of them or those of ``subjects``.

    Raises:
        NotFoundError: a named subject has no SBOM at the cursor.
    """
    tenant, seq = _cursor(as_of)
    wanted = set(subjects) if subjects is not None else None
    out: list[Sbom] = []
    for row in store.iter_normalized(tenant, seq, record_type="sbom", include_withdrawn=False):
        if wanted is not None and row.record_key not in wanted:
            continue
        sbom = sbom_from_json(orjson.loads(row.data))
        # The SBOM's own VEX statements are loaded with every other statement.
        out.append(Sbom(sbom.subject, sbom.format, sbom.spec_version, sbom.name, sbom.components))
    if wanted is not None:
        missing = sorted(wanted - {s.subject for s in out})
        if missing:
            raise NotFoundError(
                f"no SBOM for subject {', '.join(missing)} in tenant {tenant!r} at sequence {seq}",
                hint="give an SBOM file instead, or ingest the SBOM first",
            )
    return out


def parse_sbom_file(content: bytes, where: str) -> list[Sbom]:
    """The SBOM(s) of a CycloneDX or SPDX JSON file, read with the ingest readers.

    Raises:
        BadInputError: the file is not an SBOM we can read (the reason says why).
    """
    try:
        doc = parse_document(content, where)
        records = list(detect(doc, where).read(doc, content, where))
    except DocumentRefused as e:
        raise BadInputError(f"{e.where}: {e.reason}") from e
    sboms = [
        r.normalized
        for r in records
        if isinstance(r, ParsedRecord) and isinstance(r.normalized, Sbom)
    ]
    if not sboms:
        reasons = "; ".join(
            f"{r.where}: {r.reason}" for r in records if isinstance(r, RecordRefused)
        )
        raise BadInputError(
            f"{where}: not an SBOM" + (f" ({reasons})" if reasons else ""),
            hint="give a CycloneDX or SPDX JSON SBOM, or the subject of a stored SBOM",
        )
    return sboms


def evaluate_store(
    store: EvidenceStore,
    tenant: str,
    policy: Policy,
    *,
    as_of_seq: int | None = None,
    subjects: Sequence[str] | None = None,
    sboms: Sequence[Sbom] | None = None,
) -> Evaluation:
    """Evaluate SBOMs against the store's advisories and VEX as of a cursor.

    ``sboms`` (e.g. from :func:`parse_sbom_file`) are evaluated instead of stored ones; else
    the stored SBOMs of ``subjects``, else every stored SBOM.

    Raises:
        NotFoundError: no evidence for the tenant, a bad sequence, or an unknown subject.
    """
    as_of = resolve_as_of(store, tenant, as_of_seq)
    index = load_index(store, as_of)
    statements = load_statements(store, as_of)
    targets = list(sboms) if sboms is not None else load_sboms(store, as_of, subjects)
    log.info(
        "evaluating %d SBOM(s) against %d advisories and %d VEX statements at %s:%s",
        len(targets),
        index.advisories,
        len(statements),
        tenant,
        as_of.seq,
    )
    return evaluate(targets, index, statements, policy, as_of)


def overlay_from_store(
    store: EvidenceStore,
    tenant: str,
    as_of_seq: int,
    policy: Policy,
    *,
    subjects: Sequence[str] | None = None,
) -> PolicyOutputs:
    """The json:policy overlay files for a store, tenant, cursor and policy (every stored SBOM
    unless ``subjects`` narrows it down)."""
    return render(evaluate_store(store, tenant, policy, as_of_seq=as_of_seq, subjects=subjects))


def _cursor(as_of: AsOf) -> tuple[str, int]:
    if as_of.tenant is None or as_of.seq is None:
        raise BadInputError("reading the store needs an as-of cursor with tenant and sequence")
    return as_of.tenant, as_of.seq
