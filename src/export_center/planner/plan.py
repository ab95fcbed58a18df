"""Plans: a profile revision + its resolved selectors, pinned to the store's as-of cursor."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import rfc8785

from export_center.errors import BadInputError, NotFoundError
from export_center.planner.profiles import ProfileSpec, Selectors
from export_center.planner.registry import ProfileRevisionView
from export_center.store.repository import EvidenceStore

# The as-of time of an empty store: a fixed instant, so an empty export is reproducible too.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ExportPlan:
    tenant: str
    profile_name: str
    revision: int
    spec: ProfileSpec
    selectors: Selectors  # resolved: the profile's tenant filled in
    as_of_seq: int
    as_of_time: datetime
    export_id: str
    counts: dict[str, int]

    def as_of_rfc3339(self) -> str:
        return self.as_of_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_selectors(tenant: str, selectors: Selectors) -> Selectors:
    """Fill defaults: the tenant list must include (and by default is) the profile's tenant.

    Raises:
        BadInputError: the selectors name other tenants only.
    """
    tenants = selectors.tenants or (tenant,)
    if tenant not in tenants:
        raise BadInputError(
            f"selectors.tenants {list(tenants)} must include the profile's tenant {tenant!r}"
        )
    if len(tenants) > 1:
        raise BadInputError(
            f"cross-tenant exports are not supported: selectors.tenants may only name {tenant!r}"
        )
    return selectors.model_copy(update={"tenants": tenants})


def derive_export_id(
    tenant: str, name: str, revision: int, selectors: Selectors, as_of_seq: int
) -> str:
    """Deterministic export id: readable prefix + digest of everything that defines the export."""
    material = rfc8785.dumps(
        {
            "tenant": tenant,
            "profile": name,
            "revision": revision,
            "selectors": selectors.model_dump(mode="json", by_alias=True),
            "asOf": as_of_seq,
        }
    )
    digest = hashlib.sha256(material).hexdigest()[:16]
    prefix = f"{name[:30]}-r{revision}-s{as_of_seq}"
    return f"{prefix}-{digest}"[:64].strip("-")


def make_plan(
    store: EvidenceStore, profile: ProfileRevisionView, *, as_of_seq: int | None = None
) -> ExportPlan:
    """Pin the profile revision to the store's current sequence (or a given earlier one).

    Raises:
        NotFoundError: ``as_of_seq`` is beyond the store's sequence.
        BadInputError: invalid selectors, or a revision written by an earlier version that
            names what is no longer accepted (a server file, a key prefix).
    """
    if profile.problem is not None:
        raise BadInputError(
            f"profile {profile.name} r{profile.revision} cannot run: {profile.problem}",
            hint=f"add a revision: `stella export profile revise {profile.name} ...`",
        )
    tenant = profile.tenant
    current = store.current_sequence(tenant)
    seq = current if as_of_seq is None else as_of_seq
    if seq < 0 or seq > current:
        raise NotFoundError(f"as-of sequence {seq} does not exist (tenant is at {current})")
    selectors = resolve_selectors(tenant, profile.spec.selectors)
    at = store.sequence_time(tenant, seq) if seq else None
    return ExportPlan(
        tenant=tenant,
        profile_name=profile.name,
        revision=profile.revision,
        spec=profile.spec,
        selectors=selectors,
        as_of_seq=seq,
        as_of_time=(at or EPOCH).replace(microsecond=0),
        export_id=derive_export_id(tenant, profile.name, profile.revision, selectors, seq),
        counts=store.counts(tenant, seq),
    )
