"""Encryption to a KMS key id backed by PKCS#11 (SoftHSM2), in a child process."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from support.tools import missing, support_module_cmd

MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def test_kms_wrapped_data_key_round_trip(tmp_path: Path) -> None:
    util = shutil.which("softhsm2-util")
    module = os.environ.get("SOFTHSM2_MODULE") or next(
        (m for m in MODULES if Path(m).is_file()), None
    )
    if util is None or module is None:
        missing("SoftHSM2 (softhsm2-util and libsofthsm2.so)")
    assert util is not None and module is not None
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    env = {
        **os.environ,
        "SOFTHSM2_CONF": str(conf),
        "STELLA_PKCS11_MODULE": module,
        "STELLA_PKCS11_PIN": "4321",
    }
    subprocess.run(
        [
            util,
            "--init-token",
            "--free",
            "--label",
            "stella-kms",
            "--so-pin",
            "8765",
            "--pin",
            "4321",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    cmd, cmd_env = support_module_cmd("kms_roundtrip", env)
    run = subprocess.run(
        [*cmd, str(tmp_path / "run"), module, "stella-kms", "4321"],
        capture_output=True,
        text=True,
        env=cmd_env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "KMS-ROUND-TRIP-OK" in run.stdout
