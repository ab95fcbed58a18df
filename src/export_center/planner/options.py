"""The ``options`` of each profile kind: one validated model per kind, unknown keys refused.

A profile revision is immutable and signed into every bundle it makes, so whatever a run would
refuse must be refused when the revision is written: a typo (``validty``, ``bsae``), a duration
or an age recipient that does not parse, a delta without a base. Each kind has its own model:

=====================  ===========================================================
json:raw, json:policy  :class:`NoOptions` (``options`` must be empty)
trivy:db               :class:`TrivyDbOptions` (``validity``, ``dataSources``)
trivy:java-db          :class:`TrivyJavaDbOptions` (``validity``)
mirror:full            :class:`MirrorFullOptions` (``includeWithdrawn``, ``tuf``,
                       ``encryption``)
mirror:delta           :class:`MirrorDeltaOptions` (the same plus ``base``,
                       ``resetBaseline``)
devportal:offline      :class:`DevportalOptions` (``inputDir``, ``serviceSpec``, ``metadata``)
=====================  ===========================================================

Nothing here names a server resource (tenants are not the operator): a delta's base is an
export id the server looks up in its own records of published exports, never a file or a
directory; a KMS key id is checked against the keys the operator assigned to the tenant when
the revision is written (:mod:`export_center.planner.registry`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "DEFAULT_EXPIRES_DAYS",
    "DEFAULT_VALIDITY",
    "TUF_ROLES",
    "BaseRef",
    "DataSourceOption",
    "DevportalOptions",
    "EncryptionOptions",
    "MirrorDeltaOptions",
    "MirrorFullOptions",
    "MirrorOptions",
    "NoOptions",
    "ProfileOptions",
    "TrivyDbOptions",
    "TrivyJavaDbOptions",
    "TrivyOptions",
    "TufOptions",
    "TufRole",
    "parse_validity",
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class ProfileOptions(_Model):
    """The root of every kind's options model."""


class NoOptions(ProfileOptions):
    """json:raw and json:policy take no options: any key is refused (a 20 MB blob included)."""


# ---- trivy:db, trivy:java-db ------------------------------------------------------------------

DEFAULT_VALIDITY = timedelta(days=7)
_MAX_VALIDITY = timedelta(days=3660)
_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_validity(value: str | int) -> timedelta:
    """A validity: an ISO 8601 duration of weeks, days, hours, minutes and seconds
    (``P7D``, ``PT36H``, ``P1DT12H``) or a whole number of hours.

    Raises:
        ValueError: anything else, zero, or more than ten years.
    """
    if isinstance(value, bool):
        raise ValueError("validity must be an ISO 8601 duration (P7D) or hours")
    if isinstance(value, int):
        if value > _MAX_VALIDITY // timedelta(hours=1):
            raise ValueError(f"validity {value!r} must be more than zero and at most ten years")
        delta = timedelta(hours=value)
    else:
        text = value.strip().upper()
        m = _DURATION.match(text)
        parts = {k: int(v) for k, v in m.groupdict().items() if v is not None} if m else {}
        if not parts or text.endswith("T"):
            raise ValueError(f"validity {value!r} is not an ISO 8601 duration like P7D or PT36H")
        try:
            delta = timedelta(**parts)
        except OverflowError as e:  # P99999999999D: past what a timedelta holds
            raise ValueError(f"validity {value!r} must be at most ten years") from e
    if delta <= timedelta(0) or delta > _MAX_VALIDITY:
        raise ValueError(f"validity {value!r} must be more than zero and at most ten years")
    return delta


