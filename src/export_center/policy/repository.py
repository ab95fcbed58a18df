"""Tenant policy documents in the store: uploaded, versioned, addressed by name and digest.

A tenant never names a server file as its policy (security.md, "Tenant <-> server"): it
uploads the document (``stella policy upload``, ``POST /api/export/policies``), and profiles
name it by ``name``; the profile revision pins the ``digest`` of the version it was written
with. Versions are rows that are inserted, never updated or deleted, so a pinned digest always
resolves to the same document.

Each version keeps the uploaded bytes (comments and all, for people) and the validated
document as RFC 8785 JSON (``canonical``), whose sha256 is the digest
(:class:`~export_center.policy.document.Policy`). Runs read ``canonical`` and check the digest
before evaluating, so what is evaluated is exactly what the profile pinned. Uploading a
document whose digest equals an existing version of the same name returns that version: two
spellings of one policy are one version.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import rfc8785
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from export_center.errors import BadInputError, ConflictError, NotFoundError
from export_center.policy.document import Policy, PolicyDocument, load_policy
from export_center.store.models import PolicyDocumentRow
from export_center.store.repository import EvidenceStore, check_tenant
from export_center.store.writer import begin_write

__all__ = ["MAX_POLICY_BYTES", "POLICY_NAME", "PolicyStore", "StoredPolicy", "check_policy_name"]

log = logging.getLogger(__name__)

# First key of the two-key pg_advisory_xact_lock taken while a policy version is allocated
# ("plcy" in ASCII); the second is a hash of tenant and name.
_POLICY_LOCK = int.from_bytes(b"plcy", "big")

#: A policy document is a small declarative file; anything bigger is a mistake or an attack.
MAX_POLICY_BYTES = 1024 * 1024
POLICY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

MediaType = Literal["application/json", "application/yaml"]


def check_policy_name(name: str) -> str:
    """Raises: BadInputError: not 1-64 characters of a-z, 0-9, '.', '_', '-'."""
    if not POLICY_NAME.match(name):
        raise BadInputError(
            f"invalid policy name {name[:80]!r}: 1-64 characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class StoredPolicy:
    """One stored version of a tenant's policy."""

    tenant: str
    name: str
    version: int
    digest: str
    media_type: str
    content: bytes
    canonical: str
    created_at: datetime

    @property
    def document(self) -> dict[str, Any]:
        """The validated document (camelCase JSON, defaults included)."""
        out: dict[str, Any] = orjson.loads(self.canonical)
        return out

    def policy(self) -> Policy:
        """The policy to evaluate, checked against its digest.

        Raises:
            ConflictError: the stored document does not hash to its digest (altered in the
                database): refusing is better than evaluating another policy than pinned.
        """
        actual = "sha256:" + hashlib.sha256(self.canonical.encode()).hexdigest()
        if actual != self.digest:
            raise ConflictError(
                f"policy {self.name} v{self.version} of tenant {self.tenant!r} was altered in "
                f"the store: its document hashes to {actual}, not {self.digest}"
            )
        policy = Policy.from_document(PolicyDocument.model_validate(self.document))
        if policy.digest != self.digest:  # a newer model reads it differently
            raise ConflictError(
                f"policy {self.name} v{self.version} reads as {policy.digest} with this version "
                f"of the tool, not as its pinned {self.digest}"
            )
        return policy


