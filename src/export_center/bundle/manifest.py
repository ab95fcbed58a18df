"""The export manifest (``manifests/export.json``): its typed model, and the fixed paths of every
bundle.

The manifest is our own signed schema, so it is a validated model on both sides (STYLE §4):
the writer builds an :class:`ExportManifest` and signs its RFC 8785 bytes; every reader (the
verifier, the importer, a mirror delta's base) parses the signed bytes back with
:func:`parse_manifest`, and an unknown field anywhere is refused rather than ignored. Adapters
contribute the optional sections (``delta``, ``encryption``, ``policy``, ``mirror``, ``trivy``),
each its own model.

Serialization rule (it keeps the bytes of existing bundles): a field that may be absent
(``= None`` default) is left out when it is None; a field that is always present but may be
null (a reset delta without a base) is written as ``null``. Keys are camelCase aliases.

Pure: no I/O, no clock; everything comes from the plan and the staged file list, so the same
inputs give the same bytes. The other signed documents have their own modules:
:mod:`.provenance`, :mod:`.readme`, and :mod:`export_center.checksums`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import orjson
import rfc8785
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from export_center import TOOL_NAME, __version__
from export_center.digests import prefixed, sha256_hex
from export_center.errors import VerificationError
from export_center.model import DocType
from export_center.planner.plan import ExportPlan
from export_center.planner.profiles import Selectors

__all__ = [
    "CHECKSUMS",
    "EXPORT_DSSE",
    "EXPORT_JSON",
    "MANIFEST_PAYLOAD_TYPE",
    "MANIFEST_SCHEMA",
    "PROVENANCE_DSSE",
    "PROVENANCE_JSON",
    "README",
    "SIGNED_FILES",
    "AsOf",
    "ContentEntry",
    "DeltaSection",
    "EncryptionSection",
    "ExportManifest",
    "ManifestSections",
    "MirrorSection",
    "PlainFile",
    "PolicySection",
    "ProfileRef",
    "Tombstone",
    "Tool",
    "TrivyArchive",
    "TrivyDbSection",
    "TrivyJavaDbSection",
    "TrivyOci",
    "TrivySection",
    "WrappedKey",
    "build_manifest",
    "manifest_bytes",
    "parse_manifest",
    "rerun_hash",
]

MANIFEST_SCHEMA: Final = "https://stellaops.io/export-center/manifest/v1"
MANIFEST_PAYLOAD_TYPE = "application/vnd.stellaops.export-manifest+json"

EXPORT_JSON = "manifests/export.json"
EXPORT_DSSE = "manifests/export.json.dsse"
PROVENANCE_JSON = "manifests/provenance.json"
PROVENANCE_DSSE = "manifests/provenance.json.dsse"
CHECKSUMS = "checksums.txt"
README = "README.txt"
SIGNED_FILES = frozenset({EXPORT_JSON, EXPORT_DSSE, PROVENANCE_JSON, PROVENANCE_DSSE})

Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0)]
# The as-of time as bundles write it: RFC 3339, UTC, whole seconds.
Instant = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")]


class _Model(BaseModel):
    # strict: a signed document is taken as written (no "5" -> 5 coercion).
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )

    @model_serializer(mode="wrap")
    def _leave_out_absent(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        for name, field in type(self).model_fields.items():
            if not field.is_required() and getattr(self, name) is None:
                data.pop(field.alias if info.by_alias and field.alias else name, None)
        return data


# -- core -----------------------------------------------------------------------------------


class ProfileRef(_Model):
    kind: Literal["json", "trivy", "mirror", "devportal"]
    variant: str
    name: str
    revision: Annotated[int, Field(ge=1)]


class AsOf(_Model):
    sequence: Count
    time: Instant


class Tool(_Model):
    name: str
    version: str


class ContentEntry(_Model):
    """One file of the bundle the manifest covers."""

    path: str
    digest: Digest
    size: Count = Field(alias="bytes")
    content_type: str
    records: Count | None = None

    @property
    def sha256(self) -> str:
        """The digest's hex part."""
        return self.digest.removeprefix("sha256:")


# -- sections adapters contribute -------------------------------------------------------------


class Tombstone(_Model):
    """A record a delta removes from its base (it left the selection, or was withdrawn)."""

    observation_id: str
    digest: Digest
    record_type: DocType
    source: str
    upstream_id: str
    reason: Literal["removed", "withdrawn"]


class DeltaSection(_Model):
    """mirror:delta: the base it applies on, and what changed. A reset delta (a full
    replacement) may have no base: the base fields are then written as null."""

    base_export_id: str | None
    base_manifest_digest: Digest | None
    base_sequence: Count | None
    added: Count
    updated: Count
    removed: tuple[Tombstone, ...]
    reset_baseline: bool


class WrappedKey(_Model):
    """The data key wrapped for one recipient: an age X25519 recipient or a KMS key."""

    type: Literal["age", "kms"]
    recipient: str | None = None  # age
    key_id: str | None = None  # kms
    wrapped_key: str


class PlainFile(_Model):
    """A file under ``data/`` before encryption: what decryption must give back."""

    path: str
    digest: Digest
    size: Count = Field(alias="bytes")


