"""Helpers for the devportal tests: unpacking and re-packing bundles, running the shell script."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from export_center.archive.writer import EXEC_MODE, FILE_MODE, TreeEntry, write_tree
from export_center.checksums import build_checksums
from export_center.digests import sha256_hex
from export_center.signing.keyfile import FileSigner


@dataclass(frozen=True)
class Key:
    """A signer and the path of its public key (PEM)."""

    signer: FileSigner
    public_pem: Path


REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "devportal"
ROOT_NON_CONTENT = ("checksums.txt",)


def unpack(tgz: bytes) -> dict[str, bytes]:
    """Every regular file of a bundle, by path."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for info in tar:
            if info.isfile():
                fh = tar.extractfile(info)
                assert fh is not None
                out[info.name] = fh.read()
    return out


def repack(files: Mapping[str, bytes], *, fix_checksums: bool = False) -> bytes:
    """A bundle of ``files`` (checksums.txt recomputed when asked), written deterministically."""
    files = dict(files)
    if fix_checksums:
        files["checksums.txt"] = build_checksums(
            (p, sha256_hex(d)) for p, d in files.items() if p != "checksums.txt"
        )
    out = io.BytesIO()
    entries = [
        TreeEntry(p, d, mode=EXEC_MODE if p == "verify-offline.sh" else FILE_MODE)
        for p, d in files.items()
    ]
    write_tree(out, entries, compression="gzip", level=9, mtime=1735689600)
    return out.getvalue()


def extract(tgz: bytes, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("profile.json"))
    return dest


def run_script(
    shell: list[str], bundle_dir: Path, *args: str, path: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": path or os.environ.get("PATH", "/usr/bin:/bin"),
        "TMPDIR": str(bundle_dir.parent),
    }
    script = "verify-offline.sh" if cwd is None else str(bundle_dir / "verify-offline.sh")
    return subprocess.run(
        [*shell, script, *args],
        cwd=cwd or bundle_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
