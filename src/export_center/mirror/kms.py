"""The KMS plug-in point: wrap and unwrap a bundle's data key with a key that never leaves a
key-management system. Key ids are URIs, ``kms://<backend>/<backend-specific>``.

One backend ships: ``kms://pkcs11/<token label>/<key label>``, an AES key on a PKCS#11 token
(an HSM, or SoftHSM2 in tests). Wrapping is ``CKM_AES_GCM`` on the token with a fresh 12-byte
nonce, 128-bit tag and the export id as associated data; the wrapped key is
``nonce || ciphertext || tag``. The module path and the PIN come from the caller
(:class:`Pkcs11Access`, filled from the settings' ``STELLA_PKCS11_MODULE`` and
``STELLA_PKCS11_PIN``): key ids end up in signed manifests, so they carry no secrets.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote

from export_center.errors import ConfigError, NotFoundError, VerificationError, missing_extra

if TYPE_CHECKING:
    from export_center.settings import Settings

__all__ = ["Kms", "KmsError", "Pkcs11Access", "Pkcs11Kms", "kms_for"]

# Where the settings read the module and the PIN from (named in hints).
MODULE_ENV = "STELLA_PKCS11_MODULE"
PIN_ENV = "STELLA_PKCS11_PIN"
_NONCE = 12


class KmsError(VerificationError):
    """A KMS could not wrap or unwrap (unknown key, wrong token, forged wrapped key)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__("kms", message, hint=hint)


class Kms(Protocol):
    def wrap(self, key_id: str, data_key: bytes, aad: bytes) -> bytes:
        """Encrypt ``data_key`` under ``key_id`` bound to ``aad``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`.

        Raises:
            KmsError: wrong key, wrong ``aad`` or tampered ``wrapped``.
        """
        ...


def _split(key_id: str) -> tuple[str, list[str]]:
    if not key_id.startswith("kms://"):
        raise ConfigError(f"{key_id!r} is not a KMS key id (kms://<backend>/...)")
    backend, _, rest = key_id[len("kms://") :].partition("/")
    return backend, [unquote(p) for p in rest.split("/")] if rest else []


@dataclass(frozen=True)
class Pkcs11Access:
    """The operator's PKCS#11 module (the vendor's ``.so``) and the user PIN of its tokens."""

    module: str | None = None
    pin: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Pkcs11Access:
        pin = settings.pkcs11_pin
        return cls(settings.pkcs11_module, pin.get_secret_value() if pin else None)


class Pkcs11Kms:
    """``kms://pkcs11/<token label>/<key label>``: an AES key on a PKCS#11 token."""

    def __init__(self, access: Pkcs11Access | None = None) -> None:
        self._access = access or Pkcs11Access()

    def _key(self, key_id: str) -> tuple[object, object]:
        try:
            import pkcs11
            from pkcs11 import KeyType, ObjectClass
            from pkcs11 import exceptions as p11err
        except ImportError as e:
            raise missing_extra("pkcs11", f"{key_id} (a PKCS#11 KMS key)", e) from e

        _, parts = _split(key_id)
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{key_id}: expected kms://pkcs11/<token label>/<key label>")
        token_label, key_label = parts
        module = self._access.module
        if not module or not Path(module).is_file():
            raise ConfigError(
                f"{key_id}: no PKCS#11 module (set {MODULE_ENV} to the vendor's .so)",
            )
        pin = self._access.pin
        if not pin:
            raise ConfigError(f"{key_id}: no PIN (set {PIN_ENV})")
        try:
            token = pkcs11.lib(module).get_token(token_label=token_label)
        except p11err.NoSuchToken as e:
            raise NotFoundError(f"{key_id}: no PKCS#11 token labelled {token_label!r}") from e
        session = token.open(user_pin=pin)
        try:
            key = session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=key_label
            )
        except p11err.PKCS11Error as e:
            session.close()
            raise NotFoundError(f"{key_id}: no AES key labelled {key_label!r} ({e!r})") from e
        return session, key

    def wrap(self, key_id: str, data_key: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        session, key = self._key(key_id)
        try:
            nonce = secrets.token_bytes(_NONCE)
            sealed = key.encrypt(  # type: ignore[attr-defined]
                data_key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128)
            )
            return nonce + bytes(sealed)
        finally:
            session.close()  # type: ignore[attr-defined]

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11 import exceptions as p11err
        from pkcs11.mechanisms import GCMParams

        if len(wrapped) <= _NONCE + 16:
            raise KmsError(f"{key_id}: wrapped key is too short")
        session, key = self._key(key_id)
        try:
            return bytes(
                key.decrypt(  # type: ignore[attr-defined]
                    wrapped[_NONCE:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(wrapped[:_NONCE], aad, 128),
                )
            )
        except p11err.PKCS11Error as e:
            raise KmsError(f"{key_id}: cannot unwrap the data key ({type(e).__name__})") from e
        finally:
            session.close()  # type: ignore[attr-defined]


def kms_for(key_id: str, access: Pkcs11Access | None = None) -> Kms:
    """The KMS backend named by ``key_id`` (closed registry), reached with ``access``.

    Raises:
        ConfigError: not a ``kms://`` id, or an unknown backend.
    """
    backend, _ = _split(key_id)
    if backend == "pkcs11":
        return Pkcs11Kms(access)
    raise ConfigError(f"{key_id}: unknown KMS backend {backend!r} (supported: pkcs11)")
