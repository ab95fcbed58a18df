"""The signer plug-in point: what a key backend must offer, and the public-key side of trust.

The backends themselves (key files, PKCS#11) implement :class:`Signer` and import this module;
:mod:`.registry` maps backend names to them, so nothing here imports a backend.

A :class:`Signer` is one private key, wherever it lives (a PEM file, an HSM behind PKCS#11). It
only signs bytes; envelopes and sidecars are built on top of it in :mod:`.dsse`. Verification
never needs a backend: it works on public keys alone (:func:`load_trust_roots`,
:func:`verify_signature`), so a disconnected verifier needs nothing but a PEM file.

Signature encodings (docs/bundle-format.md, "Signatures"):

- Ed25519: the raw 64-byte signature over the data (deterministic).
- ECDSA P-256: the DER ``ECDSA-Sig-Value`` over SHA-256 of the data (what cosign and
  ``openssl dgst -sha256 -sign`` produce).
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from export_center.errors import VerificationError

__all__ = [
    "KeyType",
    "PublicKey",
    "Signer",
    "key_type_of",
    "keyid_of",
    "load_public_key",
    "load_trust_roots",
    "public_key_pem",
    "verify_signature",
]

#: Public keys we accept. ECDSA keys are further restricted to P-256 by :func:`key_type_of`.
PublicKey: TypeAlias = Ed25519PublicKey | ec.EllipticCurvePublicKey

# A PEM block of a public key; anything else in a trust-roots file is refused (fail closed).
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


class KeyType(StrEnum):
    """The key types we sign with. Ed25519 is the default (deterministic signatures)."""

    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


class Signer(Protocol):
    """One private key that can sign bytes."""

    @property
    def keyid(self) -> str:
        """Lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER."""
        ...

    @property
    def key_type(self) -> KeyType: ...

    def public_key_pem(self) -> bytes:
        """The public key as a PEM ``PUBLIC KEY`` (SPKI) block."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``: raw 64 bytes for Ed25519, DER over SHA-256(data) for ECDSA P-256.

        Raises:
            SigningError: the key could not be used.
        """
        ...


def key_type_of(public_key: object) -> KeyType:
    """The :class:`KeyType` of a public key.

    Raises:
        ValueError: the key is neither Ed25519 nor ECDSA P-256.
    """
    if isinstance(public_key, Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return KeyType.ECDSA_P256
    raise ValueError(
        f"unsupported public key {type(public_key).__name__}: use Ed25519 or ECDSA P-256"
    )


def keyid_of(public_key: PublicKey) -> str:
    """Lowercase hex SHA-256 of the key's SubjectPublicKeyInfo DER (docs/bundle-format.md,
    "Signatures")."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def public_key_pem(public_key: PublicKey) -> bytes:
    """The key as a PEM ``PUBLIC KEY`` (SPKI) block."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> PublicKey:
    """Parse one PEM ``PUBLIC KEY`` block.

    Raises:
        ValueError: not a PEM public key, or not Ed25519 / ECDSA P-256.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ValueError(f"not a PEM public key: {e}") from e
    if isinstance(key, Ed25519PublicKey | ec.EllipticCurvePublicKey):
        key_type_of(key)  # refuses curves other than P-256
        return key
    raise ValueError(f"unsupported public key {type(key).__name__}: use Ed25519 or ECDSA P-256")


def load_trust_roots(pem_bytes: bytes, *, where: str = "trust roots") -> dict[str, PublicKey]:
    """Parse a file of one or more PEM public keys into ``{keyid: key}``.

    Fails closed: a file without any key, a private key, a certificate or any block we cannot
    use is an error, never silently skipped. ``where`` names the file in messages.

    Raises:
        VerificationError: (check ``trust-roots``) no usable key, or a block is refused.
    """
    roots: dict[str, PublicKey] = {}
    for n, match in enumerate(_PEM_BLOCK.finditer(pem_bytes), start=1):
        label = match.group(1).decode("ascii")
        if label != "PUBLIC KEY":
            raise VerificationError(
                "trust-roots",
                f"{where}: block {n} is a {label!r}, expected 'PUBLIC KEY'",
                hint="export public keys with `stella keys export-public KEYID`",
            )
        try:
            key = load_public_key(match.group(0))
        except ValueError as e:
            raise VerificationError("trust-roots", f"{where}: block {n}: {e}") from e
        roots[keyid_of(key)] = key
    if not roots:
        raise VerificationError(
            "trust-roots",
            f"{where}: no PEM public key found; refusing to verify against nothing",
            hint="pass a file with one or more '-----BEGIN PUBLIC KEY-----' blocks",
        )
    return roots


def verify_signature(public_key: PublicKey, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid signature of ``data`` by ``public_key``.

    Encodings as :meth:`Signer.sign` produces them. A malformed signature is simply invalid.
    """
    try:
        if isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            if not isinstance(public_key.curve, ec.SECP256R1):
                return False
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
