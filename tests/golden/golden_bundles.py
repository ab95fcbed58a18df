"""Build the golden bundles: a small fixed store exported with a fixed key at a fixed time.

The committed copies under ``expected/`` pin the bundle bytes. A change in our writers, or a
library upgrade that changes bytes (zstd, zlib, the bbolt layout, canonical JSON), makes
``test_golden_bundles.py`` fail. When the change is intended, regenerate and commit:

    .venv/bin/python tests/golden/golden_bundles.py

Everything goes through the ``stella`` command of the running interpreter's environment, so the
golden files do not depend on where modules live. The store's clock is pinned with Debian's
``faketime`` (the as-of time of an export is the time its last change was recorded); the key is
a fixed, public, test-only Ed25519 key committed next to this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent
INPUT = HERE / "input"
EXPECTED = HERE / "expected"
KEY = HERE / "golden-test-key.pem"
PINNED_TIME = "2025-06-01 12:00:00"

# (profile name, `stella export profile create` arguments)
PROFILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("golden-raw", ("--kind", "json", "--variant", "raw")),
    ("golden-raw-gzip", ("--kind", "json", "--variant", "raw", "--compression", "gzip")),
    ("golden-trivy", ("--kind", "trivy", "--variant", "db")),
    ("golden-mirror", ("--kind", "mirror", "--variant", "full")),
    # TUF metadata valid for 100 years after the pinned as-of time: importable in tests today.
    ("golden-mirror-longlived", ("--file", str(HERE / "profiles" / "mirror-longlived.json"))),
)
INGEST = (("advisories", "golden-osv"), ("vex", "golden-vex"), ("sboms", "golden-sbom"))


def _stella() -> str:
    return str(Path(sys.executable).with_name("stella"))


def _install_key(data_dir: Path) -> str:
    """Put the fixed key into the data dir's key store (its documented on-disk layout: a
    version 1 index, which later versions read as a key assigned to no tenant)."""
    private = serialization.load_pem_private_key(KEY.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib

    keyid = hashlib.sha256(spki).hexdigest()
    keys = data_dir / "keys"
    keys.mkdir(parents=True)
    (keys / f"{keyid}.key.pem").write_bytes(KEY.read_bytes())
    (keys / f"{keyid}.key.pem").chmod(0o600)
    (keys / f"{keyid}.pub.pem").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    index = {
        "version": 1,
        "nextSeq": 2,
        "keys": [
            {
                "keyid": keyid,
                "type": "ed25519",
                "seq": 1,
                "created": "2025-06-01T12:00:00Z",
                "encrypted": False,
            }
        ],
    }
    (keys / "index.json").write_text(json.dumps(index))
    return keyid


def build(work: Path, out: Path) -> list[str]:
    """Build every golden bundle from scratch under ``work``; copy archives + sidecars to ``out``.

    Returns the names of the files written to ``out``, sorted.
    """
    faketime = shutil.which("faketime")
    if faketime is None:
        raise FileNotFoundError("faketime (Debian package faketime) is needed to pin the clock")
    data = work / "data"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("STELLA_", "SOURCE_DATE_EPOCH"))
    }
    env.update(STELLA_DATA_DIR=str(data), TZ="UTC", FAKETIME_DONT_FAKE_MONOTONIC="1")

    def stella(*args: str, pinned: bool = False) -> None:
        cmd = [_stella(), *args]
        if pinned:
            cmd = [faketime, "-f", PINNED_TIME, *cmd]
        subprocess.run(cmd, env=env, check=True, capture_output=True)

    keyid = _install_key(data)
    # The key is the operator's; profiles of the default tenant may sign with it once assigned.
    stella("keys", "assign", keyid, "--tenant", "default")
    for folder, source in INGEST:
        stella("ingest", str(INPUT / folder), "--source", source, pinned=True)
    bundles = work / "bundles"
    for name, args in PROFILES:
        stella("export", "profile", "create", name, *args, "--key", keyid)
        stella("export", "run", name, "--out", str(bundles))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(bundles.iterdir()):
        if f.is_file():
            shutil.copyfile(f, out / f.name)
            written.append(f.name)
    return written


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.rmtree(EXPECTED, ignore_errors=True)
        for name in build(Path(tmp), EXPECTED):
            print(f"{name}  {(EXPECTED / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
