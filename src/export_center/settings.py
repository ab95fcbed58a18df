"""Settings in one place: ``STELLA_*`` environment variables over an optional TOML file.

Precedence (highest first): environment, the TOML file named by ``STELLA_CONFIG`` (or
``<data dir>/stella.toml`` when it exists), built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from export_center.errors import ConfigError

_DEFAULT_DATA_DIR = "~/.local/share/stella"


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`load_settings`."""

    data_dir: Path
    database_url: str
    default_tenant: str = "default"
    # Ingestion refuses documents above this size (bytes): a guard against bombs and mistakes.
    max_document_bytes: int = 64 * 1024 * 1024
    # Where published bundles go by default (the embedded filesystem artifact store).
    artifact_dir: Path = field(default=Path())

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"settings file {path}: {e}") from e
    section = raw.get("stella", raw)
    if not isinstance(section, dict):
        raise ConfigError(f"settings file {path}: [stella] must be a table")
    return section


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from the environment, an optional TOML file and ``overrides``.

    Raises:
        ConfigError: the TOML file is unreadable or a value has the wrong type.
    """
    env = dict(os.environ) if env is None else env
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    data_dir_hint = Path(env.get("STELLA_DATA_DIR", _DEFAULT_DATA_DIR)).expanduser()
    cfg = env.get("STELLA_CONFIG")
    cfg_path = Path(cfg).expanduser() if cfg else data_dir_hint / "stella.toml"
    if cfg or cfg_path.is_file():
        for k, v in _from_toml(cfg_path).items():
            if k not in known:
                raise ConfigError(f"settings file {cfg_path}: unknown setting {k!r}")
            values[k] = v
    for name in known:
        env_value = env.get(f"STELLA_{name.upper()}")
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in overrides.items() if v is not None})

    data_dir = Path(str(values.get("data_dir", _DEFAULT_DATA_DIR))).expanduser()
    db_url = str(values.get("database_url") or f"sqlite:///{data_dir / 'stella.db'}")
    try:
        max_doc = int(values.get("max_document_bytes", Settings.max_document_bytes))
    except ValueError as e:
        raise ConfigError(f"max_document_bytes must be an integer: {e}") from e
    artifact_dir = Path(str(values.get("artifact_dir") or data_dir / "artifacts")).expanduser()
    return Settings(
        data_dir=data_dir,
        database_url=db_url,
        default_tenant=str(values.get("default_tenant", "default")),
        max_document_bytes=max_doc,
        artifact_dir=artifact_dir,
    )
