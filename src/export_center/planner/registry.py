"""Profile revisions in the database: create, revise, archive, look up. Revisions are immutable.

Writing a revision is where a profile is checked completely, so that an accepted revision can
run (issue: "never accepted and then failing at run"): the model of its kind
(:mod:`export_center.planner.profiles`), then what only the server knows, through the
``references`` hook the process wires in (:class:`export_center.exporter.ProfileReferences`):
that the keys, policies, KMS keys and base exports it names are its tenant's, pinning the
policy's digest and the base's manifest digest into the revision.

Revisions written by earlier versions may name what is no longer accepted (a server file as
policy or base, a key prefix, a PKCS#11 URI). They stay readable (``problem`` says what is
wrong, the fields in question are left out) and cannot run until a new revision replaces them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import ColumnElement, ScalarSelect, Select, bindparam, func, select
from sqlalchemy.orm import aliased

from export_center.errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    RequestValidationFailed,
)
from export_center.planner.options import MirrorOptions
from export_center.planner.profiles import (
    PROFILE_TAGS,
    ProfileKind,
    ProfileSpec,
    check_profile_name,
    invalid_profile,
    parse_profile_spec,
    spec_adapter,
)
from export_center.store.models import Profile, ProfileRevision
from export_center.store.repository import EvidenceStore, check_tenant

log = logging.getLogger(__name__)

#: Checks what a profile names against its tenant's resources and pins them (tenant, spec).
References = Callable[[str, ProfileSpec], ProfileSpec]


@dataclass(frozen=True)
class ProfileRevisionView:
    tenant: str
    name: str
    revision: int
    spec: ProfileSpec
    digest: str
    archived: bool
    created_at: datetime
    # Why a revision written by an earlier version cannot run any more (None: it can).
    problem: str | None = None


def _names_references(spec: ProfileSpec) -> list[str]:
    out = []
    if spec.signing.key is not None:
        out.append("signing.key")
    if spec.policy.name is not None:
        out.append("policy.name")
    opts = spec.options
    if isinstance(opts, MirrorOptions):
        if opts.encryption is not None and opts.encryption.kms:
            out.append("options.encryption.kms")
        base = getattr(opts, "base", None)
        if base is not None and base.export_id is not None:
            out.append("options.base.exportId")
    return out


class ProfileRegistry:
    """The tenants' profiles.

    ``references`` checks and pins what a revision names (keys, policies, KMS keys, base
    exports; see the module docstring); without it, a revision that names any of them is
    refused. ``exportable``: the kinds runs can export (default: every kind); a revision of
    another kind is refused when it is written, not when it runs.
    """

    def __init__(
        self,
        store: EvidenceStore,
        *,
        references: References | None = None,
        exportable: Collection[ProfileKind] | None = None,
    ) -> None:
        self.store = store
        self.references = references
        self.exportable = frozenset(exportable) if exportable is not None else None

    def check(self, tenant: str, spec: ProfileSpec) -> ProfileSpec:
        """``spec`` as a revision of ``tenant`` would store it: checked, references pinned.

        Raises:
            RequestValidationFailed: (a BadInputError) naming each refused field.
        """
        check_tenant(tenant)
        problems: list[dict[str, str]] = []
        kind = spec.profile_kind
        if self.exportable is not None and kind not in self.exportable:
            supported = ", ".join(sorted(k.value for k in self.exportable))
            problems.append(
                {
                    "field": "kind",
                    "message": f"profile {kind.value} cannot be exported yet "
                    f"(supported: {supported})",
                }
            )
        others = [t for t in spec.selectors.tenants if t != tenant]
        if others:
            problems.append(
                {
                    "field": "selectors.tenants",
                    "message": f"may only name the profile's tenant {tenant!r} (cross-tenant "
                    f"exports are not supported; {others[0]!r} given)",
                }
            )
        if self.references is None:
            problems += [
                {"field": f, "message": "this registry cannot check references"}
                for f in _names_references(spec)
            ]
        if problems:
            raise invalid_profile(f"profile for tenant {tenant}", problems)
        return self.references(tenant, spec) if self.references is not None else spec

    def create(self, tenant: str, name: str, spec: ProfileSpec) -> ProfileRevisionView:
        """Create profile ``name`` with revision 1.

        Raises:
            ConflictError: the profile already exists for this tenant.
            RequestValidationFailed: the spec names what is not the tenant's (:meth:`check`).
        """
        check_tenant(tenant)
        check_profile_name(name)
        spec = self.check(tenant, spec)
        now = datetime.now(UTC)
        with self.store.session() as s, s.begin():
            exists = s.execute(
                select(Profile.id).where(Profile.tenant == tenant, Profile.name == name)
            ).scalar_one_or_none()
            if exists is not None:
                raise ConflictError(
                    f"profile {name!r} already exists for tenant {tenant!r}",
                    hint="use `stella export profile revise` to add a revision",
                )
            prof = Profile(tenant=tenant, name=name, archived=False, created_at=now)
            s.add(prof)
            s.flush()
            s.add(self._revision_row(prof.id, 1, spec, now))
        return self.get(tenant, name, 1)

    def revise(self, tenant: str, name: str, spec: ProfileSpec) -> ProfileRevisionView:
        """Add the next revision (an identical body returns the current revision unchanged).

        Raises:
            NotFoundError: no such profile. ConflictError: it is archived.
            RequestValidationFailed: the spec names what is not the tenant's (:meth:`check`).
        """
        self._exists(tenant, name)
        spec = self.check(tenant, spec)
        now = datetime.now(UTC)
        with self.store.session() as s, s.begin():
            prof = self._profile(s, tenant, name, for_update=True)
            if prof.archived:
                raise ConflictError(f"profile {name!r} is archived")
            last = s.execute(
                select(ProfileRevision)
                .where(ProfileRevision.profile_id == prof.id)
                .order_by(ProfileRevision.revision.desc())
                .limit(1)
            ).scalar_one()
            if last.digest == spec.digest():
                rev = last.revision
            else:
                rev = last.revision + 1
                s.add(self._revision_row(prof.id, rev, spec, now))
        return self.get(tenant, name, rev)

    def archive(self, tenant: str, name: str) -> None:
        with self.store.session() as s, s.begin():
            self._profile(s, tenant, name, for_update=True).archived = True

    def get(self, tenant: str, name: str, revision: int | None = None) -> ProfileRevisionView:
        """A revision (the newest when ``revision`` is None).

        Raises:
            NotFoundError: no such profile or revision for this tenant.
        """
        with self.store.session() as s:
            if revision is None:
                params: dict[str, Any] = {"tenant": tenant, "name": name}
                found = s.execute(_GET_NEWEST, params).one_or_none()
            else:
                params = {"tenant": tenant, "name": name, "revision": revision}
                found = s.execute(_GET_REVISION, params).one_or_none()
            if found is None:
                self._profile(s, tenant, name)  # no such profile: say so
                raise NotFoundError(f"profile {name!r} has no revision r{revision}")
            archived, row = found
            return _revision_view(tenant, name, archived, row)

    def list(
        self, tenant: str, *, offset: int = 0, limit: int = 100, include_archived: bool = False
    ) -> tuple[list[ProfileRevisionView], int]:
        """A page of the tenant's profiles by name, each at its newest revision."""
        count, page = _LIST_ALL if include_archived else _LIST_ACTIVE
        with self.store.session() as s:
            total = s.execute(count, {"tenant": tenant}).scalar_one()
            rows = s.execute(page, {"tenant": tenant, "offset": offset, "limit": limit}).all()
            views = [_revision_view(tenant, n, a, r) for n, a, r in rows]
        return views, int(total)

    def _exists(self, tenant: str, name: str) -> None:
        with self.store.session() as s:
            prof = self._profile(s, tenant, name)
            if prof.archived:
                raise ConflictError(f"profile {name!r} is archived")

    @staticmethod
    def _revision_row(
        profile_id: int, rev: int, spec: ProfileSpec, now: datetime
    ) -> ProfileRevision:
        return ProfileRevision(
            profile_id=profile_id,
            revision=rev,
            spec=spec.canonical().decode(),
            digest=spec.digest(),
            created_at=now,
        )

    @staticmethod
    def _profile(s: object, tenant: str, name: str, *, for_update: bool = False) -> Profile:
        from sqlalchemy.orm import Session

        assert isinstance(s, Session)
        stmt = select(Profile).where(Profile.tenant == tenant, Profile.name == name)
        if for_update:
            stmt = stmt.with_for_update()
        prof = s.execute(stmt).scalar_one_or_none()
        if prof is None:
            raise NotFoundError(f"no profile {name!r} for tenant {tenant!r}")
        return prof