def parse_upload(content: bytes, where: str) -> tuple[Policy, MediaType]:
    """Validate an uploaded policy document (YAML or JSON, at most :data:`MAX_POLICY_BYTES`).

    Raises:
        BadInputError: too large, not UTF-8 YAML/JSON, YAML aliases, or an invalid document
            (the message names each bad field).
    """
    if len(content) > MAX_POLICY_BYTES:
        raise BadInputError(
            f"{where}: {len(content)} bytes; a policy document is at most {MAX_POLICY_BYTES}"
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInputError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    is_json = text.lstrip().startswith("{")
    # JSON when it starts with a brace, as here; YAML through the one loader, which refuses
    # anchors and aliases (an alias bomb expands in memory while it is loaded).
    policy = load_policy(content, where)
    return policy, "application/json" if is_json else "application/yaml"


class PolicyStore:
    """The tenants' policy documents (table ``policy_documents``)."""

    def __init__(self, store: EvidenceStore) -> None:
        self.store = store

    def upload(
        self, tenant: str, name: str, content: bytes, *, now: datetime | None = None
    ) -> tuple[StoredPolicy, bool]:
        """Store ``content`` as the next version of policy ``name``; ``(version, created)``,
        where ``created`` is False when a version with the same digest exists (returned).

        Raises:
            BadInputError: an invalid tenant, name or document.
        """
        check_tenant(tenant)
        check_policy_name(name)
        policy, media_type = parse_upload(content, f"policy {name}")
        canonical = rfc8785.dumps(policy.document.canonical()).decode()
        at = (now or datetime.now(UTC)).replace(microsecond=0)
        try:
            with self.store.session() as s, s.begin():
                # Version numbers are allocated under a lock on this policy name, so concurrent
                # uploads queue instead of racing for "newest + 1" (an optimistic retry with a
                # bounded number of rounds fails once more uploaders race than it has rounds).
                _lock_policy_name(s.connection(), tenant, name)
                same = _find_row(s, tenant, name, digest=policy.digest)
                if same is not None:
                    return _view(same), False
                newest = s.execute(
                    select(func.max(PolicyDocumentRow.version)).where(
                        PolicyDocumentRow.tenant == tenant, PolicyDocumentRow.name == name
                    )
                ).scalar_one()
                row = PolicyDocumentRow(
                    tenant=tenant,
                    name=name,
                    version=(newest or 0) + 1,
                    digest=policy.digest,
                    media_type=media_type,
                    content=content,
                    canonical=canonical,
                    created_at=at,
                )
                s.add(row)
                s.flush()
                stored = _view(row)
        except IntegrityError as e:
            # Not expected under the lock; reported rather than retried blindly.
            raise ConflictError(f"policy {name}: concurrent uploads; try again") from e
        log.info("policy %s v%d of %s: %s", name, stored.version, tenant, policy.digest)
        return stored, True

    def get(
        self, tenant: str, name: str, *, version: int | None = None, digest: str | None = None
    ) -> StoredPolicy:
        """A version of policy ``name`` (by version, by digest, or the newest).

        Raises:
            NotFoundError: no such policy (or version) for this tenant.
        """
        if digest is not None and not _DIGEST.match(digest):
            raise BadInputError(f"digest {digest[:80]!r}: expected sha256:<64 hex>")
        found = self._find(tenant, name, version=version, digest=digest)
        if found is None:
            which = f" version {version}" if version is not None else f" {digest}" if digest else ""
            raise NotFoundError(
                f"no policy {name[:64]!r}{which} for tenant {tenant!r}",
                hint="`stella policy list` shows the tenant's policies; "
                "`stella policy upload NAME FILE` adds one",
            )
        return found

    def versions(self, tenant: str, name: str) -> list[StoredPolicy]:
        """Every version of ``name``, oldest first.

        Raises:
            NotFoundError: no such policy for this tenant.
        """
        with self.store.session() as s:
            rows = s.execute(
                select(PolicyDocumentRow)
                .where(PolicyDocumentRow.tenant == tenant, PolicyDocumentRow.name == name)
                .order_by(PolicyDocumentRow.version)
            ).scalars()
            out = [_view(r) for r in rows]
        if not out:
            raise NotFoundError(f"no policy {name[:64]!r} for tenant {tenant!r}")
        return out

    def list(
        self, tenant: str, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[StoredPolicy], int]:
        """The newest version of each of the tenant's policies, by name; and how many."""
        with self.store.session() as s:
            newest = (
                select(PolicyDocumentRow.name, func.max(PolicyDocumentRow.version).label("version"))
                .where(PolicyDocumentRow.tenant == tenant)
                .group_by(PolicyDocumentRow.name)
                .subquery()
            )
            total = s.execute(select(func.count()).select_from(newest)).scalar_one()
            rows = s.execute(
                select(PolicyDocumentRow)
                .join(
                    newest,
                    (PolicyDocumentRow.name == newest.c.name)
                    & (PolicyDocumentRow.version == newest.c.version),
                )
                .where(PolicyDocumentRow.tenant == tenant)
                .order_by(PolicyDocumentRow.name)
                .offset(offset)
                .limit(limit)
            ).scalars()
            return [_view(r) for r in rows], int(total)

    def _find(
        self, tenant: str, name: str, *, version: int | None = None, digest: str | None = None
    ) -> StoredPolicy | None:
        with self.store.session() as s:
            row = _find_row(s, tenant, name, version=version, digest=digest)
            return _view(row) if row is not None else None


def _find_row(
    s: Session, tenant: str, name: str, *, version: int | None = None, digest: str | None = None
) -> PolicyDocumentRow | None:
    """The newest version of ``tenant``'s policy ``name`` (with ``version`` / ``digest`` if
    given), read in the caller's session."""
    stmt = select(PolicyDocumentRow).where(
        PolicyDocumentRow.tenant == tenant, PolicyDocumentRow.name == name
    )
    if version is not None:
        stmt = stmt.where(PolicyDocumentRow.version == version)
    if digest is not None:
        stmt = stmt.where(PolicyDocumentRow.digest == digest)
    return s.execute(stmt.order_by(PolicyDocumentRow.version.desc()).limit(1)).scalar_one_or_none()


def _lock_policy_name(conn: Connection, tenant: str, name: str) -> None:
    """Hold, until the transaction ends, a lock serializing the uploads of ``tenant``'s
    policy ``name``: SQLite's database write lock (``BEGIN IMMEDIATE``), or on PostgreSQL a
    transaction-scoped advisory lock keyed by the name (a hash collision only makes two
    unrelated uploads queue).
    """
    if conn.dialect.name == "sqlite":
        begin_write(conn)
        return
    conn.execute(
        select(func.pg_advisory_xact_lock(_POLICY_LOCK, func.hashtext(f"{tenant}/{name}")))
    )


def _view(row: PolicyDocumentRow) -> StoredPolicy:
    created = row.created_at
    if created.tzinfo is None:  # SQLite returns naive datetimes
        created = created.replace(tzinfo=UTC)
    return StoredPolicy(
        tenant=row.tenant,
        name=row.name,
        version=row.version,
        digest=row.digest,
        media_type=row.media_type,
        content=bytes(row.content),
        canonical=row.canonical,
        created_at=created,
    )
