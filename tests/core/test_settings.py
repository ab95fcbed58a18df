"""One settings model: precedence, the settings file's keys, and every environment name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from export_center.errors import ConfigError
from export_center.settings import CLI_OPTION_ENV, environment_names, load_settings

SRC = Path(__file__).resolve().parents[2] / "src" / "export_center"


def test_precedence_overrides_env_file_defaults(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "stella.toml").write_text(
        '[stella]\ndefault_tenant = "from-file"\nmax_document_bytes = 10\n'
        "[service]\nlease_seconds = 45\nworker_concurrency = 2\n"
    )
    env = {
        "STELLA_DATA_DIR": str(data),
        "STELLA_DEFAULT_TENANT": "from-env",
        "STELLA_SERVICE_WORKER_CONCURRENCY": "3",
    }
    s = load_settings(env=env)
    assert (s.default_tenant, s.max_document_bytes) == ("from-env", 10)
    assert (s.service.lease_seconds, s.service.worker_concurrency) == (45.0, 3)
    assert s.database_url == f"sqlite:///{data / 'stella.db'}"
    assert s.artifact_dir == data / "artifacts"
    s = load_settings(env=env, default_tenant="given", service={"worker_concurrency": 4})
    assert (s.default_tenant, s.service.worker_concurrency) == ("given", 4)
    # STELLA_CONFIG names another file; an empty one means "none named".
    other = tmp_path / "other.toml"
    other.write_text('default_tenant = "top-level"\n')
    assert load_settings(env={**env, "STELLA_CONFIG": str(other)}).service.lease_seconds == 30
    assert load_settings(env={"STELLA_CONFIG": str(other)}).default_tenant == "top-level"
    assert load_settings(env={**env, "STELLA_CONFIG": ""}).max_document_bytes == 10


def test_secrets_come_from_the_environment_only(tmp_path: Path) -> None:
    s = load_settings(
        env={
            "STELLA_DATA_DIR": str(tmp_path),
            "STELLA_KEY_PASSPHRASE": "correct horse",
            "STELLA_REGISTRY_USERNAME": "bot",
            "STELLA_REGISTRY_PASSWORD": "hunter2",
        }
    )
    assert s.key_passphrase is not None
    assert s.key_passphrase.get_secret_value() == "correct horse"
    assert s.registry_credentials == ("bot", "hunter2")
    assert "hunter2" not in repr(s) and "correct horse" not in repr(s)
    cfg = tmp_path / "stella.toml"
    cfg.write_text('[stella]\npkcs11_pin = "1234"\n')
    with pytest.raises(ConfigError, match="pkcs11_pin is read from the environment only"):
        load_settings(env={"STELLA_CONFIG": str(cfg)})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[stella]\ncolour = 1\n", "unknown setting 'colour'"),
        ("[stella]\n[tools]\nx = 1\n", "unknown table or key 'tools'"),
        ("[service]\nlease = 3\n", "unknown service setting 'lease'"),
        ("[service.quotas]\nruns = 3\n", "service setting quotas: unknown quota 'runs'"),
        ("[service]\nmax_attempts = 0\n", "max_attempts must be at least 1"),
        ("[service]\nsweep_seconds = -1\n", "sweep_seconds: -1 must not be negative"),
        ("[stella\n", "settings file"),
    ],
)
def test_bad_settings_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "stella.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env={"STELLA_CONFIG": str(cfg)})


def test_every_environment_variable_the_code_names_is_a_setting() -> None:
    known = set(environment_names().values())
    assert set(CLI_OPTION_ENV.values()) <= known
    named: set[str] = set()
    for path in SRC.rglob("*.py"):
        named |= set(re.findall(r"\bSTELLA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    # Prefixes of the names the settings build; the rest must be settings the model knows.
    assert named - known - {"STELLA_SERVICE", "STELLA_PKCS11"} == set()
