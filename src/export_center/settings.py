"""Settings in one place: one model of every setting the product reads, loaded once per process.

Where a value comes from, highest first:

1. what the caller passes to :func:`load_settings` (tests, command-line options);
2. the environment: ``STELLA_<KEY>`` for the core keys, ``STELLA_SERVICE_<KEY>`` for the service
   keys, ``STELLA_SERVICE_QUOTA_<KEY>`` for the default quotas;
3. the TOML file named by ``STELLA_CONFIG``, else ``<data dir>/stella.toml`` when it exists: the
   core keys under ``[stella]`` (or at the top level), the service keys under ``[service]``,
   per-tenant quotas (file only) under ``[service.tenant_quotas.<tenant>]``::

       [stella]
       default_tenant = "acme"
       [service]
       quota_concurrent_runs = 4
       [service.tenant_quotas.acme]
       runs_per_hour = 500

4. built-in defaults.

Secrets, credentials and who is calling come from the environment only, never from the file
(:data:`ENV_ONLY`). Unknown keys in the file are refused. Library code never reads the
environment: the CLI loads the settings once per command (``cli/common.py``), the service and
the worker receive them from it, and every module gets the values it needs from its caller.

Four more variables are defaults of command-line options, read by the option parser and shown
in ``--help`` (:data:`CLI_OPTION_ENV`): ``STELLA_SERVER`` (``--server``), ``STELLA_TOKEN``
(``--token``), ``STELLA_OFFLINE`` (``--offline``) and ``STELLA_DEBUG`` (``--debug``).
``stella keys generate --passphrase-env NAME`` reads the variable it is told to.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from export_center.errors import BadInputError, ConfigError, input_error
from export_center.tenants import TENANT_RULE, check_tenant

__all__ = [
    "CLI_OPTION_ENV",
    "CORE_KEYS",
    "ENV_ONLY",
    "Quotas",
    "ServiceSettings",
    "Settings",
    "environment_names",
    "load_settings",
]

DEFAULT_DATA_DIR: Final = "~/.local/share/stella"
_PREFIX: Final = "STELLA_"
_SERVICE_PREFIX: Final = "STELLA_SERVICE_"
_QUOTA_PREFIX: Final = "quota_"

#: Core keys the settings file may set (under ``[stella]``).
CORE_KEYS: Final = frozenset(
    {
        "data_dir",
        "database_url",
        "default_tenant",
        "max_document_bytes",
        "artifact_dir",
        "quarantine_max_entries",
        "quarantine_max_bytes",
        "devportal_dir",
    }
)
#: Keys read from the environment only (``STELLA_<KEY>``): secrets, credentials, and the
#: per-user values of the CLI. A shared settings file is the wrong place for any of them.
ENV_ONLY: Final = frozenset(
    {
        "key_passphrase",
        "pkcs11_module",
        "pkcs11_pin",
        "registry_username",
        "registry_password",
        "user",
    }
)
#: Environment defaults of command-line options (``typer.Option(envvar=...)`` in the CLI).
CLI_OPTION_ENV: Final = MappingProxyType(
    {
        "--server": "STELLA_SERVER",
        "--token": "STELLA_TOKEN",
        "--offline": "STELLA_OFFLINE",
        "--debug": "STELLA_DEBUG",
    }
)


class Quotas(BaseModel):
    """Per-tenant limits; 0 means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrent_runs: NonNegativeInt = 4
    runs_per_hour: NonNegativeInt = 60
    bytes_per_day: NonNegativeInt = 0


_QUOTA_KEYS: Final = frozenset(Quotas.model_fields)


def _as_dict(value: object) -> object:
    return value.model_dump() if isinstance(value, BaseModel) else value


