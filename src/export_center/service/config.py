"""Service and worker settings: quotas, auth, leases, retries, SSE.

They sit beside the core :class:`~export_center.settings.Settings` and are read the same way:
``STELLA_SERVICE_*`` environment variables over the ``[service]`` table of the settings file
(``STELLA_CONFIG`` or ``<data dir>/stella.toml``; the core keys then go under ``[stella]``), over
built-in defaults. Per-tenant quotas are TOML only::

    [service]
    quota_concurrent_runs = 4
    [service.tenant_quotas.acme]
    runs_per_hour = 500
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from export_center.errors import ConfigError
from export_center.settings import Settings


@dataclass(frozen=True)
class Quotas:
    """Per-tenant limits; 0 means unlimited."""

    concurrent_runs: int = 4
    runs_per_hour: int = 60
    bytes_per_day: int = 0


@dataclass(frozen=True)
class ServiceSettings:
    # Offline JWKS file: JWTs signed by one of its keys are accepted besides stored tokens.
    jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    quotas: Quotas = Quotas()
    tenant_quotas: Mapping[str, Quotas] = field(default_factory=dict)
    # A worker's claim on a run lasts lease_seconds past its last heartbeat.
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    # Attempts per run, counting takeovers after a lost worker.
    max_attempts: int = 3
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    # How often the maintenance loop recovers runs, applies retention and fires schedules.
    sweep_seconds: float = 5.0
    sse_heartbeat_seconds: float = 15.0
    sse_poll_seconds: float = 0.5
    # The worker polls the cancel flag this often while exporting.
    cancel_poll_seconds: float = 0.5
    idempotency_ttl_hours: int = 24
    worker_concurrency: int = 1
    page_limit_max: int = 500
    # Distribution target besides the shared artifact directory: every published bundle is
    # also pushed as an OCI artifact to ``<repository>:<export id>`` (oci://HOST/REPO).
    oci_repository: str | None = None

    def quotas_for(self, tenant: str) -> Quotas:
        return self.tenant_quotas.get(tenant, self.quotas)


_QUOTA_KEYS = frozenset(f.name for f in fields(Quotas))
_PATHS = frozenset({"jwks_file"})
_STRINGS = frozenset({"jwt_issuer", "jwt_audience", "oci_repository"})
_NUMBERS = frozenset(
    f.name
    for f in fields(ServiceSettings)
    if f.name not in _PATHS | _STRINGS | {"quotas", "tenant_quotas"}
)
_ENV_KEYS = _PATHS | _STRINGS | _NUMBERS | {f"quota_{k}" for k in _QUOTA_KEYS}


def _number(name: str, raw: object, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(str(raw))
    except ValueError as e:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"service setting {name}: {raw!r} is not {what}") from e
    if value < 0:
        raise ConfigError(f"service setting {name}: {raw!r} must not be negative")
    return value


def _quotas(name: str, raw: object, base: Quotas) -> Quotas:
    if not isinstance(raw, dict):
        raise ConfigError(f"service setting {name} must be a table")
    unknown = sorted(set(raw) - _QUOTA_KEYS)
    if unknown:
        raise ConfigError(f"service setting {name}: unknown quota {unknown[0]!r}")
    values = {str(k): int(_number(f"{name}.{k}", v, int)) for k, v in raw.items()}
    return replace(base, **values)


def _read_section(settings: Settings, env: Mapping[str, str]) -> dict[str, Any]:
    cfg = env.get("STELLA_CONFIG")
    path = Path(cfg).expanduser() if cfg else settings.data_dir / "stella.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh).get("service", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"settings file {path}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"settings file {path}: [service] must be a table")
    return dict(raw)


def load_service_settings(
    settings: Settings, env: Mapping[str, str] | None = None, **overrides: Any
) -> ServiceSettings:
    """Resolve service settings (environment over the settings file over defaults).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or inconsistent timings.
    """
    env = dict(os.environ) if env is None else env
    section = _read_section(settings, env)
    for key in _ENV_KEYS:
        value = env.get(f"STELLA_SERVICE_{key.upper()}")
        if value is not None:
            section[key] = value
    section.update({k: v for k, v in overrides.items() if v is not None})

    defaults = ServiceSettings()
    values: dict[str, Any] = {}
    quotas = defaults.quotas
    for key, raw in section.items():
        if key.startswith("quota_") and key[6:] in _QUOTA_KEYS:
            quotas = replace(quotas, **{key[6:]: int(_number(key, raw, int))})
        elif key == "quotas":
            quotas = _quotas(key, raw, quotas)
        elif key == "tenant_quotas":
            continue  # after the defaults are known: tenants inherit from them
        elif key in _PATHS:
            values[key] = Path(str(raw)).expanduser() if raw else None
        elif key in _STRINGS:
            values[key] = str(raw) if raw else None
        elif key in _NUMBERS:
            kind = int if isinstance(getattr(defaults, key), int) else float
            values[key] = _number(key, raw, kind)
        else:
            raise ConfigError(f"unknown service setting {key!r}")
    raw_tenants = section.get("tenant_quotas") or {}
    if not isinstance(raw_tenants, dict):
        raise ConfigError("service setting tenant_quotas must be a table of tables")
    tenant_quotas = {
        str(t): _quotas(f"tenant_quotas.{t}", q, quotas) for t, q in raw_tenants.items()
    }
    out = replace(defaults, quotas=quotas, tenant_quotas=tenant_quotas, **values)
    if out.heartbeat_seconds >= out.lease_seconds:
        raise ConfigError(
            f"heartbeat_seconds ({out.heartbeat_seconds}) must be shorter than lease_seconds "
            f"({out.lease_seconds}), or every lease lapses between two heartbeats"
        )
    if out.max_attempts < 1:
        raise ConfigError("max_attempts must be at least 1")
    return out