class DataSourceOption(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    url: Annotated[str, Field(max_length=2000)] = ""


class TrivyOptions(ProfileOptions):
    """Options both Trivy profiles take: ``validity``."""

    validity: str | int = "P7D"

    @field_validator("validity")
    @classmethod
    def _validity(cls, v: str | int) -> str | int:
        parse_validity(v)
        return v

    @property
    def validity_delta(self) -> timedelta:
        return parse_validity(self.validity)


class TrivyDbOptions(TrivyOptions):
    """trivy:db: ``validity`` and ``dataSources`` (how a store source shows in Trivy reports)."""

    data_sources: Annotated[dict[str, DataSourceOption], Field(max_length=1000)] = Field(
        default_factory=dict
    )


class TrivyJavaDbOptions(TrivyOptions):
    """trivy:java-db: ``validity`` only (the Java index has no data sources)."""


# ---- mirror:full, mirror:delta ----------------------------------------------------------------

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

_KMS_ID = re.compile(r"^kms://[A-Za-z0-9][A-Za-z0-9._~:/@%+-]*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
EXPORT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{5,63}$")


class TufOptions(_Model):
    """Expiry of each role: whole days after the as-of time, or an RFC 3339 instant."""

    expires: dict[TufRole, Annotated[int, Field(ge=1, le=36500)] | datetime] = Field(
        default_factory=dict
    )

    @field_validator("expires", mode="before")
    @classmethod
    def _days_or_text(cls, v: Any) -> Any:
        # pydantic would read a number outside 1..36500 as a Unix time: a 0 would mean 1970.
        if isinstance(v, dict):
            for role, when in v.items():
                if isinstance(when, bool) or not isinstance(when, int | str | datetime):
                    raise ValueError(f"expires.{role}: whole days or an RFC 3339 time")
                if isinstance(when, int) and not 1 <= when <= 36500:
                    raise ValueError(f"expires.{role}: {when} days is not within 1..36500")
        return v

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


def _age_recipient(value: str) -> str:
    # Parsed by the library that encrypts: a recipient with a bad checksum passes any pattern
    # and would only fail at run time.
    from pyrage import x25519

    if not value.startswith("age1"):
        raise ValueError(f"{value!r} is not an age X25519 recipient (age1...)")
    try:
        x25519.Recipient.from_str(value)
    except Exception as e:  # pyrage.RecipientError; its base class is not exported
        raise ValueError(f"{value!r} is not a valid age X25519 recipient: {e}") from e
    return value


def _kms_id(value: str) -> str:
    if not _KMS_ID.match(value) or len(value) > 300:
        raise ValueError(f"{value[:80]!r} is not a KMS key id (kms://...)")
    return value


class EncryptionOptions(_Model):
    """Who may decrypt: age X25519 recipients and/or KMS key ids (at least one).

    KMS key ids must be assigned to the profile's tenant by the operator (checked when the
    revision is written): a tenant never picks a key on the operator's HSM by itself.
    """

    recipients: Annotated[
        tuple[Annotated[str, AfterValidator(_age_recipient)], ...], Field(max_length=100)
    ] = ()
    kms: Annotated[tuple[Annotated[str, AfterValidator(_kms_id)], ...], Field(max_length=20)] = ()

    @field_validator("recipients", "kms")
    @classmethod
    def _sorted(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _someone(self) -> EncryptionOptions:
        if not self.recipients and not self.kms:
            raise ValueError("encryption needs at least one age recipient or KMS key id")
        return self


class BaseRef(_Model):
    """Which earlier export a delta is relative to, named in the server's own records.

    ``exportId``: a mirror export this instance published for the same tenant; the server fills
    in ``manifestDigest`` (the newest manifest of that export) when the revision is written, so
    a rerun of the revision always names the same base. ``latest: true``: the newest earlier
    mirror export of the tenant with the same selection, resolved at each run (a full
    replacement, ``resetBaseline``, when there is none yet).
    """

    export_id: str | None = None
    manifest_digest: str | None = None
    latest: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> BaseRef:
        if (self.export_id is None) == (not self.latest):
            raise ValueError("give exactly one of exportId or latest: true")
        if self.export_id is not None and not EXPORT_ID.match(self.export_id):
            raise ValueError(f"exportId {self.export_id!r} is not an export id")
        if self.manifest_digest is not None:
            if self.export_id is None:
                raise ValueError("manifestDigest goes with exportId")
            if not _DIGEST.match(self.manifest_digest):
                raise ValueError("manifestDigest must be 'sha256:<64 hex>'")
        return self


class MirrorOptions(ProfileOptions):
    """Options both mirror variants take."""

    include_withdrawn: bool = True
    tuf: TufOptions = TufOptions()
    encryption: EncryptionOptions | None = None


class MirrorFullOptions(MirrorOptions):
    """mirror:full: ``includeWithdrawn``, ``tuf``, ``encryption``."""


class MirrorDeltaOptions(MirrorOptions):
    """mirror:delta: the mirror options plus ``base`` and ``resetBaseline``."""

    base: BaseRef | None = None
    reset_baseline: bool = False

    @model_validator(mode="after")
    def _needs_base(self) -> MirrorDeltaOptions:
        if self.base is None and not self.reset_baseline:
            raise ValueError(
                "a mirror:delta profile needs options.base (exportId, or latest: true), "
                "or options.resetBaseline: true to ship a full replacement"
            )
        return self


# ---- devportal:offline ------------------------------------------------------------------------

_MAX_METADATA = 64 * 1024


class DevportalOptions(ProfileOptions):
    """devportal:offline: ``inputDir`` (relative to the profile file; only ``stella devportal
    build --profile`` reads it, runs refuse it: they package the operator's tree), whether runs
    package the service's own OpenAPI document (``serviceSpec``), and free-form ``metadata``
    copied into manifest.json."""

    input_dir: Annotated[str | None, Field(min_length=1, max_length=1024)] = None
    # Runs: package the export API's own OpenAPI document (GET /.well-known/openapi).
    service_spec: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input_dir")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        if v is None:
            return v
        path = PurePosixPath(v)
        if path.is_absolute() or ".." in path.parts or "\\" in v or "\x00" in v:
            raise ValueError(f"{v!r} must be a relative path without '..'")
        return v

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        size = len(orjson.dumps(v))
        if size > _MAX_METADATA:
            raise ValueError(f"metadata is {size} bytes of JSON; at most {_MAX_METADATA}")
        return v
