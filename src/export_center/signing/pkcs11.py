"""A :class:`~export_center.signing.interface.Signer` whose private key stays on a PKCS#11 token.

Configuration names the module (the vendor's ``.so``), the token label and the key label; the
user PIN comes from the configuration, which callers fill from the settings' ``STELLA_PKCS11_PIN``
(this module reads no environment). The same settings can be given
as an RFC 7512 URI subset: ``pkcs11:token=<label>;object=<label>?module-path=<path>``
(percent-encoded; a ``pin-value`` in the URI is refused, since URIs end up in logs).

Mechanisms:

- ECDSA P-256 (``CKK_EC``): we hash with SHA-256 in Python and ask the token for ``CKM_ECDSA``
  over the digest (every token has it; ``CKM_ECDSA_SHA256`` is optional), then turn the raw
  ``r || s`` the token returns into the DER ``ECDSA-Sig-Value`` that cosign and OpenSSL expect.
- Ed25519 (``CKK_EC_EDWARDS``, ``CKM_EDDSA``, PKCS#11 3.0): supported by SoftHSM 2.6 and later;
  the token returns the raw 64-byte signature.

The keyid is computed from the public key read off the token (``CKA_EC_POINT``), so it equals the
keyid of the same key exported to a PEM file. Every signature is checked against that public key
before it is returned: a token holding a mismatched key pair under one label, or a faulty device,
cannot produce a bundle that would fail verification later.

Sessions: one short session per operation, logged in with the PIN. PKCS#11 login state is shared
by all sessions of a process, and closing a logged-in session logs the whole process out, so do
not hold other logged-in sessions on the same token while signing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11err
from pkcs11.types import SignMixin

from export_center.errors import ConfigError, NotFoundError, SigningError
from export_center.signing.interface import (
    KeyType,
    PublicKey,
    keyid_of,
    public_key_pem,
    verify_signature,
)

__all__ = ["PIN_ENV", "Pkcs11Config", "Pkcs11Signer", "signer_from_config"]

logger = logging.getLogger(__name__)

#: Where the settings read the user PIN from (named in hints).
PIN_ENV = "STELLA_PKCS11_PIN"

# DER of the curve identifiers found in CKA_EC_PARAMS.
_P256_OID = bytes.fromhex("06082a8648ce3d030107")  # 1.2.840.10045.3.1.7 (prime256v1)
_ED25519_OID = bytes.fromhex("06032b6570")  # 1.3.101.112 (id-Ed25519)
_ED25519_NAME = b"\x13\x0cedwards25519"  # PrintableString form allowed by PKCS#11 3.0


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the key is: module, token label, key label; and the PIN (never printed)."""

    module_path: str
    token_label: str
    key_label: str
    pin: str | None = field(default=None, repr=False)

    @classmethod
    def from_uri(cls, uri: str, *, pin: str | None = None) -> Pkcs11Config:
        """Parse ``pkcs11:token=T;object=K?module-path=/path/lib.so``.

        Raises:
            ConfigError: not a ``pkcs11:`` URI, an unknown or missing attribute, or a PIN in it.
        """
        scheme, sep, rest = uri.partition(":")
        if scheme != "pkcs11" or not sep:
            raise ConfigError(f"PKCS#11 URI {uri!r} must start with 'pkcs11:'")
        path_part, _, query_part = rest.partition("?")
        path = _uri_attrs(path_part, ";", uri)
        query = _uri_attrs(query_part, "&", uri)
        if "pin-value" in query or "pin-source" in query:
            raise ConfigError(
                "PKCS#11 URI: a PIN in the URI is refused", hint=f"set {PIN_ENV} instead"
            )
        unknown = sorted(
            (path.keys() - {"token", "object", "type"}) | (query.keys() - {"module-path"})
        )
        if unknown:
            raise ConfigError(f"PKCS#11 URI {uri!r}: unsupported attribute(s) {', '.join(unknown)}")
        if path.get("type", "private") != "private":
            raise ConfigError(f"PKCS#11 URI {uri!r}: type must be 'private' (the signing key)")
        try:
            return cls(
                module_path=query["module-path"],
                token_label=path["token"],
                key_label=path["object"],
                pin=pin,
            )
        except KeyError as e:
            raise ConfigError(f"PKCS#11 URI {uri!r}: {e.args[0]} is required") from e

    @classmethod
    def from_mapping(cls, config: Mapping[str, str]) -> Pkcs11Config:
        """From settings: ``uri``, or ``module`` + ``token`` + ``key_label``; optional ``pin``.

        Raises:
            ConfigError: missing or unknown settings.
        """
        unknown = sorted(set(config) - {"uri", "module", "token", "key_label", "pin"})
        if unknown:
            raise ConfigError(f"pkcs11 signer: unknown setting(s) {', '.join(unknown)}")
        pin = config.get("pin") or None
        if config.get("uri"):
            if any(config.get(k) for k in ("module", "token", "key_label")):
                raise ConfigError("pkcs11 signer: give either uri or module/token/key_label")
            return cls.from_uri(config["uri"], pin=pin)
        missing = [k for k in ("module", "token", "key_label") if not config.get(k)]
        if missing:
            raise ConfigError(f"pkcs11 signer: missing setting(s) {', '.join(missing)}")
        return cls(config["module"], config["token"], config["key_label"], pin)


