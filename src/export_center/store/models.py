"""SQLAlchemy schema of the evidence store.

Raw bytes (``raw_records``) and their normalized views (``normalized_records`` and the index
tables) are separate tables: normalization can be redone, raw content is never rewritten.
``change_log`` is the per-tenant, gap-free, monotonic sequence that exports pin ("as of N") and
mirror deltas read ranges of. ``tenants.last_seq`` is the counter; ingestion locks the tenant row
for the whole transaction so that sequences become visible in order.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)


class RawRecord(Base):
    __tablename__ = "raw_records"
    __table_args__ = (
        UniqueConstraint("tenant", "source", "upstream_id", "revision", name="uq_raw_revision"),
        UniqueConstraint("observation_id", name="uq_raw_observation"),
        Index("ix_raw_current", "tenant", "source", "upstream_id", "superseded_seq"),
        # "As of N" reads (seq <= N and (superseded_seq is null or superseded_seq > N)) walk
        # this index in export order: an index on seq would not help, since most rows pass
        # the filter, and a sort would drag every row's content through a temporary b-tree.
        Index("ix_raw_export", "tenant", "doc_type", "source", "upstream_id", "revision"),
        # Covers stats() and counts() of a store state: no visit to the rows (migration 0009).
        Index(
            "ix_raw_stats",
            "tenant",
            "doc_type",
            "source",
            "seq",
            "superseded_seq",
            "withdrawn",
            "size",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.name"), nullable=False)
    source: Mapped[str] = mapped_column(String(128), nullable=False)
    upstream_id: Mapped[str] = mapped_column(String(512), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    observation_id: Mapped[str] = mapped_column(String(800), nullable=False)
    doc_type: Mapped[str] = mapped_column(String(16), nullable=False)
    format: Mapped[str] = mapped_column(String(32), nullable=False)
    media_type: Mapped[str] = mapped_column(String(96), nullable=False)
    digest: Mapped[str] = mapped_column(String(71), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    superseded_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    supersedes: Mapped[str | None] = mapped_column(String(800), nullable=True)


class NormalizedRecord(Base):
    """The normalized view of one raw record (one row per raw record), canonical JSON."""

    __tablename__ = "normalized_records"
    __table_args__ = (Index("ix_norm_type", "tenant", "record_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    raw_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("raw_records.id"), nullable=False, unique=True
    )
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    record_type: Mapped[str] = mapped_column(String(16), nullable=False)
    record_key: Mapped[str] = mapped_column(String(512), nullable=False)
    data: Mapped[str] = mapped_column(Text, nullable=False)


class AdvisoryPackage(Base):
    """Index: which packages an advisory affects (for matching and ecosystem selectors)."""

    __tablename__ = "advisory_packages"
    __table_args__ = (Index("ix_advpkg_name", "tenant", "purl_type", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    normalized_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("normalized_records.id"), nullable=False, index=True
    )
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    purl_type: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(512), nullable=False)


class VexStatementRow(Base):
    """Index: one row per VEX statement (from VEX documents and CycloneDX BOM vulnerabilities)."""

    __tablename__ = "vex_statements"
    __table_args__ = (
        Index("ix_vex_vuln", "tenant", "vulnerability"),
        Index("ix_vex_product", "tenant", "product"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    normalized_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("normalized_records.id"), nullable=False, index=True
    )
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    vulnerability: Mapped[str] = mapped_column(String(256), nullable=False)
    product: Mapped[str] = mapped_column(String(1024), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    justification: Mapped[str | None] = mapped_column(String(96), nullable=True)


class SbomComponentRow(Base):
    """Index: one row per SBOM component (purl, version, SHA-1 for the Java DB)."""

    __tablename__ = "sbom_components"
    __table_args__ = (
        Index("ix_comp_name", "tenant", "purl_type", "name"),
        Index("ix_comp_sha1", "tenant", "sha1"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    normalized_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("normalized_records.id"), nullable=False, index=True
    )
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    purl: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    purl_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str] = mapped_column(String(1024), nullable=False)
    version: Mapped[str | None] = mapped_column(String(256), nullable=True)
    sha1: Mapped[str | None] = mapped_column(String(40), nullable=True)


class ChangeLogEntry(Base):
    __tablename__ = "change_log"
    __table_args__ = (UniqueConstraint("tenant", "seq", name="uq_change_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # insert | revision | withdrawal
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    raw_id: Mapped[int] = mapped_column(Integer, ForeignKey("raw_records.id"), nullable=False)
    observation_id: Mapped[str] = mapped_column(String(800), nullable=False)
    previous_observation_id: Mapped[str | None] = mapped_column(String(800), nullable=True)
    doc_type: Mapped[str] = mapped_column(String(16), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Profile(Base):
    __tablename__ = "profiles"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_profile_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ProfileRevision(Base):
    """An immutable profile revision: rows are inserted, never updated."""

    __tablename__ = "profile_revisions"
    __table_args__ = (UniqueConstraint("profile_id", "revision", name="uq_profile_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    profile_id: Mapped[int] = mapped_column(Integer, ForeignKey("profiles.id"), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    spec: Mapped[str] = mapped_column(Text, nullable=False)
    digest: Mapped[str] = mapped_column(String(71), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ExportRun(Base):
    """One run of a profile revision. Wall-clock facts live here, never inside a bundle."""

    __tablename__ = "export_runs"
    __table_args__ = (Index("ix_run_tenant_status", "tenant", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    as_of_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    export_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    root_hash: Mapped[str | None] = mapped_column(String(71), nullable=True)
    archive_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    archive_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    archive_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the user can do about the error (ExportCenterError.hint), when the error said (0011).
    error_hint: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    items_done: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    items_total: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # ---- service and worker columns (revision 0003) ----
    # Who created the run: "api", "schedule" or "cli"; scheduled runs name their cron slot, and
    # the unique (tenant, profile, schedule_slot) makes a slot fire once across schedulers.
    trigger: Mapped[str] = mapped_column(
        String(16), default="api", server_default="api", nullable=False
    )
    schedule_slot: Mapped[str | None] = mapped_column(String(40), nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The lease: the worker executing the run and until when its claim holds without a
    # heartbeat. A claim is a conditional UPDATE, so two workers never hold one run at once.
    lease_owner: Mapped[str | None] = mapped_column(String(160), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    # A pending run starts no earlier than this (retry back-off); None means now.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Counter behind the per-run event sequence (export_run_events.seq).
    last_event_seq: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", nullable=False
    )
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


Index("ix_run_claim", ExportRun.status, ExportRun.next_attempt_at)
Index("ix_run_lease", ExportRun.status, ExportRun.lease_expires_at)
Index("ix_run_created", ExportRun.tenant, ExportRun.created_at)
UniqueConstraint(
    ExportRun.tenant, ExportRun.profile, ExportRun.schedule_slot, name="uq_run_schedule_slot"
)


class ExportRunEvent(Base):
    """One state transition or progress report of a run: the SSE stream's durable source.

    ``seq`` counts per run from 1 (it is the SSE event id, so ``Last-Event-ID`` resumes).
    """

    __tablename__ = "export_run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_run_event_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("export_runs.id"), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    data: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ApiToken(Base):
    """An API bearer token. Only the SHA-256 of the (high-entropy) secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    tenants: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list
    scopes: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConsoleSession(Base):
    """A browser signed in to the web console (service/console/sessions.py, revision 0011).

    The browser holds a random secret in a cookie; the row is found by the secret's SHA-256,
    and the bearer credential it signed in with is stored encrypted under a key derived from
    that secret: the database alone never yields a usable credential, and a signed-out cookie
    finds no row.
    """

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    credential: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    csrf: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )


