"""Profile revisions in the database: create, revise, archive, look up. Revisions are immutable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import func, select

from export_center.errors import ConflictError, NotFoundError
from export_center.planner.profiles import ProfileSpec, check_profile_name, parse_profile_spec
from export_center.store.models import Profile, ProfileRevision
from export_center.store.repository import EvidenceStore, check_tenant


@dataclass(frozen=True)
class ProfileRevisionView:
    tenant: str
    name: str
    revision: int
    spec: ProfileSpec
    digest: str
    archived: bool
    created_at: datetime


class ProfileRegistry:
    def __init__(self, store: EvidenceStore) -> None:
        self.store = store

    def create(self, tenant: str, name: str, spec: ProfileSpec) -> ProfileRevisionView:
        """Create profile ``name`` with revision 1.

        Raises:
            ConflictError: the profile already exists for this tenant.
        """
        check_tenant(tenant)
        check_profile_name(name)
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
        """Add the next revision (an identical body returns the current revision unchanged)."""
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
            prof = self._profile(s, tenant, name)
            stmt = select(ProfileRevision).where(ProfileRevision.profile_id == prof.id)
            if revision is None:
                stmt = stmt.order_by(ProfileRevision.revision.desc()).limit(1)
            else:
                stmt = stmt.where(ProfileRevision.revision == revision)
            row = s.execute(stmt).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"profile {name!r} has no revision r{revision}")
            return ProfileRevisionView(
                tenant=tenant,
                name=name,
                revision=row.revision,
                spec=parse_profile_spec(orjson.loads(row.spec), f"profile {name} r{row.revision}"),
                digest=row.digest,
                archived=prof.archived,
                created_at=row.created_at,
            )

    def list(
        self, tenant: str, *, offset: int = 0, limit: int = 100, include_archived: bool = False
    ) -> tuple[list[ProfileRevisionView], int]:
        with self.store.session() as s:
            stmt = select(Profile.name).where(Profile.tenant == tenant)
            if not include_archived:
                stmt = stmt.where(Profile.archived.is_(False))
            total = s.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
            names = list(
                s.execute(stmt.order_by(Profile.name).offset(offset).limit(limit)).scalars()
            )
        return [self.get(tenant, n) for n in names], int(total)

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
