"""The REST API's request and response bodies (camelCase on the wire).

Request bodies forbid unknown fields; the profile body is the planner's own
:data:`~export_center.planner.profiles.AnyProfileSpec` (one model per profile kind), so the API
and the CLI validate profiles with the same models.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from export_center.planner.profiles import AnyProfileSpec
from export_center.planner.registry import ProfileRevisionView
from export_center.policy.repository import StoredPolicy
from export_center.runs.clock import rfc3339
from export_center.runs.operations import PlanPreview
from export_center.runs.repository import RunEvent, RunView


class _Api(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ProfileName = Annotated[
    str, Field(min_length=3, max_length=64, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
]
RunId = Annotated[str, Field(min_length=1, max_length=64)]


# ---- errors ----------------------------------------------------------------------------------


class ErrorBody(_Api):
    code: str = Field(description="Stable error code, ERR_EXPORT_*; see docs/api.md.")
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)
    trace_id: str
    timestamp: str


# ---- profiles --------------------------------------------------------------------------------


class ProfileCreate(_Api):
    name: ProfileName
    spec: AnyProfileSpec


class ProfileRevisionCreate(_Api):
    spec: AnyProfileSpec


class ProfilePublic(_Api):
    tenant: str
    name: str
    revision: int
    digest: str
    archived: bool
    created_at: str
    spec: dict[str, Any]
    problem: str | None = Field(
        default=None,
        description="Why a revision written by an earlier version cannot run (the fields it "
        "named that are no longer accepted are left out of spec); null when it can.",
    )

    @classmethod
    def of(cls, p: ProfileRevisionView) -> ProfilePublic:
        return cls(
            tenant=p.tenant,
            name=p.name,
            revision=p.revision,
            digest=p.digest,
            archived=p.archived,
            created_at=rfc3339(p.created_at) or "",
            spec=p.spec.model_dump(mode="json", by_alias=True),
            problem=p.problem,
        )


class ProfilePage(_Api):
    items: list[ProfilePublic]
    total: int
    offset: int
    limit: int
    next: str | None = None


# ---- runs ------------------------------------------------------------------------------------


class RunCreate(_Api):
    profile: ProfileName
    revision: int | None = Field(default=None, ge=1, le=2**31 - 1)
    as_of: int | None = Field(
        default=None, ge=0, le=2**62, description="Pin an earlier store sequence."
    )


class PlanRequest(RunCreate):
    pass


class Progress(_Api):
    percent: float
    items_completed: int
    items_total: int


class RunErrorPublic(_Api):
    code: str
    message: str | None
    hint: str | None = Field(default=None, description="What to do about it, when known.")


class ArtifactPublic(_Api):
    name: str
    sha256: str
    bytes: int
    root_hash: str | None
    export_id: str | None


class RunLinks(_Api):
    self_: str = Field(alias="self")
    events: str
    cancel: str
    download: str
    manifest: str
    provenance: str
    sha256: str = Field(description="The archive's .sha256 sidecar (sha256sum format).")
    signature: str = Field(description="The archive's .sig sidecar (detached signature).")

    @classmethod
    def of(cls, base: str, run_id: str) -> RunLinks:
        r = f"{base}/runs/{run_id}"
        return cls(
            self_=r,
            events=f"{r}/events",
            cancel=f"{r}/cancel",
            download=f"{r}/download",
            manifest=f"{r}/manifest",
            provenance=f"{r}/provenance",
            sha256=f"{r}/download.sha256",
            signature=f"{r}/download.sig",
        )


class RunPublic(_Api):
    id: str
    tenant: str
    profile: str
    revision: int
    status: RunStatus
    trigger: str
    as_of: int | None
    export_id: str | None
    attempts: int
    cancel_requested: bool
    progress: Progress
    error: RunErrorPublic | None
    artifact: ArtifactPublic | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    expired_at: str | None
    links: RunLinks

    @classmethod
    def of(cls, base: str, r: RunView) -> RunPublic:
        artifact = None
        if r.status == "succeeded" and r.archive_path and r.archive_sha256:
            artifact = ArtifactPublic(
                name=r.archive_path.rsplit("/", 1)[-1],
                sha256=r.archive_sha256,
                bytes=r.archive_bytes or 0,
                root_hash=r.root_hash,
                export_id=r.export_id,
            )
        return cls(
            id=r.id,
            tenant=r.tenant,
            profile=r.profile,
            revision=r.revision,
            status=RunStatus(r.status),
            trigger=r.trigger,
            as_of=r.as_of_seq,
            export_id=r.export_id,
            attempts=r.attempts,
            cancel_requested=r.cancel_requested,
            progress=Progress(
                percent=r.percent, items_completed=r.items_done, items_total=r.items_total
            ),
            error=RunErrorPublic(code=r.error_code, message=r.error_message, hint=r.error_hint)
            if r.error_code
            else None,
            artifact=artifact,
            created_at=rfc3339(r.created_at) or "",
            started_at=rfc3339(r.started_at),
            finished_at=rfc3339(r.finished_at),
            expired_at=rfc3339(r.expired_at),
            links=RunLinks.of(base, r.id),
        )


class RunAccepted(_Api):
    id: str
    status: RunStatus
    links: RunLinks


class RunPage(_Api):
    items: list[RunPublic]
    total: int
    offset: int
    limit: int
    next: str | None = None


class EventPublic(_Api):
    """The ``data`` of one SSE event (its ``id`` is ``seq``, its ``event`` is ``type``)."""

    run_id: str
    seq: int
    type: str
    at: str
    data: dict[str, Any]

    @classmethod
    def of(cls, e: RunEvent) -> EventPublic:
        return cls(
            run_id=e.run_id, seq=e.seq, type=e.type, at=rfc3339(e.at) or "", data=dict(e.data)
        )


class PlanProfile(_Api):
    name: str
    revision: int
    kind: str


class PlanAsOf(_Api):
    sequence: int
    time: str


class PlanPublic(_Api):
    export_id: str
    profile: PlanProfile
    as_of: PlanAsOf
    selectors: dict[str, Any]
    counts: dict[str, int]
    items_total: int
    estimated_bytes: int = Field(
        description="Raw evidence bytes the plan selects by source: an upper-bound estimate of "
        "the bundle's uncompressed data."
    )

    @classmethod
    def of(cls, p: PlanPreview) -> PlanPublic:
        plan = p.plan
        return cls(
            export_id=plan.export_id,
            profile=PlanProfile(
                name=plan.profile_name, revision=plan.revision, kind=plan.spec.profile_kind.value
            ),
            as_of=PlanAsOf(sequence=plan.as_of_seq, time=plan.as_of_rfc3339()),
            selectors=plan.selectors.model_dump(mode="json", by_alias=True),
            counts=dict(sorted(plan.counts.items())),
            items_total=sum(plan.counts.values()),
            estimated_bytes=p.estimated_bytes,
        )


class Health(_Api):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


def timestamp(now: datetime) -> str:
    return rfc3339(now) or ""


# ---- policies --------------------------------------------------------------------------------

PolicyName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class PolicyUpload(_Api):
    """A policy document to store as the next version of ``name``."""

    name: PolicyName
    content: str = Field(
        description="The policy document, YAML or JSON text (stella.policy/v1), at most 1 MiB.",
    )


class PolicySummary(_Api):
    tenant: str
    name: str
    version: int
    digest: str = Field(description="sha256 of the validated document's RFC 8785 JSON.")
    media_type: str
    document_name: str = Field(description="The document's own name field.")
    document_version: str = Field(description="The document's own version field.")
    created_at: str

    @classmethod
    def of(cls, p: StoredPolicy) -> PolicySummary:
        doc = p.document
        return cls(
            tenant=p.tenant,
            name=p.name,
            version=p.version,
            digest=p.digest,
            media_type=p.media_type,
            document_name=str(doc.get("name", "")),
            document_version=str(doc.get("version", "")),
            created_at=rfc3339(p.created_at) or "",
        )


class PolicyPublic(PolicySummary):
    document: dict[str, Any] = Field(description="The validated document (defaults included).")
    content: str = Field(description="The document as uploaded.")

    @classmethod
    def of(cls, p: StoredPolicy) -> PolicyPublic:
        return cls(
            **PolicySummary.of(p).model_dump(),
            document=p.document,
            content=p.content.decode("utf-8"),
        )


class PolicyPage(_Api):
    items: list[PolicySummary]
    total: int
    offset: int
    limit: int
    next: str | None = None