class EncryptionSection(_Model):
    algorithm: str
    aad: str
    nonce: str
    recipients: tuple[WrappedKey, ...]
    files: tuple[PlainFile, ...]


class PolicySection(_Model):
    """The policy parts: included (document, digest, name, version, mode) or left out (why)."""

    included: bool
    document: str | None = None
    reason: str | None = None
    digest: str | None = None
    name: str | None = None
    version: str | None = None
    mode: Literal["required", "optional", "none"] | None = None


class MirrorSection(_Model):
    include: tuple[str, ...]  # record type directories: advisories, sboms, vex
    include_withdrawn: bool
    layout: str


class TrivyArchive(_Model):
    path: str
    digest: Digest
    size: Count = Field(alias="bytes")


class TrivyOci(_Model):
    layout: str
    tag: str
    manifest_digest: Digest
    layer_media_type: str


class TrivyDbSection(_Model):
    archive: TrivyArchive
    oci: TrivyOci
    schema_version: int
    updated_at: str
    next_update: str
    advisories: Count
    mapped_advisories: Count
    withdrawn_left_out: Count
    entries: Count
    merged_entries: Count
    vulnerabilities: Count
    buckets: tuple[str, ...]
    skipped: dict[str, int]


class TrivyJavaDbSection(_Model):
    archive: TrivyArchive
    oci: TrivyOci
    schema_version: int
    updated_at: str
    next_update: str
    artifacts: Count
    indices: Count
    skipped: dict[str, int]


class TrivySection(_Model):
    db: TrivyDbSection | None = None
    java_db: TrivyJavaDbSection | None = None


class ManifestSections(_Model):
    """The optional sections, each contributed by the adapter of its profile."""

    delta: DeltaSection | None = None
    encryption: EncryptionSection | None = None
    policy: PolicySection | None = None
    mirror: MirrorSection | None = None
    trivy: TrivySection | None = None


class ExportManifest(ManifestSections):
    """``manifests/export.json`` (docs/bundle-format.md, "The export manifest")."""

    schema_: Literal["https://stellaops.io/export-center/manifest/v1"] = Field(alias="schema")
    # (the literal is MANIFEST_SCHEMA: a type cannot name a constant)
    export_id: str
    profile: ProfileRef
    tenant: str
    selectors: Selectors
    as_of: AsOf
    generated_at: Instant
    contents: tuple[ContentEntry, ...]
    rerun_hash: Digest
    counts: dict[str, int]
    tool: Tool

    def sections(self) -> ManifestSections:
        """The optional sections alone."""
        return ManifestSections(
            delta=self.delta,
            encryption=self.encryption,
            policy=self.policy,
            mirror=self.mirror,
            trivy=self.trivy,
        )


def rerun_hash(digests: Sequence[str]) -> str:
    """sha256 of the newline-joined (no trailing newline) sorted ``sha256:<hex>`` digests."""
    joined = "\n".join(sorted(digests)).encode()
    return prefixed(sha256_hex(joined))


def build_manifest(
    plan: ExportPlan,
    contents: Sequence[ContentEntry],
    counts: Mapping[str, int],
    sections: ManifestSections | None = None,
) -> ExportManifest:
    """The manifest of ``plan`` over the staged ``contents`` (any order; sorted by path)."""
    ordered = tuple(sorted(contents, key=lambda c: c.path.encode()))
    extra = sections or ManifestSections()
    return ExportManifest(
        schema_=MANIFEST_SCHEMA,
        export_id=plan.export_id,
        profile=ProfileRef(
            kind=plan.spec.kind,
            variant=plan.spec.variant,
            name=plan.profile_name,
            revision=plan.revision,
        ),
        tenant=plan.tenant,
        selectors=plan.selectors,
        as_of=AsOf(sequence=plan.as_of_seq, time=plan.as_of_rfc3339()),
        generated_at=plan.as_of_rfc3339(),
        contents=ordered,
        rerun_hash=rerun_hash([c.digest for c in ordered]),
        counts=dict(sorted(counts.items())),
        tool=Tool(name=TOOL_NAME, version=__version__),
        delta=extra.delta,
        encryption=extra.encryption,
        policy=extra.policy,
        mirror=extra.mirror,
        trivy=extra.trivy,
    )


def manifest_bytes(manifest: ExportManifest) -> bytes:
    """The signed form of ``manifest``: RFC 8785 of its JSON (camelCase keys)."""
    return rfc8785.dumps(manifest.model_dump(mode="json", by_alias=True))


def parse_manifest(
    data: bytes, where: str = EXPORT_JSON, *, check: str = "manifest"
) -> ExportManifest:
    """Parse manifest bytes (as signed) into the model; ``where`` names them in messages,
    ``check`` is the check a failure is reported under.

    Raises:
        VerificationError: not JSON, another schema, a field missing, malformed or unknown.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise VerificationError(check, f"{where} is not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA:
        raise VerificationError(check, f"{where}: unknown manifest schema")
    try:
        return ExportManifest.model_validate_json(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise VerificationError(check, f"{where}: unknown field {field!r}") from e
        raise VerificationError(check, f"{where}: {field}: {err['msg']}") from e
