"""Export profiles: typed, validated at the boundary, immutable once revisioned.

A profile revision is stored as its canonical JSON with a digest; a run names
``(profile, revision)`` and so reproduces exactly what that revision asked for.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from export_center.errors import BadInputError

PROFILE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


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


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class Selectors(_Model):
    """Which evidence a profile exports (export-center.md §4). Empty lists mean "all"."""

    tenants: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    ecosystems: tuple[str, ...] = ()
    modified_since: datetime | None = None
    modified_until: datetime | None = None
    products: tuple[str, ...] = ()
    sbom_subjects: tuple[str, ...] = ()
    include_ids: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()

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
            # zstd's default level is out of range for gzip: use gzip's default instead.
            return self.model_copy(update={"level": 9})
        return self


class Signing(_Model):
    key: str | None = None  # keyid (or unique prefix) in the key store; None = newest key


class PolicyRef(_Model):
    document: str | None = None
    policy_snapshot_mode: Literal["required", "optional", "none"] = "none"


class Retention(_Model):
    days: int | None = Field(default=None, ge=1)
    count: int | None = Field(default=None, ge=1)


class ProfileSpec(_Model):
    """The body of one profile revision."""

    kind: Literal["json", "trivy", "mirror", "devportal"]
    variant: str
    selectors: Selectors = Selectors()
    # Sorted like the validator sorts given values (validators do not run on defaults).
    include: tuple[Literal["advisories", "vex", "sboms", "findings"], ...] = (
        "advisories",
        "sboms",
        "vex",
    )
    compression: Compression = Compression()
    signing: Signing = Signing()
    distribution: Literal["filesystem", "http", "oci"] = "filesystem"
    retention: Retention = Retention()
    schedule: str | None = None
    policy: PolicyRef = PolicyRef()
    # Free-form, profile-specific options (validity for trivy:db, base export for deltas, ...).
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _variant(self) -> ProfileSpec:
        if self.variant not in _VARIANTS[self.kind]:
            allowed = ", ".join(sorted(_VARIANTS[self.kind]))
            raise ValueError(
                f"variant {self.variant!r} is not one of {allowed} for kind {self.kind}"
            )
        return self

    @field_validator("include")
    @classmethod
    def _include_sorted(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(v)))

    @property
    def profile_kind(self) -> ProfileKind:
        return ProfileKind(f"{self.kind}:{self.variant}")

    def canonical(self) -> bytes:
        return rfc8785.dumps(self.model_dump(mode="json", by_alias=True))

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()


def check_profile_name(name: str) -> str:
    if not (3 <= len(name) <= 64 and PROFILE_NAME.match(name)):
        raise BadInputError(
            f"invalid profile name {name!r}: 3-64 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def parse_profile_spec(data: Any, where: str = "profile") -> ProfileSpec:
    """Validate a profile body from JSON/YAML data.

    Raises:
        BadInputError: naming each invalid field.
    """
    try:
        return ProfileSpec.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in e.errors()
        )
        raise BadInputError(f"{where}: invalid profile: {problems}") from e
