"""The base of a mirror:delta: which earlier export the delta is relative to.

The base is named by its export id and the sha256 of its ``manifests/export.json`` (the
manifest digest), and its as-of sequence is the delta's lower cursor. All three come from the
server's own ledger of published exports (:mod:`export_center.store.published`), never from a
file or directory a tenant names (security.md, "Tenant <-> server"):

- ``base: {exportId: ...}``: that export of the profile's tenant; the registry pins its
  manifest digest when the revision is written (:func:`check_base`), so reruns use the same
  base;
- ``base: {latest: true}``: at each run, the newest earlier mirror export of the tenant with
  the same selection; when there is none yet the delta is a full replacement
  (``resetBaseline``), so a chain of deltas can start from nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from export_center.bundle.manifest import EXPORT_JSON, MirrorSection, parse_manifest
from export_center.digests import prefixed, sha256_hex
from export_center.errors import BadInputError, ConflictError, NotFoundError, VerificationError
from export_center.mirror.options import BaseRef
from export_center.planner.profiles import Selectors
from export_center.store.published import find_published, published_of_kind
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseInfo:
    export_id: str
    manifest_digest: str
    sequence: int
    tenant: str | None = None
    selectors: Selectors | None = None
    mirror: MirrorSection | None = None  # the base's "mirror" manifest section


def base_from_manifest(raw: bytes, where: str) -> BaseInfo:
    """Parse the facts a delta needs from a base manifest.

    Raises:
        BadInputError: not an export manifest, or not a mirror bundle.
    """
    try:
        m = parse_manifest(raw, f"{where}: {EXPORT_JSON}", check="base manifest")
    except VerificationError as e:
        raise BadInputError(e.message) from e
    if m.profile.kind != "mirror":
        raise BadInputError(f"{where}: export {m.export_id} is not a mirror bundle")
    return BaseInfo(
        export_id=m.export_id,
        manifest_digest=prefixed(sha256_hex(raw)),
        sequence=m.as_of.sequence,
        tenant=m.tenant,
        selectors=m.selectors,
        mirror=m.mirror,
    )


def _as_json(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True)


def selection_mismatch(base: BaseInfo, selectors: Selectors, mirror: MirrorSection) -> str | None:
    """Why ``base`` cannot be the base of a delta with this selection (None when it can).

    A delta is only meaningful against a base that selected the same records. Compared as
    written in the manifests (JSON), which is what the base signed.
    """
    if base.selectors is not None and _as_json(base.selectors) != _as_json(selectors):
        return f"base export {base.export_id} was made with other selectors than this delta"
    if base.mirror is not None:
        theirs, ours = _as_json(base.mirror), _as_json(mirror)
        for key in ("include", "includeWithdrawn"):
            if theirs[key] != ours[key]:
                return (
                    f"base export {base.export_id} has mirror.{key} {theirs[key]!r}, "
                    f"this delta {ours[key]!r}"
                )
    return None


def check_base(
    store: EvidenceStore,
    tenant: str,
    export_id: str,
    manifest_digest: str | None,
    selectors: Selectors,
    mirror: MirrorSection,
) -> BaseInfo:
    """The published mirror export ``export_id`` of ``tenant``, checked as a delta base for
    this selection (when a revision is written, and again at each run).

    Raises:
        NotFoundError: this instance published no such export for this tenant (another
            tenant's export id is answered the same way).
        BadInputError: not a mirror export, or another selection.
        ConflictError: the ledger row does not hash to its digest.
    """
    row = find_published(store, tenant, export_id, manifest_digest)
    if row is None:
        which = f" with manifest {manifest_digest}" if manifest_digest else ""
        raise NotFoundError(
            f"no published export {export_id!r}{which} of tenant {tenant!r}",
            hint="a base is a mirror export this server published for the same tenant",
        )
    if prefixed(sha256_hex(row.manifest)) != row.manifest_digest:
        raise ConflictError(f"the ledger's manifest of export {export_id} was altered")
    info = base_from_manifest(row.manifest, f"export {export_id}")
    if info.tenant != tenant:  # the ledger is keyed by tenant; the signed manifest agrees
        raise ConflictError(f"export {export_id}: the ledger and its manifest disagree on tenant")
    problem = selection_mismatch(info, selectors, mirror)
    if problem:
        raise BadInputError(
            problem, hint="use the same selectors as the base, or options.resetBaseline: true"
        )
    return info


def resolve_base(
    store: EvidenceStore,
    ref: BaseRef,
    *,
    tenant: str,
    as_of_seq: int,
    export_id: str,
    selectors: Selectors,
    mirror: MirrorSection,
) -> BaseInfo | None:
    """The base a delta export names; None for ``latest`` when there is no earlier mirror
    export with this selection yet (the delta is then a full replacement).

    Raises:
        NotFoundError: the named base is not in the ledger.
        BadInputError: the base is not a mirror export of this selection, or is newer than the
            delta's as-of sequence.
    """
    if ref.export_id is not None:
        info = check_base(store, tenant, ref.export_id, ref.manifest_digest, selectors, mirror)
        if info.sequence > as_of_seq:
            raise BadInputError(
                f"base export {info.export_id} is as of sequence {info.sequence}, after this "
                f"export's {as_of_seq}"
            )
        return info
    for row in published_of_kind(store, tenant, "mirror", max_seq=as_of_seq):
        if row.export_id == export_id:
            continue  # a rerun of this very export is not its own base
        try:
            info = base_from_manifest(row.manifest, f"export {row.export_id}")
        except BadInputError as e:
            log.warning("ledger entry %s is not a usable base: %s", row.export_id, e.message)
            continue
        if info.tenant == tenant and selection_mismatch(info, selectors, mirror) is None:
            return info
    return None
