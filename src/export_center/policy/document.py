"""The policy document: declarative, versioned, validated at the edge, identified by its digest.

```yaml
apiVersion: stella.policy/v1
name: production
version: "3"
vexProviders:
  trustOrder: [Example Company ProductCERT, Rancher Security team]   # most trusted first
  defaultWeight: 0            # providers not listed
  ignoreUnknown: false        # true: statements of unlisted providers do not count
  statusPrecedence: [affected, under_investigation, fixed, not_affected]   # tie-break
vexAffects: [not_affected, fixed]   # consensus statuses that suppress a finding
severityThresholds:
  fail: HIGH                  # >= HIGH fails (null: never)
  warn: MEDIUM                # >= MEDIUM warns (null: never)
  unknown: warn               # verdict when no severity is known
ignore:
  - vulnerability: CVE-2020-28724
    purl: pkg:pypi/werkzeug   # no version: every version; globs (*, ?) match the whole purl
    reason: not reachable in our deployment, see TICKET-12
    expires: 2025-06-30       # the rule applies up to and including this date (UTC)
```

Expiry is judged against the evidence's as-of time, never the wall clock, so the same evidence
and policy always evaluate the same way. The digest is the sha256 of the RFC 8785 canonical JSON
of the *validated* document (defaults included), so two spellings of one policy share a digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

import rfc8785
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from export_center.errors import BadInputError
from export_center.policy.consensus import DEFAULT_STATUS_PRECEDENCE, ProviderTrust
from export_center.policy.purls import parse_purl
from export_center.policy.severity import LEVEL_RANK
from export_center.safe_yaml import DEFAULT_MAX_BYTES, YamlRefused, load_yaml

API_VERSION = "stella.policy/v1"

VexStatusName = Literal["not_affected", "affected", "fixed", "under_investigation"]
SuppressingStatus = Literal["not_affected", "fixed"]
ThresholdLevel = Literal["NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
Verdict = Literal["pass", "warn", "fail"]


def _int_to_str(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


_Level = Annotated[ThresholdLevel | None, BeforeValidator(_upper)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, validate_by_name=False
    )


class VexProviders(_Model):
    trust_order: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    default_weight: int = 0
    ignore_unknown: bool = False
    status_precedence: list[VexStatusName] = Field(
        default_factory=lambda: list(DEFAULT_STATUS_PRECEDENCE)  # type: ignore[arg-type]
    )

    @model_validator(mode="after")
    def _check(self) -> VexProviders:
        dupes = sorted({p for p in self.trust_order if self.trust_order.count(p) > 1})
        if dupes:
            raise ValueError(f"trustOrder lists {', '.join(dupes)} more than once")
        if sorted(self.status_precedence) != sorted(DEFAULT_STATUS_PRECEDENCE):
            raise ValueError(
                "statusPrecedence must list each of affected, under_investigation, fixed and "
                "not_affected exactly once"
            )
        return self


class SeverityThresholds(_Model):
    fail: _Level = "HIGH"
    warn: _Level = "MEDIUM"
    unknown: Verdict = "warn"

    @model_validator(mode="after")
    def _check(self) -> SeverityThresholds:
        if (
            self.fail is not None
            and self.warn is not None
            and (LEVEL_RANK[self.warn] > LEVEL_RANK[self.fail])
        ):
            raise ValueError(f"warn ({self.warn}) is above fail ({self.fail})")
        return self

    def verdict(self, level: str) -> Verdict:
        if level not in LEVEL_RANK:
            return self.unknown
        rank = LEVEL_RANK[level]
        if self.fail is not None and rank >= LEVEL_RANK[self.fail]:
            return "fail"
        if self.warn is not None and rank >= LEVEL_RANK[self.warn]:
            return "warn"
        return "pass"


_GLOB = frozenset("*?[")


class IgnoreRule(_Model):
    vulnerability: Annotated[str, Field(min_length=1)] | None = None
    purl: Annotated[str, Field(min_length=1)] | None = None
    reason: Annotated[str, Field(min_length=1)]
    expires: date

    @model_validator(mode="after")
    def _check(self) -> IgnoreRule:
        if self.vulnerability is None and self.purl is None:
            raise ValueError("an ignore rule needs a vulnerability, a purl, or both")
        if not self.reason.strip():
            raise ValueError("reason must not be blank")
        if self.purl is not None and not (_GLOB & set(self.purl)) and parse_purl(self.purl) is None:
            raise ValueError(f"purl {self.purl!r} is neither a purl nor a glob pattern")
        return self

    @property
    def is_glob(self) -> bool:
        return self.purl is not None and bool(_GLOB & set(self.purl))


class PolicyDocument(_Model):
    api_version: Literal["stella.policy/v1"]
    name: Annotated[str, Field(min_length=1)]
    version: Annotated[str, BeforeValidator(_int_to_str), Field(min_length=1)]
    description: str | None = None
    vex_providers: VexProviders = Field(default_factory=VexProviders)
    vex_affects: list[SuppressingStatus] = Field(
        default_factory=lambda: ["not_affected", "fixed"]  # type: ignore[arg-type]
    )
    severity_thresholds: SeverityThresholds = Field(default_factory=SeverityThresholds)
    ignore: list[IgnoreRule] = Field(default_factory=list)

    def trust(self) -> ProviderTrust:
        vp = self.vex_providers
        return ProviderTrust(
            order=tuple(vp.trust_order),
            default_weight=vp.default_weight,
            ignore_unknown=vp.ignore_unknown,
            status_precedence=tuple(vp.status_precedence),
        )

    def canonical(self) -> dict[str, Any]:
        """The validated document as plain JSON (camelCase keys, defaults included)."""
        out: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return out


@dataclass(frozen=True)
class Policy:
    """A validated policy and its identity."""

    document: PolicyDocument
    digest: str  # "sha256:<hex>" of the RFC 8785 canonical JSON of the validated document

    @classmethod
    def from_document(cls, document: PolicyDocument) -> Policy:
        canonical = rfc8785.dumps(document.canonical())
        return cls(document, "sha256:" + hashlib.sha256(canonical).hexdigest())


def default_policy() -> Policy:
    """What ``stella findings`` uses without ``--policy``: fail >= HIGH, warn >= MEDIUM,
    VEX not_affected/fixed suppress, every provider weighs the same."""
    return Policy.from_document(
        PolicyDocument.model_validate(
            {"apiVersion": API_VERSION, "name": "default", "version": "1"}
        )
    )


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def load_policy(content: bytes, where: str) -> Policy:
    """Parse (YAML or JSON) and validate a policy document.

    Raises:
        BadInputError: the bytes are not YAML/JSON, or the document is invalid; the message
            names each bad field.
    """
    hint = "policies are YAML or JSON objects with apiVersion: stella.policy/v1"
    if len(content) > DEFAULT_MAX_BYTES:
        raise BadInputError(
            f"{where}: {len(content):,} bytes is over the {DEFAULT_MAX_BYTES:,}-byte limit "
            "for policy documents"
        )
    try:
        text = content.decode("utf-8")
        if where.lower().endswith(".json") or text.lstrip().startswith("{"):
            data = json.loads(text)
        else:
            data = load_yaml(content, where)
    except UnicodeDecodeError as e:
        raise BadInputError(
            f"{where}: not a YAML or JSON policy document: not UTF-8 (byte {e.start})", hint=hint
        ) from e
    except json.JSONDecodeError as e:
        raise BadInputError(
            f"{where}: not a JSON policy document: line {e.lineno} column {e.colno}: {e.msg}",
            hint=hint,
        ) from e
    except YamlRefused as e:
        raise BadInputError(
            f"{where}: not a YAML or JSON policy document: {e.reason}", hint=hint
        ) from e
    if not isinstance(data, dict):
        raise BadInputError(
            f"{where}: a policy document must be a mapping, got {type(data).__name__}"
        )
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in e.errors())
        raise BadInputError(
            f"{where}: invalid policy: {problems}",
            hint="see docs/policy.md for the fields of stella.policy/v1",
        ) from e
    return Policy.from_document(document)