class IdempotencyRecord(Base):
    """The first response to a POST carrying an ``Idempotency-Key`` (per tenant).

    ``status_code`` is NULL while the first request is still being handled.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant", "key", name="uq_idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    headers: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )


class AirgapGeneration(Base):
    """One mirror bundle applied by the air-gap importer: the import generations of a tenant's
    mirror streams.

    A stream is what one mirror profile of the exporting side ships (a full bundle names it;
    its deltas continue it). Generations are per (tenant, stream) and strictly increasing; a
    stream's newest row is what is installed for it (its export id, manifest digest and as-of
    sequence are what a delta must name as its base). ``tuf_root`` is the TUF root trusted for
    the next import of the tenant. ``replaced_stream`` names a stream this import took over on
    the operator's decision (``--replace-stream``, with ``reason``). Rows are inserted, never
    updated, in the same transaction as the evidence they describe.
    """

    __tablename__ = "airgap_generations"
    __table_args__ = (
        UniqueConstraint("tenant", "stream", "generation", name="uq_airgap_stream_generation"),
        Index("ix_airgap_manifest", "tenant", "manifest_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    stream: Mapped[str] = mapped_column(String(64), nullable=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    export_id: Mapped[str] = mapped_column(String(64), nullable=False)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # full | delta | reset
    manifest_digest: Mapped[str] = mapped_column(String(71), nullable=False)
    root_hash: Mapped[str] = mapped_column(String(71), nullable=False)
    rerun_hash: Mapped[str] = mapped_column(String(71), nullable=False)
    # The exporting instance's as-of cursor: orders generations of one origin.
    source_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    source_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    base_export_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    base_manifest_digest: Mapped[str | None] = mapped_column(String(71), nullable=True)
    base_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    replaced_stream: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The local store's sequence once this generation was applied.
    store_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    added: Mapped[int] = mapped_column(Integer, nullable=False)
    updated: Mapped[int] = mapped_column(Integer, nullable=False)
    removed: Mapped[int] = mapped_column(Integer, nullable=False)
    tuf_root: Mapped[str] = mapped_column(Text, nullable=False)
    imported_by: Mapped[str] = mapped_column(String(128), nullable=False)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    forced: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class AirgapStreamRecord(Base):
    """Which mirror stream holds a document (tenant, source, upstream id) on the importing side.

    Streams of one tenant carry disjoint documents: a full bundle of a stream replaces that
    stream's documents only, and a document another stream holds is refused unless the
    operator lets this stream take the other over. Documents ingested locally have no row.
    """

    __tablename__ = "airgap_stream_records"
    __table_args__ = (Index("ix_airgap_stream_records", "tenant", "stream"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    upstream_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), nullable=False)


class PolicyDocumentRow(Base):
    """One uploaded version of a tenant's policy document (revision 0006).

    Policies are stored documents, never files a tenant names: a profile names a policy by
    ``name`` and pins the ``digest`` of the version it was created with. Rows are inserted,
    never updated. ``content`` is what was uploaded (YAML or JSON, comments kept for people);
    ``canonical`` is the validated document as RFC 8785 JSON, whose sha256 is ``digest``: runs
    read ``canonical`` and check the digest, so what is evaluated is what the profile pinned.
    """

    __tablename__ = "policy_documents"
    __table_args__ = (
        UniqueConstraint("tenant", "name", "version", name="uq_policy_version"),
        UniqueConstraint("tenant", "name", "digest", name="uq_policy_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(71), nullable=False)
    media_type: Mapped[str] = mapped_column(String(32), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    canonical: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class PublishedExport(Base):
    """The signed manifest of every export this instance published (revision 0006).

    What a mirror:delta names as its base is an export id of the same tenant, resolved from
    these rows (never from a file or directory a tenant names). One export id can have several
    manifests (an encrypted mirror's wrapped keys differ per run): rows are keyed by the
    manifest digest too, and the newest one wins when only the export id is given.
    """

    __tablename__ = "published_exports"
    __table_args__ = (
        UniqueConstraint("tenant", "export_id", "manifest_digest", name="uq_published_export"),
        Index("ix_published_kind", "tenant", "kind", "as_of_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False)
    export_id: Mapped[str] = mapped_column(String(64), nullable=False)
    manifest_digest: Mapped[str] = mapped_column(String(71), nullable=False)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    variant: Mapped[str] = mapped_column(String(16), nullable=False)
    as_of_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    manifest: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