class ServiceSettings(BaseModel):
    """The service's and the workers' settings: auth, quotas, leases, retries, SSE, paging."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Offline JWKS file: JWTs signed by one of its keys are accepted besides stored tokens.
    jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    quotas: Quotas = Quotas()
    tenant_quotas: Mapping[str, Quotas] = Field(default_factory=dict)
    # A worker's claim on a run lasts lease_seconds past its last heartbeat.
    lease_seconds: NonNegativeFloat = 30.0
    heartbeat_seconds: NonNegativeFloat = 5.0
    # Attempts per run, counting takeovers after a lost worker.
    max_attempts: NonNegativeInt = 3
    retry_base_seconds: NonNegativeFloat = 5.0
    retry_max_seconds: NonNegativeFloat = 300.0
    # How often the maintenance loop recovers runs, applies retention and fires schedules.
    sweep_seconds: NonNegativeFloat = 5.0
    sse_heartbeat_seconds: NonNegativeFloat = 15.0
    sse_poll_seconds: NonNegativeFloat = 0.5
    # The worker polls the cancel flag this often while exporting.
    cancel_poll_seconds: NonNegativeFloat = 0.5
    idempotency_ttl_hours: NonNegativeInt = 24
    worker_concurrency: NonNegativeInt = 1
    page_limit_max: NonNegativeInt = 500
    # Request bodies over this many bytes are refused (413) before they are read, parsed or
    # authenticated. Profiles, run and plan requests are a few KiB; 1 MiB leaves room.
    max_request_bytes: PositiveInt = 1024 * 1024
    # /metrics names every tenant and profile: it needs a token with the export:metrics scope,
    # unless the operator serves it to a trusted network only and sets this (docs/security.md).
    metrics_public: bool = False
    # Distribution target besides the shared artifact directory: every published bundle is
    # also pushed as an OCI artifact to ``<repository>:<export id>`` (oci://HOST/REPO).
    oci_repository: str | None = None

    def quotas_for(self, tenant: str) -> Quotas:
        return self.tenant_quotas.get(tenant, self.quotas)

    @model_validator(mode="before")
    @classmethod
    def _fold_quotas(cls, data: Any) -> Any:
        """``quota_<key>`` (flat, as the environment gives them) and the ``quotas`` table make
        the default quotas; each tenant's table starts from those defaults."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        quotas = _as_dict(data.pop("quotas", None)) or {}
        if isinstance(quotas, Mapping):
            quotas = dict(quotas)
            for key in [k for k in data if k.startswith(_QUOTA_PREFIX)]:
                if key[len(_QUOTA_PREFIX) :] in _QUOTA_KEYS:
                    quotas[key[len(_QUOTA_PREFIX) :]] = data.pop(key)
        data["quotas"] = quotas
        tenants = data.get("tenant_quotas")
        if isinstance(tenants, Mapping) and isinstance(quotas, Mapping):
            defaults = {**Quotas().model_dump(), **quotas}
            data["tenant_quotas"] = {
                str(t): {**defaults, **q} if isinstance(q := _as_dict(raw), Mapping) else raw
                for t, raw in tenants.items()
            }
        return data

    @field_validator("jwks_file", mode="before")
    @classmethod
    def _path(cls, value: object) -> object:
        return Path(str(value)).expanduser() if value else None

    @field_validator("jwt_issuer", "jwt_audience", "oci_repository", mode="before")
    @classmethod
    def _optional(cls, value: object) -> object:
        return str(value) if value else None

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSettings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be shorter than "
                f"lease_seconds ({self.lease_seconds}), or every lease lapses between two "
                "heartbeats"
            )
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        return self


_SERVICE_ENV_KEYS: Final = frozenset(
    {k for k in ServiceSettings.model_fields if k not in {"quotas", "tenant_quotas"}}
    | {_QUOTA_PREFIX + k for k in _QUOTA_KEYS}
)

# The environment the sources read: os.environ, or the mapping given to load_settings (tests
# build settings from an explicit environment; several may do so at once on threads).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("stella_environ", default=None)


@contextmanager
def _reading(env: Mapping[str, str]) -> Iterator[None]:
    token = _ENVIRON.set(env)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _environ() -> Mapping[str, str]:
    env = _ENVIRON.get()
    return os.environ if env is None else env


