"""Console sessions: a random secret in the browser's cookie, the credential encrypted in the
database.

Why rows in the database rather than a signed cookie that carries the token:

- signing out ends the session at once, whichever process served it (the row is deleted), and
  an operator ends every session by emptying ``console_sessions``;
- ``stella serve`` may run several processes (and hosts) behind one address: a row in the shared
  database is found by any of them, with no signing secret to configure, share and rotate;
- the database keeps only the SHA-256 of the cookie secret (as ``api_tokens`` keeps only the
  SHA-256 of a token) and the bearer credential encrypted with AES-256-GCM under a key derived
  from that secret (HKDF-SHA256): a copy of the database yields no usable credential, and a
  stolen cookie stops working when its session ends (sign-out, or ``LIFETIME``).

The session never decides what its holder may do: every request re-verifies the decrypted
credential with the API's own :class:`~export_center.service.auth.Authenticator`, so a revoked
token or an expired JWT ends the console session as it ends API access.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete

from export_center.runs.clock import aware, utcnow
from export_center.store.models import ConsoleSession as SessionRow
from export_center.store.repository import EvidenceStore

#: A session ends this long after sign-in (a working day), or earlier at sign-out.
LIFETIME: Final = timedelta(hours=8)
_SECRET_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_KDF_INFO: Final = b"stella-export-center console credential v1"


@dataclass(frozen=True)
class Session:
    """A live console session, its credential decrypted."""

    id: str
    tenant: str
    subject: str
    credential: str  # the bearer token or JWT the user signed in with
    csrf: str  # the synchronizer token every form of this session carries
    expires_at: datetime


def _decode_secret(cookie: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _SECRET_BYTES else None


def _session_id(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def _aead(secret: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(secret)
    return AESGCM(key)


class SessionStore:
    """Console sessions in the store's database (table ``console_sessions``)."""

    def __init__(
        self,
        store: EvidenceStore,
        *,
        lifetime: timedelta = LIFETIME,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.lifetime = lifetime
        self.clock = clock

    def create(self, credential: str, *, tenant: str, subject: str) -> tuple[str, Session]:
        """Open a session for a verified credential; returns the cookie value and the session.

        The caller has verified ``credential`` for ``tenant``; this only stores it.
        """
        secret = secrets.token_bytes(_SECRET_BYTES)
        sid = _session_id(secret)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + _aead(secret).encrypt(nonce, credential.encode(), sid.encode())
        now = self.clock()
        row = SessionRow(
            id=sid,
            tenant=tenant,
            subject=subject[:255],
            credential=sealed,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.lifetime,
        )
        with self.store.session() as s, s.begin():
            # Sign-in is rare: a good moment to forget sessions that ended without a sign-out.
            s.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
            s.add(row)
        cookie = base64.urlsafe_b64encode(secret).decode().rstrip("=")
        return cookie, Session(sid, tenant, row.subject, credential, row.csrf, row.expires_at)

    def load(self, cookie: str | None) -> Session | None:
        """The live session behind a cookie value; None when there is none (any reason)."""
        secret = _decode_secret(cookie or "")
        if secret is None:
            return None
        sid = _session_id(secret)
        with self.store.session() as s:
            row = s.get(SessionRow, sid)
            if row is None:
                return None
            expires = aware(row.expires_at)
            assert expires is not None
            if expires <= self.clock():
                return None
            sealed = bytes(row.credential)
            tenant, subject, csrf = row.tenant, row.subject, row.csrf
        try:
            plain = _aead(secret).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], sid.encode()
            )
        except InvalidTag:
            # Only a row altered in the database gets here: treat it as no session.
            return None
        return Session(sid, tenant, subject, plain.decode(), csrf, expires)

    def delete(self, cookie: str | None) -> None:
        """End the session behind a cookie value (nothing when there is none)."""
        secret = _decode_secret(cookie or "")
        if secret is None:
            return
        with self.store.session() as s, s.begin():
            s.execute(delete(SessionRow).where(SessionRow.id == _session_id(secret)))
