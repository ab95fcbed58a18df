"""Key pairs in PEM files: PKCS#8 private keys (optionally passphrase-encrypted), SPKI public keys.

This module works on bytes only; :mod:`.keystore` owns the directory and file modes.
"""

from __future__ import annotations

from typing import TypeAlias, assert_never

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from export_center.errors import SigningError
from export_center.signing.interface import KeyType, PublicKey, key_type_of, keyid_of

__all__ = [
    "FileSigner",
    "PrivateKey",
    "generate_private_key",
    "is_encrypted_pem",
    "load_private_key",
    "private_key_pem",
]

PrivateKey: TypeAlias = Ed25519PrivateKey | ec.EllipticCurvePrivateKey

_ENCRYPTED_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """A fresh private key of ``key_type``."""
    match key_type:
        case KeyType.ED25519:
            return Ed25519PrivateKey.generate()
        case KeyType.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        case _:
            assert_never(key_type)


def private_key_pem(key: PrivateKey, passphrase: str | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with the best available scheme when ``passphrase``.

    Raises:
        SigningError: the passphrase is empty.
    """
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    elif passphrase == "":
        raise SigningError("an empty passphrase protects nothing", hint="choose a passphrase")
    else:
        encryption = serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def is_encrypted_pem(pem: bytes) -> bool:
    """True for a PKCS#8 ``ENCRYPTED PRIVATE KEY`` block."""
    return _ENCRYPTED_HEADER in pem


def load_private_key(
    pem: bytes, passphrase: str | None = None, *, where: str = "key"
) -> PrivateKey:
    """Parse a PEM private key; ``passphrase`` is used only when the key is encrypted.

    Raises:
        SigningError: encrypted without a passphrase, wrong passphrase, not a PEM private key,
            or not Ed25519 / ECDSA P-256. ``where`` names the file.
    """
    encrypted = is_encrypted_pem(pem)
    if encrypted and not passphrase:
        raise SigningError(
            f"{where} is passphrase-protected and no passphrase was given",
            hint="set STELLA_KEY_PASSPHRASE (or the variable named by --passphrase-env)",
        )
    try:
        key = serialization.load_pem_private_key(
            pem, passphrase.encode("utf-8") if encrypted and passphrase else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        if encrypted:
            raise SigningError(
                f"{where}: cannot decrypt the private key (wrong passphrase?)",
                hint="check STELLA_KEY_PASSPHRASE",
            ) from e
        raise SigningError(f"{where}: not a usable PEM private key: {e}") from e
    if isinstance(key, Ed25519PrivateKey) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise SigningError(f"{where}: unsupported key {type(key).__name__}; use Ed25519 or ECDSA P-256")


class FileSigner:
    """A :class:`~export_center.signing.interface.Signer` over an in-memory private key."""

    def __init__(self, private_key: PrivateKey) -> None:
        self._key = private_key
        self._public: PublicKey = private_key.public_key()
        self._key_type = key_type_of(self._public)
        self._keyid = keyid_of(self._public)

    @classmethod
    def from_pem(
        cls, pem: bytes, passphrase: str | None = None, *, where: str = "key"
    ) -> FileSigner:
        """Load a signer from PEM bytes (see :func:`load_private_key`).

        Raises:
            SigningError: as :func:`load_private_key`.
        """
        return cls(load_private_key(pem, passphrase, where=where))

    @property
    def keyid(self) -> str:
        return self._keyid

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def public_key_pem(self) -> bytes:
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, Ed25519PrivateKey):
            return self._key.sign(data)
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def __repr__(self) -> str:
        return f"FileSigner(keyid={self._keyid[:16]}…, key_type={self._key_type.value})"
