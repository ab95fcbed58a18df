"""Helpers shared by the signing tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from export_center.signing.interface import KeyType

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
TOKEN_LABEL = "stella-test"
USER_PIN = "1234"
SO_PIN = "5678"


def openssl_keyid(openssl: str, pub_pem: Path) -> str:
    """sha256 of the SPKI DER as OpenSSL (not cryptography) serializes it."""
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-in", str(pub_pem), "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return hashlib.sha256(der).hexdigest()


def openssl_verify(
    openssl: str, key_type: KeyType, pub_pem: Path, data: Path, sidecar: bytes
) -> subprocess.CompletedProcess[str]:
    """Verify a base64 ``.sig`` sidecar with OpenSSL (decoded to raw/DER first)."""
    sig = data.with_suffix(".sigbin")
    sig.write_bytes(base64.b64decode(sidecar, validate=True))
    if key_type is KeyType.ECDSA_P256:
        cmd = [
            openssl,
            "dgst",
            "-sha256",
            "-verify",
            str(pub_pem),
            "-signature",
            str(sig),
            str(data),
        ]
    else:
        cmd = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(pub_pem), "-rawin"]
        cmd += ["-in", str(data), "-sigfile", str(sig)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class SoftHsm:
    """A SoftHSM2 token made for the test session (see conftest.softhsm)."""

    module: str
    token: str
    pin: str
    eddsa: bool
