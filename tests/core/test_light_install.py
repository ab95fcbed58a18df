"""The air-gapped side installs light: verify, import and trivy-install need no service extras.

``pip install stella-export-center`` (no extras) must be enough on the disconnected machine.
Tests run offline, so instead of a fresh venv each command runs in a subprocess where the
optional packages cannot be imported at all: an import of any of them fails the command.
The committed golden bundles are the input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from golden import golden_bundles as golden

pytestmark = pytest.mark.slow  # many subprocesses

REPO = Path(__file__).resolve().parents[2]
# Import names of the packages that only the extras bring.
OPTIONAL = (
    "fastapi",
    "starlette",
    "uvicorn",
    "procrastinate",
    "psycopg",
    "jwt",
    "prometheus_client",
    "pkcs11",
)

_BLOCKER = """
import sys
BLOCKED = {blocked!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not installed)",
                                      name=name)
        return None
sys.meta_path.insert(0, Block())
{then}
"""
_RUN_CLI = """
sys.argv = ["stella", *sys.argv[1:]]
from export_center.cli.main import main
main()
"""


def _stella_light(
    args: list[str], data_dir: Path, then: str = _RUN_CLI
) -> subprocess.CompletedProcess[str]:
    code = _BLOCKER.format(blocked=OPTIONAL, then=then)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "STELLA_DATA_DIR": str(data_dir)},
    )


def _archive(prefix: str) -> Path:
    (found,) = [
        p
        for p in golden.EXPECTED.iterdir()
        if p.name.startswith(prefix) and p.name.endswith((".tar.zst", ".tar.gz"))
    ]
    return found


def test_base_dependencies_exclude_the_extras() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for name in (
        "fastapi",
        "uvicorn",
        "procrastinate",
        "psycopg",
        "pyjwt",
        "prometheus-client",
        "python-pkcs11",
    ):
        assert name not in base, f"{name} must be an extra, not a base dependency"
    extras = project["optional-dependencies"]
    assert {"service", "postgres", "pkcs11"} <= extras.keys()


def test_blocking_really_blocks(tmp_path: Path) -> None:
    """The harness itself: the service's modules cannot be imported under it."""
    result = _stella_light([], tmp_path, then="import export_center.service.app")
    assert result.returncode != 0
    assert "No module named 'fastapi' (blocked: not installed)" in result.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["serve", "--port", "65535"], "service"),  # never reached: no uvicorn
        (["tokens", "list"], "service"),
        (["worker"], "service"),
    ],
)
def test_service_commands_name_the_missing_extra(
    tmp_path: Path, args: list[str], extra: str
) -> None:
    result = _stella_light(args, tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"pip install 'stella-export-center[{extra}]'" in result.stderr


# The mirror bundle with long-lived TUF metadata: golden-mirror-r1's ran out in 2025 (step 8).
@pytest.mark.parametrize("prefix", ["golden-raw-r1", "golden-trivy", "golden-mirror-longlived"])
def test_export_verify_without_extras(tmp_path: Path, prefix: str) -> None:
    pub = golden.HERE / "golden-test-key.pub.pem"
    result = _stella_light(
        ["export", "verify", str(_archive(prefix)), "--trust-roots", str(pub)], tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


def test_airgap_import_and_trivy_install_without_extras(tmp_path: Path) -> None:
    pub = str(golden.HERE / "golden-test-key.pub.pem")
    data = tmp_path / "data"
    imported = _stella_light(
        ["airgap", "import", str(_archive("golden-mirror-longlived")), "--trust-roots", pub],
        data,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    stats = _stella_light(["evidence", "stats", "--format", "json"], data)
    assert stats.returncode == 0, stats.stderr
    rows = {r["source"]: r["records"] for r in json.loads(stats.stdout)["rows"]}
    assert rows == {"golden-osv": 3, "golden-vex": 1, "golden-sbom": 1}, rows
    cache = tmp_path / "trivy-cache"
    installed = _stella_light(
        [
            "airgap",
            "trivy-install",
            str(_archive("golden-trivy")),
            "--cache-dir",
            str(cache),
            "--trust-roots",
            pub,
        ],
        data,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (cache / "db" / "trivy.db").stat().st_size > 0
    assert (cache / "db" / "metadata.json").is_file()