# Statements of the API's frequent reads, built once: building a statement costs more than
# running it (SQLAlchemy caches the compiled SQL, not the construction).
def _newest_revision() -> ScalarSelect[Any]:
    newest = aliased(ProfileRevision)
    return (
        select(func.max(newest.revision)).where(newest.profile_id == Profile.id).scalar_subquery()
    )


def _list_statements(
    include_archived: bool,
) -> tuple[Select[int], Select[str, bool, ProfileRevision]]:
    """Count and page of a tenant's profiles at their newest revision."""
    where = [Profile.tenant == bindparam("tenant")]
    if not include_archived:
        where.append(Profile.archived.is_(False))
    count = select(func.count()).select_from(Profile).where(*where)
    page = (
        select(Profile.name, Profile.archived, ProfileRevision)
        .join(ProfileRevision, ProfileRevision.profile_id == Profile.id)
        .where(*where, ProfileRevision.revision == _newest_revision())
        .order_by(Profile.name)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    return count, page


def _get_statement(revision: ColumnElement[Any]) -> Select[bool, ProfileRevision]:
    return (
        select(Profile.archived, ProfileRevision)
        .join(ProfileRevision, ProfileRevision.profile_id == Profile.id)
        .where(
            Profile.tenant == bindparam("tenant"),
            Profile.name == bindparam("name"),
            ProfileRevision.revision == revision,
        )
    )


_LIST_ALL = _list_statements(include_archived=True)
_LIST_ACTIVE = _list_statements(include_archived=False)
_GET_NEWEST = _get_statement(_newest_revision())
_GET_REVISION = _get_statement(bindparam("revision"))


def _revision_view(
    tenant: str, name: str, archived: bool, row: ProfileRevision
) -> ProfileRevisionView:
    spec, problem = _stored_spec(row.spec, f"profile {name} r{row.revision}")
    return ProfileRevisionView(
        tenant=tenant,
        name=name,
        revision=row.revision,
        spec=spec,
        digest=row.digest,
        archived=archived,
        created_at=row.created_at,
        problem=problem,
    )


# ---- revisions written by earlier versions --------------------------------------------------


def _drop(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Remove the value at ``loc`` from nested dicts/lists; whether something was removed."""
    parts = [p for i, p in enumerate(loc) if not (i == 0 and p in PROFILE_TAGS)]
    if not parts:
        return False
    node = data
    for part in parts[:-1]:
        if not _has(node, part):
            return False
        node = node[part]
    if not _has(node, parts[-1]):
        return False
    del node[parts[-1]]
    return True


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)


#: What a field left out of an old revision becomes, when leaving it out is not enough.
_SAFE: dict[str, Any] = {
    "policy": {"policySnapshotMode": "none"},
    "options": {"resetBaseline": True},
}


@functools.lru_cache(maxsize=1024)
def _stored_spec(text: str, where: str) -> tuple[ProfileSpec, str | None]:
    # Revisions are immutable and specs frozen: every read of a profile (the API's most
    # frequent) parsed the same text again, ~0.3 ms each.
    return load_stored_spec(text, where)


def load_stored_spec(text: str, where: str) -> tuple[ProfileSpec, str | None]:
    """A stored revision's spec, and why it cannot run (None when it can).

    A revision that the current model refuses keeps its readable fields; the refused ones are
    left out (so the view is safe to show) and the problem is returned.

    Raises:
        BadInputError: the stored spec cannot be read at all.
    """
    data = orjson.loads(text)
    try:
        return parse_profile_spec(data, where), None
    except RequestValidationFailed as e:
        problem = e.message
    adapter = spec_adapter()
    for _ in range(32):
        try:
            spec = adapter.validate_python(data)
        except ValidationError as e:
            progress = False
            for err in e.errors():
                loc = tuple(err["loc"])
                top = next((str(p) for p in loc if p not in PROFILE_TAGS), None)
                progress = _drop(data, loc) or progress
                safe = _SAFE.get(top or "")
                if not progress and safe is not None and data.get(top) != safe:
                    data[top] = dict(safe)
                    progress = True
            if not progress:
                break
            continue
        log.warning("%s", problem)
        return spec, problem
    raise BadInputError(problem, hint="the revision cannot be read by this version")