def _uri_attrs(part: str, sep: str, uri: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for item in filter(None, part.split(sep)):
        name, eq, value = item.partition("=")
        if not eq or name in attrs:
            raise ConfigError(f"PKCS#11 URI {uri!r}: bad or repeated attribute {item!r}")
        attrs[name] = unquote(value)
    return attrs


class Pkcs11Signer:
    """Signs with a private key that never leaves the token."""

    def __init__(self, config: Pkcs11Config) -> None:
        """Open the module, find the token and key pair, read the public key.

        The PIN is the configuration's (the caller fills it from ``STELLA_PKCS11_PIN``).

        Raises:
            SigningError: no PIN, wrong PIN, module unloadable, unsupported key.
            NotFoundError: no such token or key.
        """
        pin = config.pin
        if not pin:
            raise SigningError(
                f"PKCS#11 token {config.token_label!r}: no user PIN",
                hint=f"set {PIN_ENV}",
            )
        self._config = config
        self._pin = pin
        self._lock = threading.Lock()
        self._token = _open_token(config)
        where = self._where
        with self._session() as session:
            private = _get_key(session, ObjectClass.PRIVATE_KEY, config.key_label, where)
            public_obj = _get_key(session, ObjectClass.PUBLIC_KEY, config.key_label, where)
            p11_type = private[Attribute.KEY_TYPE]
            if public_obj[Attribute.KEY_TYPE] != p11_type:
                raise SigningError(f"{where}: public and private key types differ")
            self._public, self._key_type = _public_key(public_obj, p11_type, where)
        self._keyid = keyid_of(self._public)
        logger.info("PKCS#11 key %s (%s) at %s", self._keyid, self._key_type.value, where)

    @property
    def _where(self) -> str:
        return f"PKCS#11 token {self._config.token_label!r} key {self._config.key_label!r}"

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
        return public_key_pem(self._public)

    def sign(self, data: bytes) -> bytes:
        """Sign on the token (see the module docstring for the mechanisms).

        Raises:
            SigningError: the token refused, or returned a signature that does not verify.
        """
        with self._lock, self._session() as session:
            key = _get_key(session, ObjectClass.PRIVATE_KEY, self._config.key_label, self._where)
            if not isinstance(key, SignMixin):
                raise SigningError(f"{self._where}: the private key object cannot sign")
            try:
                if self._key_type is KeyType.ED25519:
                    # bytes(): python-pkcs11 treats any other iterable as a multi-part
                    # operation, which CKM_EDDSA does not have (callers may pass an mmap).
                    signature = bytes(key.sign(bytes(data), mechanism=Mechanism.EDDSA))
                else:
                    digest = hashlib.sha256(data).digest()
                    raw = bytes(key.sign(digest, mechanism=Mechanism.ECDSA))
                    signature = _raw_to_der(raw, self._where)
            except p11err.PKCS11Error as e:
                raise SigningError(f"{self._where}: signing failed: {type(e).__name__} {e}") from e
        if not verify_signature(self._public, data, signature):
            raise SigningError(
                f"{self._where}: the token's signature does not verify with its public key",
                hint="check that the public and private key objects with this label are a pair",
            )
        return signature

    @contextmanager
    def _session(self) -> Iterator[pkcs11.Session]:
        try:
            session = self._token.open(user_pin=self._pin)
        except p11err.UserAlreadyLoggedIn:
            # Another session of this process is logged in; login state is per process.
            session = self._token.open()
        except (p11err.PinIncorrect, p11err.PinInvalid, p11err.PinLenRange) as e:
            raise SigningError(f"{self._where}: wrong user PIN", hint=f"check {PIN_ENV}") from e
        except p11err.PinLocked as e:
            raise SigningError(f"{self._where}: the user PIN is locked") from e
        except p11err.PKCS11Error as e:
            raise SigningError(f"{self._where}: cannot open a session: {type(e).__name__}") from e
        try:
            yield session
        finally:
            session.close()

    def __repr__(self) -> str:
        return f"Pkcs11Signer(keyid={self._keyid[:16]}…, {self._where})"


def _open_token(config: Pkcs11Config) -> pkcs11.Token:
    if not Path(config.module_path).is_file():
        raise SigningError(
            f"PKCS#11 module {config.module_path} does not exist",
            hint="point module-path at the vendor's PKCS#11 library (.so)",
        )
    try:
        # python-pkcs11 caches one initialized instance per module path.
        lib = pkcs11.lib(config.module_path)
    except p11err.PKCS11Error as e:
        raise SigningError(f"PKCS#11 module {config.module_path}: cannot load: {e}") from e
    try:
        return lib.get_token(token_label=config.token_label)
    except p11err.NoSuchToken as e:
        raise NotFoundError(
            f"no PKCS#11 token labelled {config.token_label!r} in {config.module_path}"
        ) from e
    except p11err.MultipleTokensReturned as e:
        raise SigningError(f"several PKCS#11 tokens are labelled {config.token_label!r}") from e
    except p11err.PKCS11Error as e:
        raise SigningError(f"PKCS#11 module {config.module_path}: {type(e).__name__}") from e


def _get_key(session: pkcs11.Session, cls: ObjectClass, label: str, where: str) -> pkcs11.Key:
    kind = "private" if cls is ObjectClass.PRIVATE_KEY else "public"
    try:
        return session.get_key(object_class=cls, label=label)
    except p11err.NoSuchKey as e:
        raise NotFoundError(f"{where}: no {kind} key object with this label") from e
    except p11err.MultipleObjectsReturned as e:
        raise SigningError(f"{where}: several {kind} key objects carry this label") from e
    except p11err.PKCS11Error as e:
        raise SigningError(f"{where}: cannot look up the {kind} key: {type(e).__name__}") from e


def _public_key(obj: pkcs11.Key, p11_type: object, where: str) -> tuple[PublicKey, KeyType]:
    try:
        params = bytes(obj[Attribute.EC_PARAMS])
        point = bytes(obj[Attribute.EC_POINT])
    except p11err.PKCS11Error as e:
        raise SigningError(f"{where}: cannot read the public key: {type(e).__name__}") from e
    try:
        if p11_type == P11KeyType.EC and params == _P256_OID:
            pub_ec = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), _unwrap_point(point, 65)
            )
            return pub_ec, KeyType.ECDSA_P256
        if p11_type == P11KeyType.EC_EDWARDS and params in (_ED25519_OID, _ED25519_NAME):
            return Ed25519PublicKey.from_public_bytes(_unwrap_point(point, 32)), KeyType.ED25519
    except ValueError as e:
        raise SigningError(f"{where}: malformed public key on the token: {e}") from e
    raise SigningError(
        f"{where}: unsupported key (type {p11_type}, curve {params.hex()}); "
        "use ECDSA P-256 or Ed25519"
    )


def _unwrap_point(value: bytes, raw_len: int) -> bytes:
    # CKA_EC_POINT is a DER OCTET STRING per the spec, but some tokens return the bare point.
    # The two are told apart by length: a bare P-256 point also starts with 0x04.
    if len(value) == raw_len:
        return value
    if len(value) == raw_len + 2 and value[0] == 0x04 and value[1] == raw_len:
        return value[2:]
    raise ValueError(f"unexpected CKA_EC_POINT of {len(value)} bytes")


def _raw_to_der(raw: bytes, where: str) -> bytes:
    # CKM_ECDSA returns r || s, each the size of the group order (32 bytes for P-256).
    if len(raw) != 64:
        raise SigningError(f"{where}: ECDSA signature of {len(raw)} bytes, expected 64")
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:], "big")
    return encode_dss_signature(r, s)


def signer_from_config(config: Mapping[str, str]) -> Pkcs11Signer:
    """The ``pkcs11`` backend factory (see :meth:`Pkcs11Config.from_mapping`).

    Raises:
        ConfigError, NotFoundError, SigningError: as :class:`Pkcs11Config` and
            :class:`Pkcs11Signer`.
    """
    return Pkcs11Signer(Pkcs11Config.from_mapping(config))
