"""Export profiles: typed, validated at the boundary, immutable once revisioned.

A profile revision is stored as its canonical JSON with a digest; a run names
``(profile, revision)`` and so reproduces exactly what that revision asked for. One model per
profile kind (:data:`AnyProfileSpec`), with the kind's own ``options`` model
(:mod:`export_center.planner.options`): a revision a run would refuse is refused when it is
written, and the error names the field (``options.validty: unknown field``).

What the model cannot know (does the tenant own this key, this policy, this base export?) is
checked by :class:`~export_center.planner.registry.ProfileRegistry` when it writes the revision.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

import rfc8785
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from export_center.errors import BadInputError, RequestValidationFailed
from export_center.planner.options import (
    DevportalOptions,
    MirrorDeltaOptions,
    MirrorFullOptions,
    NoOptions,
    ProfileOptions,
    TrivyDbOptions,
    TrivyJavaDbOptions,
)

PROFILE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
POLICY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KEYID = re.compile(r"^[0-9a-f]{64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
#: The canonical JSON of a revision is at most this long (selectors' id lists included).
MAX_SPEC_BYTES = 1024 * 1024


class ProfileKind(StrEnum):
    """The closed registry of profiles (kind:variant)."""

    JSON_RAW = "json:raw"
    JSON_POLICY = "json:policy"
    TRIVY_DB = "trivy:db"
    TRIVY_JAVA_DB = "trivy:java-db"
    MIRROR_FULL = "mirror:full"
    MIRROR_DELTA = "mirror:delta"
    DEVPORTAL_OFFLINE = "devportal:offline"


_VARIANTS = {
    "json": {"raw", "policy"},
    "trivy": {"db", "java-db"},
    "mirror": {"full", "delta"},
    "devportal": {"offline"},
}
#: The ``kind:variant`` of every profile (the tags of :data:`AnyProfileSpec`).
PROFILE_TAGS = frozenset(k.value for k in ProfileKind)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


_Short = Annotated[str, Field(min_length=1, max_length=64)]
_Long = Annotated[str, Field(min_length=1, max_length=1024)]


class Selectors(_Model):
    """Which evidence a profile exports (export-center.md §4). Empty lists mean "all"."""

    tenants: tuple[_Short, ...] = ()
    sources: tuple[_Short, ...] = ()
    ecosystems: tuple[_Short, ...] = ()
    modified_since: datetime | None = None
    modified_until: datetime | None = None
    products: tuple[_Long, ...] = ()
    sbom_subjects: tuple[_Long, ...] = ()
    include_ids: tuple[_Long, ...] = ()
    exclude_ids: tuple[_Long, ...] = ()

    @field_validator(
        "tenants",
        "sources",
        "ecosystems",
        "products",
        "sbom_subjects",
        "include_ids",
        "exclude_ids",
    )
    @classmethod
    def _sorted_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # Sorted so that two spellings of the same selection hash the same.
        return tuple(sorted(set(v)))

    @field_validator("modified_since", "modified_until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
        return v


class Compression(_Model):
    algorithm: Literal["zstd", "gzip", "none"] = "zstd"
    level: Annotated[int, Field(ge=1, le=22)] = 10

    @model_validator(mode="after")
    def _gzip_level(self) -> Compression:
        if self.algorithm == "gzip" and self.level > 9:
            if "level" in self.model_fields_set:
                raise ValueError(f"level {self.level} is out of range for gzip (1-9)")
            # zstd's default level is out of range for gzip: use gzip's default instead.
            return self.model_copy(update={"level": 9})
        return self


class Signing(_Model):
    """The key a profile signs with: a full keyid assigned to the profile's tenant, or None
    for the tenant's newest key. Never a prefix (prefixes enumerate keys), a file or a
    PKCS#11 URI (modules and token objects are the operator's, registered in the key store)."""

    key: str | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _full_keyid(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if v.startswith("pkcs11:"):
            raise ValueError(
                "a PKCS#11 URI is not a key reference: the operator registers HSM keys "
                "(`stella keys register-pkcs11`) and profiles name them by keyid"
            )
        keyid = v.strip().lower()
        if not _KEYID.match(keyid):
            raise ValueError(
                f"{v[:80]!r} is not a keyid: give the full 64 hex digits "
                "(`stella keys list --format json`)"
            )
        return keyid


PolicyMode = Literal["required", "optional", "none"]


class PolicyRef(_Model):
    """The policy of json:policy and mirror profiles: a stored policy of the tenant, by name.

    The registry pins ``digest`` (the newest version's, unless one is given) when the revision
    is written, so a rerun evaluates exactly the same policy whatever is uploaded later.
    ``policySnapshotMode``: ``required`` (the default when a policy is named) includes the
    policy parts; ``optional`` is the same for a named policy; ``none`` includes none.
    """

    name: str | None = None
    digest: str | None = None
    policy_snapshot_mode: PolicyMode | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not POLICY_NAME.match(v):
            raise ValueError(
                f"{v[:80]!r} is not a policy name (1-64 characters of a-z, 0-9, '.', '_', '-')"
            )
        return v

    @field_validator("digest")
    @classmethod
    def _digest(cls, v: str | None) -> str | None:
        if v is not None and not _DIGEST.match(v):
            raise ValueError("must be 'sha256:<64 lowercase hex>'")
        return v


class Retention(_Model):
    days: int | None = Field(default=None, ge=1, le=36500)
    count: int | None = Field(default=None, ge=1, le=1_000_000)


#: Every spelling of ``include``, sorted (validators do not run on defaults).
DEFAULT_INCLUDE: tuple[str, ...] = ("advisories", "sboms", "vex")
IncludeName = Literal["advisories", "vex", "sboms", "findings"]

#: Kinds whose profiles take a policy.
_POLICY_KINDS = frozenset({"json:policy", "mirror:full", "mirror:delta"})


class ProfileSpec(_Model):
    """The body of one profile revision: the fields every kind has.

    Each kind is a subclass (:data:`AnyProfileSpec` chooses by ``kind`` and ``variant``) whose
    ``options`` model is its own, so unknown keys are refused everywhere. Validate with
    :func:`parse_profile_spec`.
    """

    kind: Literal["json", "trivy", "mirror", "devportal"]
    variant: str
    selectors: Selectors = Selectors()
    include: tuple[IncludeName, ...] = DEFAULT_INCLUDE  # type: ignore[assignment]
    compression: Compression = Compression()
    signing: Signing = Signing()
    # Where a run's bundle goes: the artifact store, downloadable over the API. Pushing to a
    # registry is the operator's (service.oci_repository), never a tenant's choice of host.
    distribution: Literal["filesystem", "http"] = "filesystem"
    retention: Retention = Retention()
    schedule: str | None = None
    # Validated when left out too: a json:policy profile must say which policy (or none).
    policy: PolicyRef = Field(default=PolicyRef(), validate_default=True)
    options: ProfileOptions = ProfileOptions()

    #: The kind:variant of the subclass.
    profile_kind_of: ClassVar[str] = ""

    @field_validator("include")
    @classmethod
    def _include(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        value = tuple(sorted(set(v)))
        kind = cls.profile_kind_of
        if not value:
            raise ValueError("must name at least one of advisories, vex, sboms")
        if kind.startswith(("trivy:", "devportal:")) and value != DEFAULT_INCLUDE:
            raise ValueError(f"{kind} profiles choose their content themselves: leave it out")
        if "findings" in value and kind != "json:policy":
            raise ValueError("findings are exported by json:policy profiles only")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        from croniter import croniter

        if v is not None and (len(v) > 200 or not croniter.is_valid(v)):
            raise ValueError(f"{v[:80]!r} is not a cron expression (five fields, UTC)")
        return v

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: PolicyRef) -> PolicyRef:
        kind = cls.profile_kind_of
        mode = v.policy_snapshot_mode
        if kind not in _POLICY_KINDS:
            if v.name is not None or v.digest is not None or mode not in (None, "none"):
                raise ValueError(f"{kind} profiles take no policy")
            return v.model_copy(update={"policy_snapshot_mode": "none"})
        if v.digest is not None and v.name is None:
            raise ValueError("digest goes with name")
        if v.name is None:
            if mode is None and kind == "json:policy":
                raise ValueError(
                    "json:policy needs a policy: name a stored policy (name, or `--policy "
                    "NAME`), or say policySnapshotMode: none"
                )
            if mode in ("required", "optional"):
                raise ValueError(
                    f"policySnapshotMode {mode} needs a policy name (`stella policy upload`)"
                )
            return v.model_copy(update={"policy_snapshot_mode": "none"})
        if mode == "none":
            raise ValueError(f"names policy {v.name!r} but policySnapshotMode is none")
        return v.model_copy(update={"policy_snapshot_mode": mode or "required"})

    @property
    def profile_kind(self) -> ProfileKind:
        return ProfileKind(f"{self.kind}:{self.variant}")

    def canonical(self) -> bytes:
        return rfc8785.dumps(self.model_dump(mode="json", by_alias=True))

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()


class JsonRawProfile(ProfileSpec):
    profile_kind_of: ClassVar[str] = "json:raw"
    kind: Literal["json"]
    variant: Literal["raw"]
    options: NoOptions = NoOptions()


class JsonPolicyProfile(ProfileSpec):
    profile_kind_of: ClassVar[str] = "json:policy"
    kind: Literal["json"]
    variant: Literal["policy"]
    options: NoOptions = NoOptions()


class TrivyDbProfile(ProfileSpec):
    profile_kind_of: ClassVar[str] = "trivy:db"
    kind: Literal["trivy"]
    variant: Literal["db"]
    options: TrivyDbOptions = TrivyDbOptions()


class TrivyJavaDbProfile(ProfileSpec):
    profile_kind_of: ClassVar[str] = "trivy:java-db"
    kind: Literal["trivy"]
    variant: Literal["java-db"]
    options: TrivyJavaDbOptions = TrivyJavaDbOptions()


class MirrorFullProfile(ProfileSpec):
    profile_kind_of: ClassVar[str] = "mirror:full"
    kind: Literal["mirror"]
    variant: Literal["full"]
    options: MirrorFullOptions = MirrorFullOptions()


class MirrorDeltaProfile(ProfileSpec):
    profile_kind_of: ClassVar[str] = "mirror:delta"
    kind: Literal["mirror"]
    variant: Literal["delta"]
    # No default: a delta names its base (or resetBaseline).
    options: MirrorDeltaOptions


class DevportalOfflineProfile(ProfileSpec):
    profile_kind_of: ClassVar[str] = "devportal:offline"
    kind: Literal["devportal"]
    variant: Literal["offline"]
    options: DevportalOptions = DevportalOptions()


def _tag(value: Any) -> str | None:
    if isinstance(value, ProfileSpec):
        return f"{value.kind}:{value.variant}"
    if isinstance(value, dict):
        tag = f"{value.get('kind')}:{value.get('variant')}"
        return tag if tag in PROFILE_TAGS else None
    return None


#: A profile body of any kind: the subclass is chosen by ``kind`` and ``variant``.
AnyProfileSpec = Annotated[
    Annotated[JsonRawProfile, Tag("json:raw")]
    | Annotated[JsonPolicyProfile, Tag("json:policy")]
    | Annotated[TrivyDbProfile, Tag("trivy:db")]
    | Annotated[TrivyJavaDbProfile, Tag("trivy:java-db")]
    | Annotated[MirrorFullProfile, Tag("mirror:full")]
    | Annotated[MirrorDeltaProfile, Tag("mirror:delta")]
    | Annotated[DevportalOfflineProfile, Tag("devportal:offline")],
    Discriminator(
        _tag,
        custom_error_type="profile_kind",
        custom_error_message="kind and variant must name a profile: json:raw, json:policy, "
        "trivy:db, trivy:java-db, mirror:full, mirror:delta or devportal:offline",
    ),
]
_ADAPTER: TypeAdapter[ProfileSpec] = TypeAdapter(AnyProfileSpec)


def spec_adapter() -> TypeAdapter[ProfileSpec]:
    """The validator of :data:`AnyProfileSpec` (raw pydantic errors, for callers that need
    their locations)."""
    return _ADAPTER


def check_profile_name(name: str) -> str:
    if not (3 <= len(name) <= 64 and PROFILE_NAME.match(name)):
        raise BadInputError(
            f"invalid profile name {name!r}: 3-64 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _known_fields() -> frozenset[str]:
    names: set[str] = set()
    pending: list[type[BaseModel]] = [
        JsonRawProfile, JsonPolicyProfile, TrivyDbProfile, TrivyJavaDbProfile,
        MirrorFullProfile, MirrorDeltaProfile, DevportalOfflineProfile,
    ]  # fmt: skip
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            names.add(field.alias or name)
            for arg in _model_args(field.annotation):
                pending.append(arg)
    return frozenset(names)


def _model_args(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in getattr(annotation, "__args__", ()) for m in _model_args(a)]


_FIELDS: frozenset[str] | None = None


#: Fields that named server resources before profiles were tenant-safe: what to use instead.
_REPLACED = {
    "policy.document": "a server file is not a policy: upload it (`stella policy upload NAME "
    "FILE`, POST /api/export/policies) and give policy.name",
    "options.base.bundle": "a base is named by the export id of an earlier mirror export of "
    "this tenant (options.base.exportId), or options.base.latest: true",
    "options.base.dir": "a base is named by the export id of an earlier mirror export of this "
    "tenant (options.base.exportId), or options.base.latest: true",
    "options.base.sequence": "the server reads the base's sequence from its own records: give "
    "options.base.exportId only",
}


def _unknown_field(name: str) -> str:
    global _FIELDS
    if _FIELDS is None:
        _FIELDS = _known_fields()
    close = difflib.get_close_matches(name, sorted(_FIELDS), n=1, cutoff=0.75)
    return f"unknown field (did you mean {close[0]!r}?)" if close else "unknown field"


def field_path(loc: Sequence[int | str]) -> str:
    """A validation error's location as a field path (``options.encryption.recipients[0]``);
    the tag of the profile kind pydantic puts first is left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in PROFILE_TAGS and not out:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(profile)"


def problem_message(err: Mapping[str, Any], path: str) -> str:
    """The message of one pydantic error of a profile at ``path`` (relative to the profile):
    an unknown field says what replaced it, or which field was probably meant."""
    if err.get("type") == "extra_forbidden":
        loc = err.get("loc") or ("",)
        return _REPLACED.get(path) or _unknown_field(str(loc[-1]))
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")


def problems_of(e: ValidationError) -> list[dict[str, str]]:
    """One ``{"field", "message"}`` per problem of a profile's validation error."""
    out = []
    for err in e.errors(include_url=False):
        path = field_path(err["loc"])
        out.append({"field": path, "message": problem_message(err, path)})
    return out


def invalid_profile(
    where: str, problems: Sequence[Mapping[str, str]], *, prefix: str = ""
) -> RequestValidationFailed:
    """The error of an invalid profile: one line naming every bad field, and ``details``
    (``field`` prefixed with ``prefix``, e.g. ``spec``, in API answers)."""
    details = [
        {"field": f"{prefix}.{p['field']}" if prefix else p["field"], "message": p["message"]}
        for p in problems
    ]
    text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return RequestValidationFailed(f"{where}: invalid profile: {text}", details)


def with_prefix(e: RequestValidationFailed, prefix: str) -> RequestValidationFailed:
    """``e`` with its fields prefixed (``spec.`` in API answers, where the profile is the
    request's ``spec``)."""
    details = [
        {**d, "field": f"{prefix}.{d['field']}"} if "field" in d else dict(d) for d in e.details
    ]
    return RequestValidationFailed(e.message, details)


def _precheck(data: Any) -> list[dict[str, str]]:
    # Clear words for the two fields that choose the model (pydantic would say "tag").
    if not isinstance(data, Mapping):
        return [{"field": "(profile)", "message": "a profile must be an object"}]
    kind, variant = data.get("kind"), data.get("variant")
    if kind not in _VARIANTS:
        return [
            {
                "field": "kind",
                "message": f"{str(kind)[:40]!r} is not one of devportal, json, mirror, trivy"
                if kind is not None
                else "missing (json, trivy, mirror or devportal)",
            }
        ]
    if variant not in _VARIANTS[kind]:
        allowed = ", ".join(sorted(_VARIANTS[kind]))
        what = f"{str(variant)[:40]!r}" if variant is not None else "missing"
        return [{"field": "variant", "message": f"variant {what} is not one of {allowed} "
                 f"for kind {kind}"}]  # fmt: skip
    return []


def parse_profile_spec(data: Any, where: str = "profile", *, prefix: str = "") -> ProfileSpec:
    """Validate a profile body from JSON/YAML data with the model of its kind.

    Raises:
        RequestValidationFailed: (a BadInputError) naming each invalid field, in the message
            and in ``details`` (fields prefixed with ``prefix``).
    """
    problems = _precheck(data)
    if problems:
        raise invalid_profile(where, problems, prefix=prefix)
    try:
        spec = _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise invalid_profile(where, problems_of(e), prefix=prefix) from e
    size = len(spec.canonical())
    if size > MAX_SPEC_BYTES:
        raise invalid_profile(
            where,
            [{"field": "(profile)", "message": f"{size} bytes; at most {MAX_SPEC_BYTES}"}],
            prefix=prefix,
        )
    return spec
