"""``Idempotency-Key`` on POST (docs/api.md).

The first request with a key stores its response; the same key with the same request (method,
path and body, JSON compared canonically) returns that stored response again; the same key with
a different request is refused with 409. Keys are per tenant and kept
``idempotency_ttl_hours``. A request that fails (an error response) releases its key, so that
the client can retry it with the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from export_center.errors import BadInputError, IdempotencyConflictError
from export_center.runs.clock import aware, utcnow
from export_center.store.models import IdempotencyRecord
from export_center.store.repository import EvidenceStore

MAX_KEY_LENGTH = 255
# A first request still "in flight" after this long died with its process: its key is free.
_IN_FLIGHT_TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: Mapping[str, str]


def fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    return hashlib.sha256(f"{method.upper()} {path}\n".encode() + canonical).hexdigest()


class IdempotencyStore:
    def __init__(self, store: EvidenceStore) -> None:
        self.store = store

    def begin(self, tenant: str, key: str, print_: str) -> StoredResponse | None:
        """Reserve ``key``; or return the response stored for it.

        Raises:
            BadInputError: the key is empty or too long.
            IdempotencyConflictError: the key was used with another request, or its first
                request is still being handled.
        """
        if not key or len(key) > MAX_KEY_LENGTH:
            raise BadInputError(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
        now = utcnow()
        try:
            with self.store.session() as s, s.begin():
                s.add(IdempotencyRecord(tenant=tenant, key=key, fingerprint=print_, created_at=now))
            return None
        except IntegrityError:
            pass
        with self.store.session() as s:
            row = s.execute(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.tenant == tenant, IdempotencyRecord.key == key
                )
            ).scalar_one_or_none()
            if row is None:  # released meanwhile: try once more
                return self.begin(tenant, key, print_)
            if row.fingerprint != print_:
                raise IdempotencyConflictError(
                    "this Idempotency-Key was used with a different request",
                    hint="use a new key for a new request",
                )
            if row.status_code is None:
                created = aware(row.created_at) or now
                if now - created > _IN_FLIGHT_TIMEOUT:
                    self.release(tenant, key)
                    return self.begin(tenant, key, print_)
                raise IdempotencyConflictError(
                    "a request with this Idempotency-Key is still being handled",
                    hint="retry in a moment",
                )
            headers = orjson.loads(row.headers) if row.headers else {}
            return StoredResponse(row.status_code, bytes(row.body or b""), headers)

    def complete(self, tenant: str, key: str, response: StoredResponse) -> None:
        with self.store.session() as s, s.begin():
            s.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.tenant == tenant, IdempotencyRecord.key == key)
                .values(
                    status_code=response.status_code,
                    body=response.body,
                    headers=orjson.dumps(dict(response.headers)).decode(),
                )
            )

    def release(self, tenant: str, key: str) -> None:
        with self.store.session() as s, s.begin():
            s.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.tenant == tenant,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.status_code.is_(None),
                )
            )

    def run(
        self,
        tenant: str,
        key: str | None,
        print_: str,
        handler: Callable[[], StoredResponse],
    ) -> tuple[StoredResponse, bool]:
        """Run ``handler`` once per (tenant, key); returns (response, replayed?)."""
        if key is None:
            return handler(), False
        stored = self.begin(tenant, key, print_)
        if stored is not None:
            return stored, True
        try:
            response = handler()
        except BaseException:
            self.release(tenant, key)
            raise
        if response.status_code >= 400:
            self.release(tenant, key)
        else:
            self.complete(tenant, key, response)
        return response, False
