"""Signing: the Signer protocol and trust (``interface``), key backends (``keyfile``/``keystore``,
``pkcs11``), the backend ``registry`` and DSSE.

The PKCS#11 backend is imported only when used (``export_center.signing.pkcs11``).
"""

from export_center.signing.dsse import (
    detached_signature,
    pae,
    sign_envelope,
    verify_detached_signature,
    verify_envelope,
)
from export_center.signing.interface import (
    KeyType,
    PublicKey,
    Signer,
    keyid_of,
    load_public_key,
    load_trust_roots,
    verify_signature,
)
from export_center.signing.keyfile import FileSigner
from export_center.signing.keystore import KeyInfo, KeyStore
from export_center.signing.registry import SignerBackend, create_signer

__all__ = [
    "FileSigner",
    "KeyInfo",
    "KeyStore",
    "KeyType",
    "PublicKey",
    "Signer",
    "SignerBackend",
    "create_signer",
    "detached_signature",
    "keyid_of",
    "load_public_key",
    "load_trust_roots",
    "pae",
    "sign_envelope",
    "verify_detached_signature",
    "verify_envelope",
    "verify_signature",
]