class _EnvSource(PydanticBaseSettingsSource):
    """``STELLA_<KEY>`` for the core and environment-only keys, ``STELLA_SERVICE_<KEY>`` for
    the service keys. Other ``STELLA_*`` variables are none of ours (e.g. the test suite's)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in CORE_KEYS | ENV_ONLY:
            value = self._env.get(_PREFIX + key.upper())
            if value is not None:
                out[key] = value
        service = {
            key: value
            for key in _SERVICE_ENV_KEYS
            if (value := self._env.get(_SERVICE_PREFIX + key.upper())) is not None
        }
        if service:
            out["service"] = service
        return out


def settings_file(env: Mapping[str, str]) -> Path | None:
    """The settings file to read: ``STELLA_CONFIG``, else ``<data dir>/stella.toml`` if it
    exists (the data directory as the environment names it, or the default)."""
    named = env.get("STELLA_CONFIG")
    if named:
        return Path(named).expanduser()
    data_dir = Path(env.get(_PREFIX + "DATA_DIR", DEFAULT_DATA_DIR)).expanduser()
    path = data_dir / "stella.toml"
    return path if path.is_file() else None


class _TomlSource(PydanticBaseSettingsSource):
    """The settings file: ``[stella]`` (or top-level) core keys and the ``[service]`` table."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self._path
        if path is None:
            return {}
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as e:
            # A missing file is a missing input (exit 3), as everywhere.
            raise input_error(path, "the settings file", e) from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"settings file {path}: {e}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"settings file {path}: not UTF-8 text (byte {e.start})") from e
        service = raw.get("service", {})
        if "stella" in raw:
            core = raw["stella"]
            extra = sorted(set(raw) - {"stella", "service"})
            if extra:
                raise ConfigError(
                    f"settings file {path}: unknown table or key {extra[0]!r}",
                    hint="core settings go under [stella], service settings under [service]",
                )
        else:
            core = {k: v for k, v in raw.items() if k != "service"}
        for name, table in (("[stella]", core), ("[service]", service)):
            if not isinstance(table, dict):
                raise ConfigError(f"settings file {path}: {name} must be a table")
        for key in core:
            if key in ENV_ONLY:
                raise ConfigError(
                    f"settings file {path}: {key} is read from the environment only",
                    hint=f"set {_PREFIX}{key.upper()}",
                )
            if key not in CORE_KEYS:
                raise ConfigError(f"settings file {path}: unknown setting {key!r}")
        out: dict[str, Any] = dict(core)
        if service:
            out["service"] = dict(service)
        return out


