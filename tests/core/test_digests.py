"""The one hashing helper agrees with the system's sha256sum."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from export_center.digests import CHUNK, prefixed, sha256_file, sha256_hex


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_file_digest_matches_sha256sum(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
    tool = shutil.which("sha256sum")
    assert tool, "sha256sum (coreutils) is part of every Debian system"
    expected = subprocess.run([tool, str(path)], capture_output=True, check=True).stdout.split()[0]
    assert sha256_file(path) == (expected.decode(), size)
    assert sha256_hex(path.read_bytes()) == expected.decode()


def test_prefixed_form() -> None:
    assert prefixed(sha256_hex(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
