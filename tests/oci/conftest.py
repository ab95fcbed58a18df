"""Fixtures for the OCI tests: Debian's docker-registry on 127.0.0.1, skopeo, instances."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from export_center.signing.keyfile import FileSigner
from support.mirror import Instance, new_signer
from support.tools import missing


@pytest.fixture(scope="session")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        missing("skopeo")
    assert path is not None
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry (distribution 2.x) on 127.0.0.1; yields ``HOST:PORT``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        missing("docker-registry (Debian package docker-registry)")
    assert binary is not None
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def make_instance(tmp_path: Path) -> Callable[..., Instance]:
    def make(name: str, db: Path | None = None) -> Instance:
        return Instance.create(tmp_path / name, db)

    return make


@pytest.fixture
def signer() -> FileSigner:
    return new_signer()
