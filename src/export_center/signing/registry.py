"""The closed registry of signer backends: a backend name and its settings -> a :class:`Signer`.

Kept apart from :mod:`.interface`: the backends import the interface, and this module imports
the backends, so the import graph has no cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TypeAlias, assert_never

from export_center.errors import ConfigError, missing_extra
from export_center.signing.interface import Signer
from export_center.signing.keystore import signer_from_config as file_signer_from_config

__all__ = ["SignerBackend", "SignerFactory", "create_signer", "signer_factory"]


class SignerBackend(StrEnum):
    """Where private keys live. ``file``: the key store directory; ``pkcs11``: a token."""

    FILE = "file"
    PKCS11 = "pkcs11"


#: Builds a signer from string settings (as they come from the environment or a TOML table).
SignerFactory: TypeAlias = Callable[[Mapping[str, str]], Signer]


def _pkcs11_factory(config: Mapping[str, str]) -> Signer:
    # Imported when used: python-pkcs11 loads a native library most runs never need, and it
    # is an optional extra.
    try:
        from export_center.signing.pkcs11 import signer_from_config
    except ImportError as e:
        raise missing_extra("pkcs11", "signing with a PKCS#11 key", e) from e

    return signer_from_config(config)


def signer_factory(backend: SignerBackend) -> SignerFactory:
    """The factory of a backend; a new backend without a factory fails type checking."""
    match backend:
        case SignerBackend.FILE:
            return file_signer_from_config
        case SignerBackend.PKCS11:
            return _pkcs11_factory
        case _:
            assert_never(backend)


def create_signer(backend: str, config: Mapping[str, str]) -> Signer:
    """Build a signer for ``backend`` (``file`` or ``pkcs11``) from its settings.

    ``file`` reads ``key_dir`` (required), ``keyid`` (default: the newest key) and
    ``passphrase`` (for an encrypted key). ``pkcs11`` reads either ``uri``
    (``pkcs11:token=...;object=...?module-path=...``) or ``module``, ``token`` and ``key_label``,
    and the ``pin``. Callers fill secrets from the settings (``STELLA_KEY_PASSPHRASE``,
    ``STELLA_PKCS11_PIN``); this module reads no environment.

    Raises:
        ConfigError: unknown backend or missing setting.
        NotFoundError: the key does not exist.
        SigningError: the key exists but cannot be used (passphrase, PIN, token).
    """
    try:
        kind = SignerBackend(backend)
    except ValueError as e:
        choices = ", ".join(b.value for b in SignerBackend)
        raise ConfigError(f"unknown signer backend {backend!r}; choose one of {choices}") from e
    return signer_factory(kind)(config)