class Settings(BaseSettings):
    """Resolved settings. Build with :func:`load_settings` (or, in the CLI, ``common.settings``)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""
    default_tenant: str = "default"
    # Ingestion refuses documents above this size (bytes): a guard against bombs and mistakes.
    max_document_bytes: int = 64 * 1024 * 1024
    # Where published bundles go by default (the embedded filesystem artifact store).
    artifact_dir: Path = Path()
    # Refused imports are kept in <data dir>/quarantine/ within these caps (a full quarantine
    # still records nothing more and says so; `stella airgap quarantine purge` empties it).
    quarantine_max_entries: PositiveInt = 20
    quarantine_max_bytes: NonNegativeInt = 1 << 30
    # The operator's developer-portal tree (portal/, specs/, sdks/<name>/, changelog/) that
    # devportal:offline runs package; tenants never name a server directory (docs/devportal.md).
    devportal_dir: Path | None = None
    # The passphrase of encrypted keys in the key store.
    key_passphrase: SecretStr | None = None
    # PKCS#11: the operator's module (.so) and user PIN, for HSM signing keys registered in the
    # key store and for KMS keys. Only here: profiles never name a module, token or object.
    pkcs11_module: str | None = None
    pkcs11_pin: SecretStr | None = None
    # Basic credentials for OCI registries (push and pull).
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    # Who imports bundles (recorded with each generation); the login name when unset.
    user: str | None = None
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def registry_credentials(self) -> tuple[str, str] | None:
        """(username, password) for OCI registries, when both are set."""
        if self.registry_username and self.registry_password:
            return self.registry_username, self.registry_password.get_secret_value()
        return None

    def with_service(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied to the service settings (validated like the file's).

        Raises:
            ConfigError: an unknown key, a value of the wrong type, or inconsistent timings.
        """
        values = {**self.service.model_dump(), **changes}
        try:
            service = ServiceSettings.model_validate(values)
        except ValidationError as e:
            raise _config_error(e, ("service",)) from e
        return self.model_copy(update={"service": service})

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """The database and the artifact directory live in the data directory by default."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        data_dir = Path(str(data.get("data_dir", DEFAULT_DATA_DIR))).expanduser()
        data["data_dir"] = data_dir
        database_url = data.get("database_url") or f"sqlite:///{data_dir / 'stella.db'}"
        data["database_url"] = str(database_url)
        artifact_dir = data.get("artifact_dir") or data_dir / "artifacts"
        data["artifact_dir"] = Path(str(artifact_dir)).expanduser()
        if "default_tenant" in data:
            tenant = data["default_tenant"] = str(data["default_tenant"])
            try:
                check_tenant(tenant)
            except BadInputError as e:
                # Here, not at the first command that uses it: a bad setting stops everything.
                raise ConfigError(f"setting default_tenant: {tenant!r}: use {TENANT_RULE}") from e
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _environ()
        return (
            init_settings,
            _EnvSource(settings_cls, env),
            _TomlSource(settings_cls, settings_file(env)),
        )


def environment_names() -> Mapping[str, str]:
    """Every environment variable the settings read, by the key it sets (for docs and tests)."""
    names = {key: _PREFIX + key.upper() for key in CORE_KEYS | ENV_ONLY}
    names |= {f"service.{key}": _SERVICE_PREFIX + key.upper() for key in _SERVICE_ENV_KEYS}
    names |= {"(settings file)": "STELLA_CONFIG", **CLI_OPTION_ENV}
    return MappingProxyType(dict(sorted(names.items())))


_TYPES: Final = {
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "int_type": "is not an integer",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "greater_than_equal": "must not be negative",
    "greater_than": "must be positive",
    "bool_parsing": "is not a boolean (true or false)",
    "bool_type": "is not a boolean (true or false)",
    "string_type": "is not a string",
    "path_type": "is not a path",
}


def _config_error(e: ValidationError, prefix: tuple[str, ...] = ()) -> ConfigError:
    """The first problem of ``e`` as one clear line (which key, what is wrong with it)."""
    err = e.errors(include_url=False)[0]
    loc = [*prefix, *(str(p) for p in err["loc"])]
    kind, value = err["type"], err.get("input")
    in_service = bool(loc) and loc[0] == "service"
    key = ".".join(loc[1:] if in_service else loc)
    what = f"service setting {key}" if in_service else f"setting {key}"
    if kind == "extra_forbidden":
        parent, _, leaf = key.rpartition(".")
        if in_service and parent.split(".")[0] in {"quotas", "tenant_quotas"}:
            return ConfigError(f"service setting {parent}: unknown quota {leaf!r}")
        return ConfigError(f"unknown {'service ' if in_service else ''}setting {key!r}")
    if kind in _TYPES:
        return ConfigError(f"{what}: {value!r} {_TYPES[kind]}")
    if kind in {"model_type", "dict_type", "mapping_type", "model_attributes_type"}:
        return ConfigError(f"{what} must be a table")
    if kind == "value_error":
        return ConfigError(str(err["msg"]).removeprefix("Value error, "))
    return ConfigError(f"{what}: {err['msg']}")


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve the settings from ``overrides``, the environment, the file and the defaults.

    ``env`` replaces the process environment (tests); ``overrides`` that are None are ignored,
    and ``service=`` takes a mapping merged into the service settings.

    Raises:
        ConfigError: the settings file is malformed, has an unknown key, or a value is invalid.
        NotFoundError: the settings file named does not exist. BadInputError: it cannot be read.
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    with _reading(os.environ if env is None else env):
        try:
            return Settings(**values)
        except ValidationError as e:
            raise _config_error(e) from e
