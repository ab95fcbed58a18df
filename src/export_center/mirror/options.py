"""Mirror profile options: the ``options`` object of a mirror:full / mirror:delta profile.

Validated at the boundary (pydantic, unknown keys refused): a typo in a signed, immutable
profile revision must fail when the revision is created or run, not silently change a bundle.

Example (YAML)::

    options:
      base: {bundle: /srv/exports/mirror-full-r1-s1200-....tar.zst}   # mirror:delta only
      resetBaseline: false
      includeWithdrawn: true
      tuf: {expires: {timestamp: 14, snapshot: 30, targets: 90, root: 365}}
      encryption:
        recipients: [age1...]
        kms: [kms://pkcs11/stella/mirror-kek]
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from export_center.errors import BadInputError

TufRole = Literal["root", "targets", "snapshot", "timestamp"]
TUF_ROLES: tuple[TufRole, ...] = ("root", "targets", "snapshot", "timestamp")

#: Validity of each TUF role in days after the export's as-of time. The timestamp is the
#: shortest: it is what tells a disconnected importer that a bundle is stale.
DEFAULT_EXPIRES_DAYS: dict[TufRole, int] = {
    "root": 365,
    "targets": 90,
    "snapshot": 30,
    "timestamp": 14,
}

_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
_KMS_ID = re.compile(r"^kms://[A-Za-z0-9][A-Za-z0-9._~:/@%+-]*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_EXPORT_ID = re.compile(r"^[a-z0-9-]{6,64}$")


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class BaseRef(_Model):
    """Which export a delta is relative to: a bundle (archive or directory) to read the base's
    signed manifest from, a directory holding published bundles (the newest earlier mirror
    bundle of the tenant is taken), or the three facts given explicitly."""

    bundle: Path | None = None
    dir: Path | None = None
    export_id: str | None = None
    manifest_digest: str | None = None
    sequence: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> BaseRef:
        explicit = (self.export_id, self.manifest_digest, self.sequence)
        ways = [self.bundle is not None, self.dir is not None, any(v is not None for v in explicit)]
        if sum(ways) != 1:
            raise ValueError("give exactly one of bundle, dir, or exportId+manifestDigest+sequence")
        if ways[2]:
            if any(v is None for v in explicit):
                raise ValueError("exportId, manifestDigest and sequence go together")
            if not _EXPORT_ID.match(self.export_id or ""):
                raise ValueError(f"exportId {self.export_id!r} is not an export id")
            if not _DIGEST.match(self.manifest_digest or ""):
                raise ValueError("manifestDigest must be 'sha256:<64 hex>'")
        return self


class TufOptions(_Model):
    """Expiry of each role: whole days after the as-of time, or an RFC 3339 instant."""

    expires: dict[TufRole, Annotated[int, Field(ge=1, le=36500)] | datetime] = Field(
        default_factory=dict
    )

    @field_validator("expires")
    @classmethod
    def _aware(cls, v: dict[TufRole, int | datetime]) -> dict[TufRole, int | datetime]:
        for role, when in v.items():
            if isinstance(when, datetime) and when.tzinfo is None:
                raise ValueError(f"expires.{role} must carry a time zone (e.g. ...Z)")
        return v

    def expiry(self, role: TufRole, as_of: datetime) -> datetime:
        """The expiry instant of ``role`` (to the second, UTC) for an export as of ``as_of``."""
        value = self.expires.get(role, DEFAULT_EXPIRES_DAYS[role])
        when = as_of + timedelta(days=value) if isinstance(value, int) else value
        return when.astimezone(UTC).replace(microsecond=0)


class EncryptionOptions(_Model):
    """Who may decrypt: age X25519 recipients and/or KMS key ids (at least one)."""

    recipients: tuple[str, ...] = ()
    kms: tuple[str, ...] = ()

    @field_validator("recipients")
    @classmethod
    def _age(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for r in v:
            if not _AGE_RECIPIENT.match(r):
                raise ValueError(f"{r!r} is not an age X25519 recipient (age1...)")
        return tuple(sorted(set(v)))

    @field_validator("kms")
    @classmethod
    def _kms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for k in v:
            if not _KMS_ID.match(k):
                raise ValueError(f"{k!r} is not a KMS key id (kms://...)")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _someone(self) -> EncryptionOptions:
        if not self.recipients and not self.kms:
            raise ValueError("encryption needs at least one age recipient or KMS key id")
        return self


class MirrorOptions(_Model):
    base: BaseRef | None = None
    reset_baseline: bool = False
    include_withdrawn: bool = True
    tuf: TufOptions = TufOptions()
    encryption: EncryptionOptions | None = None


def parse_mirror_options(data: dict[str, Any], *, delta: bool) -> MirrorOptions:
    """Validate a mirror profile's ``options``.

    Raises:
        BadInputError: naming each invalid field; a delta without a base (and without
            ``resetBaseline``), or a full mirror with delta options.
    """
    try:
        opts = MirrorOptions.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"options.{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in e.errors()
        )
        raise BadInputError(f"invalid mirror options: {problems}") from e
    if delta and opts.base is None and not opts.reset_baseline:
        raise BadInputError(
            "a mirror:delta profile needs options.base (bundle, dir, or exportId + "
            "manifestDigest + sequence)",
            hint="or set options.resetBaseline: true to ship a full replacement",
        )
    if not delta and (opts.base is not None or opts.reset_baseline):
        raise BadInputError("options.base and options.resetBaseline apply to mirror:delta only")
    return opts
