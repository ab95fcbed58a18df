"""Optional bundle encryption (docs/mirror.md, "Encryption").

A fresh 32-byte data key per export. Each file under ``data/`` is encrypted with AES-256-GCM
under a fresh random 12-byte nonce, with associated data ``{exportId}:{path}`` (``path`` the
file's path in the bundle, e.g. ``data/raw/advisories/osv.jsonl.zst``), so a file cannot be
moved to another path or another export without failing authentication. A stored file is
``nonce (12) || ciphertext || tag (16)``.

The data key is wrapped once per recipient: age X25519 recipients (``age1…``, with pyrage; the
wrapped key is the age file) and KMS key ids (``kms://…``, see :mod:`.kms`). Recipients are
listed sorted, age first, then KMS. The plaintext digest and size of every encrypted file stay in
the signed manifest (``encryption.files``), so the plaintext stays reproducible and is checked
after decryption; ``contents[]`` describes the stored (encrypted) bytes, so any verifier can
check the whole bundle without the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from export_center.bundle.manifest import WrappedKey
from export_center.errors import BadInputError, ConfigError, VerificationError
from export_center.mirror.kms import Pkcs11Access, kms_for
from export_center.mirror.options import EncryptionOptions

ALGORITHM = "AES-256-GCM"
AAD_FORMAT = "{exportId}:{path}"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_CHUNK = 1 << 20
_CHECK = "decrypt"


def aad_for(export_id: str, path: str) -> bytes:
    return f"{export_id}:{path}".encode()


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encrypt_stream(src: BinaryIO, out: Any, key: bytes, aad: bytes) -> None:
    """Encrypt ``src`` into ``out`` (anything with ``write``): nonce, ciphertext, tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    out.write(nonce)
    while chunk := src.read(_CHUNK):
        out.write(enc.update(chunk))
    out.write(enc.finalize())
    out.write(enc.tag)


def decrypt_file(src: Path, dst: Path, key: bytes, aad: bytes, *, where: str) -> tuple[str, int]:
    """Decrypt ``src`` into ``dst``; returns the plaintext's (sha256 hex, size).

    The plaintext is only trusted once the tag verified: on failure ``dst`` is removed.

    Raises:
        VerificationError: (check ``decrypt``) too short, or authentication failed (wrong key,
            tampered ciphertext, or a file moved from another path or export).
    """
    size = src.stat().st_size
    if size < NONCE_BYTES + TAG_BYTES:
        raise VerificationError(_CHECK, f"{where}: too short to be AES-GCM ciphertext")
    h = hashlib.sha256()
    n = 0
    try:
        with src.open("rb") as fh, dst.open("wb") as out:
            nonce = fh.read(NONCE_BYTES)
            fh.seek(size - TAG_BYTES)
            tag = fh.read(TAG_BYTES)
            fh.seek(NONCE_BYTES)
            dec = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
            dec.authenticate_additional_data(aad)
            remaining = size - NONCE_BYTES - TAG_BYTES
            while remaining:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    raise VerificationError(_CHECK, f"{where}: truncated")
                remaining -= len(chunk)
                plain = dec.update(chunk)
                h.update(plain)
                n += len(plain)
                out.write(plain)
            dec.finalize()
    except InvalidTag as e:
        dst.unlink(missing_ok=True)
        raise VerificationError(
            _CHECK, f"{where}: AES-GCM authentication failed (wrong key or tampered file)"
        ) from e
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return h.hexdigest(), n


def wrap_data_key(
    key: bytes, options: EncryptionOptions, export_id: str, kms: Pkcs11Access | None = None
) -> list[WrappedKey]:
    """The manifest's ``encryption.recipients``: the data key wrapped for each recipient
    (KMS recipients reached with ``kms``).

    Raises:
        ConfigError: a KMS key id names an unknown backend or its settings are missing.
        NotFoundError: the KMS key does not exist.
    """
    import pyrage
    from pyrage import x25519

    out: list[WrappedKey] = []
    for r in options.recipients:
        try:
            recipient = x25519.Recipient.from_str(r)
        except pyrage.RecipientError as e:
            raise BadInputError(f"encryption recipient {r!r}: {e}") from e
        wrapped = pyrage.encrypt(key, [recipient])
        out.append(WrappedKey(type="age", recipient=r, wrapped_key=_b64(wrapped)))
    for key_id in options.kms:
        wrapped = kms_for(key_id, kms).wrap(key_id, key, export_id.encode())
        out.append(WrappedKey(type="kms", key_id=key_id, wrapped_key=_b64(wrapped)))
    return out


@dataclass(frozen=True)
class KeyMaterial:
    """What the importer holds to open encrypted bundles: age identities, KMS access."""

    age_identities: tuple[str, ...] = ()
    use_kms: bool = False
    kms_access: Pkcs11Access | None = None

    @property
    def empty(self) -> bool:
        return not self.age_identities and not self.use_kms


def load_age_identities(text: str, where: str) -> tuple[str, ...]:
    """``AGE-SECRET-KEY-1…`` lines of an age identity file (comments and blanks skipped).

    Raises:
        BadInputError: no identity in the file.
    """
    ids = tuple(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not ids or not all(i.startswith("AGE-SECRET-KEY-1") for i in ids):
        raise BadInputError(f"{where}: not an age identity file (AGE-SECRET-KEY-1... lines)")
    return ids


def unwrap_data_key(
    recipients: Sequence[WrappedKey], material: KeyMaterial, export_id: str
) -> bytes:
    """The data key, from the first recipient entry our key material opens.

    Raises:
        BadInputError: no key material was given at all (a usage problem).
        VerificationError: (check ``decrypt``) none of the recipients can be opened with it.
    """
    import pyrage
    from pyrage import x25519

    if material.empty:
        listed = ", ".join(str(r.recipient or r.key_id) for r in recipients)
        raise BadInputError(
            f"the bundle is encrypted (recipients: {listed}) and no key was given",
            hint="pass --identity AGE_IDENTITY_FILE, or --kms with STELLA_PKCS11_* set",
        )
    identities = []
    for ident in material.age_identities:
        try:
            identities.append(x25519.Identity.from_str(ident))
        except pyrage.IdentityError as e:
            raise BadInputError(f"invalid age identity: {type(e).__name__}") from e
    tried: list[str] = []
    for entry in recipients:
        kind = entry.type
        wrapped = _unb64(entry.wrapped_key)
        if kind == "age" and identities:
            tried.append(str(entry.recipient))
            try:
                key = pyrage.decrypt(wrapped, identities)
            except pyrage.DecryptError:
                continue
        elif kind == "kms" and material.use_kms:
            key_id = str(entry.key_id)
            tried.append(key_id)
            try:
                kms = kms_for(key_id, material.kms_access)
                key = kms.unwrap(key_id, wrapped, export_id.encode())
            except (VerificationError, ConfigError):
                continue
        else:
            continue
        if len(key) != KEY_BYTES:
            raise VerificationError(_CHECK, f"unwrapped data key is {len(key)} bytes, not 32")
        return bytes(key)
    raise VerificationError(
        _CHECK,
        f"none of the bundle's recipients can be opened with the given key(s) "
        f"(tried: {', '.join(tried) or 'none applicable'})",
        hint="use the age identity or KMS key the bundle was encrypted for",
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerificationError(_CHECK, f"wrappedKey is not base64: {e}") from e
