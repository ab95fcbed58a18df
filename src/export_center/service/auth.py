"""Bearer-token authentication: stored API tokens and offline-verified JWTs.

API tokens are 256-bit random secrets (``stl_…``) shown once at creation; the database keeps only
their SHA-256 (a slow password hash adds nothing for a secret of that entropy). JWTs are accepted
when a JWKS file is configured: verified offline against it (signature, ``exp``, and ``iss`` /
``aud`` when configured), never fetched over the network.

A token carries tenants and scopes. ``X-Stella-Tenant`` picks the tenant when it carries several.
No token, an unknown or revoked one, a bad signature → 401; a tenant or scope the token lacks →
403. Objects of other tenants are not found (404): the caller's tenant filters every query.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import jwt
import orjson
from jwt.types import Options
from sqlalchemy import select, update

from export_center.errors import (
    AuthenticationError,
    BadInputError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
)
from export_center.runs.clock import aware, utcnow
from export_center.store.models import ApiToken
from export_center.store.repository import EvidenceStore, check_tenant

SCOPE_PROFILES: Final = "export:profile:manage"
SCOPE_RUN: Final = "export:run"
SCOPE_READ: Final = "export:read"
SCOPE_DOWNLOAD: Final = "export:download"
# Reading /metrics, which names every tenant and profile: an operator's scope, never a tenant's
# (docs/security.md, "HTTP edge").
SCOPE_METRICS: Final = "export:metrics"
SCOPES: Final = (SCOPE_PROFILES, SCOPE_RUN, SCOPE_READ, SCOPE_DOWNLOAD, SCOPE_METRICS)
#: The longest lifetime a stored token may be given.
MAX_TOKEN_LIFETIME: Final = timedelta(days=3650)

TOKEN_PREFIX: Final = "stl_"  # noqa: S105 (the public prefix of every token, not a secret)
_JWT_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384", "EdDSA")
# Verified stored tokens are remembered this long: a revocation takes at most this to bite.
_CACHE_SECONDS: Final = 5.0


@dataclass(frozen=True)
class TokenGrant:
    """What a verified token allows."""

    subject: str  # token id, or the JWT's ``sub``
    tenants: frozenset[str]
    scopes: frozenset[str]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller acting for one tenant."""

    subject: str
    tenant: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        """Raises: ForbiddenError: the token lacks ``scope``."""
        if scope not in self.scopes:
            raise ForbiddenError(f"this token lacks the scope {scope}")


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    tenants: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted(set(scopes)))
    unknown = [s for s in out if s not in SCOPES]
    if unknown:
        raise BadInputError(f"unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}")
    if not out:
        raise BadInputError(f"a token needs at least one scope: {', '.join(SCOPES)}")
    return out


class TokenStore:
    """API tokens in the database."""

    def __init__(self, store: EvidenceStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, TokenGrant | None]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        tenants: Sequence[str],
        scopes: Sequence[str],
        *,
        expires_in: timedelta | None = None,
    ) -> tuple[TokenInfo, str]:
        """Create a token; returns its record and the secret (shown once, stored hashed).

        Raises:
            BadInputError: no tenant, an invalid tenant name, an unknown scope, or a lifetime
                that is not positive (or over :data:`MAX_TOKEN_LIFETIME`).
        """
        if not tenants:
            raise BadInputError("a token needs at least one tenant (--tenant)")
        if expires_in is not None and not timedelta(0) < expires_in <= MAX_TOKEN_LIFETIME:
            # A zero or negative lifetime once meant "never expires": refuse it instead.
            raise BadInputError(
                f"a token's lifetime must be positive and at most {MAX_TOKEN_LIFETIME.days} "
                f"days, not {expires_in}",
                hint="--expires-days N (1-3650), or --no-expiry for a token that never expires",
            )
        tenant_list = tuple(sorted({check_tenant(t) for t in tenants}))
        scope_list = check_scopes(scopes)
        secret = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip(
            "="
        )
        now = utcnow()
        row = ApiToken(
            id="tok_" + secrets.token_hex(8),
            token_hash=hash_token(secret),
            name=name[:128] or "token",
            tenants=orjson.dumps(list(tenant_list)).decode(),
            scopes=orjson.dumps(list(scope_list)).decode(),
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
            revoked_at=None,
        )
        with self.store.session() as s, s.begin():
            s.add(row)
        return _info(row), secret

    def list_tokens(self) -> list[TokenInfo]:
        with self.store.session() as s:
            return [
                _info(r)
                for r in s.execute(select(ApiToken).order_by(ApiToken.created_at)).scalars()
            ]

    def revoke(self, token_id: str) -> None:
        """Raises: NotFoundError: no such token."""
        with self.store.session() as s, s.begin():
            done = s.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if getattr(done, "rowcount", 0) != 1 and s.get(ApiToken, token_id) is None:
                raise NotFoundError(f"no token {token_id!r}")
        with self._lock:
            self._cache.clear()

    def cached(self, secret: str) -> TokenGrant | bool | None:
        """The verdict remembered for ``secret``: a grant, None (refused), or False (unknown:
        :meth:`verify` must ask the database)."""
        hit = self._cache.get(hash_token(secret))
        if hit is None or time.monotonic() - hit[0] >= _CACHE_SECONDS:
            return False
        return hit[1]

    def verify(self, secret: str) -> TokenGrant:
        """Raises: AuthenticationError: unknown, revoked or expired token."""
        digest = hash_token(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < _CACHE_SECONDS:
            grant = hit[1]
        else:
            grant = self._lookup(digest)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, grant)
        if grant is None:
            raise AuthenticationError(
                "unknown, revoked or expired token",
                hint="create one with `stella tokens create --tenant T --scope ...`",
            )
        return grant

    def _lookup(self, digest: str) -> TokenGrant | None:
        with self.store.session() as s:
            row = s.execute(
                select(ApiToken).where(ApiToken.token_hash == digest)
            ).scalar_one_or_none()
            if row is None or row.revoked_at is not None:
                return None
            expires = aware(row.expires_at)
            if expires is not None and expires <= utcnow():
                return None
            return TokenGrant(
                subject=row.id,
                tenants=frozenset(orjson.loads(row.tenants)),
                scopes=frozenset(orjson.loads(row.scopes)),
            )


def _info(r: ApiToken) -> TokenInfo:
    created = aware(r.created_at)
    assert created is not None
    return TokenInfo(
        id=r.id,
        name=r.name,
        tenants=tuple(orjson.loads(r.tenants)),
        scopes=tuple(orjson.loads(r.scopes)),
        created_at=created,
        expires_at=aware(r.expires_at),
        revoked_at=aware(r.revoked_at),
    )


class JwtVerifier:
    """Verifies JWTs against an offline JWKS file (loaded once).

    Claims: tenants from ``stella_tenants`` (list) or ``tenant`` (string); scopes from ``scope``
    (space-separated) or ``scp`` (list).
    """

    def __init__(self, jwks_file: Path, *, issuer: str | None, audience: str | None) -> None:
        try:
            self._keys = jwt.PyJWKSet.from_json(jwks_file.read_text())
        except (OSError, jwt.PyJWKSetError, ValueError) as e:
            raise ConfigError(f"JWKS file {jwks_file}: {e}") from e
        self._issuer = issuer
        self._audience = audience

    def _key(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise AuthenticationError(f"malformed JWT: {e}") from e
        kid = header.get("kid")
        candidates = [k for k in self._keys.keys if kid is None or k.key_id == kid]
        if len(candidates) != 1:
            raise AuthenticationError("JWT signed by a key that is not in the trusted JWKS")
        return candidates[0]

    def verify(self, token: str) -> TokenGrant:
        """Raises: AuthenticationError: bad signature, expired, wrong issuer or audience."""
        key = self._key(token)
        options: Options = {"require": ["exp"], "verify_aud": self._audience is not None}
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(_JWT_ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                options=options,
            )
        except jwt.PyJWTError as e:
            raise AuthenticationError(f"JWT rejected: {e}") from e
        tenants = claims.get("stella_tenants")
        if tenants is None and isinstance(claims.get("tenant"), str):
            tenants = [claims["tenant"]]
        scope = claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else claims.get("scp") or []
        if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
            raise AuthenticationError("JWT carries no tenant (claim stella_tenants or tenant)")
        if not isinstance(scopes, list):
            raise AuthenticationError("JWT scope claim is malformed")
        return TokenGrant(
            subject=str(claims.get("sub", "jwt")),
            tenants=frozenset(tenants),
            scopes=frozenset(str(s) for s in scopes),
        )


class Authenticator:
    def __init__(self, tokens: TokenStore, jwt_verifier: JwtVerifier | None = None) -> None:
        self.tokens = tokens
        self.jwt = jwt_verifier

    @staticmethod
    def _credential(authorization: str | None) -> str:
        if not authorization:
            raise AuthenticationError("missing Authorization: Bearer <token>")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        return credential

    def authenticate_cached(
        self, authorization: str | None, tenant: str | None
    ) -> Principal | None:
        """:meth:`authenticate` without I/O: None when a stored token must be looked up."""
        credential = self._credential(authorization)
        if credential.startswith(TOKEN_PREFIX):
            grant = self.tokens.cached(credential)
            if grant is False:
                return None
            if grant is None or grant is True:
                raise AuthenticationError(
                    "unknown, revoked or expired token",
                    hint="create one with `stella tokens create --tenant T --scope ...`",
                )
            return self._choose(grant, tenant)
        return self.authenticate(authorization, tenant)

    def grant(self, authorization: str | None) -> TokenGrant:
        """What the bearer token allows, whatever tenant it would act for (``/metrics``).

        Raises:
            AuthenticationError: no bearer token, or an invalid one.
        """
        credential = self._credential(authorization)
        if credential.startswith(TOKEN_PREFIX):
            return self.tokens.verify(credential)
        if self.jwt is not None and credential.count(".") == 2:
            return self.jwt.verify(credential)
        raise AuthenticationError("unknown token format")

    def authenticate(self, authorization: str | None, tenant: str | None) -> Principal:
        """The caller behind an ``Authorization`` header, acting for one tenant.

        Raises:
            AuthenticationError: no bearer token, or an invalid one.
            ForbiddenError: ``tenant`` is not one of the token's tenants.
            BadInputError: the token has several tenants and none was chosen.
        """
        credential = self._credential(authorization)
        if credential.startswith(TOKEN_PREFIX):
            grant = self.tokens.verify(credential)
        elif self.jwt is not None and credential.count(".") == 2:
            grant = self.jwt.verify(credential)
        else:
            raise AuthenticationError("unknown token format")
        return self._choose(grant, tenant)

    @staticmethod
    def _choose(grant: TokenGrant, tenant: str | None) -> Principal:
        if tenant:
            if tenant not in grant.tenants:
                raise ForbiddenError(f"this token is not valid for tenant {tenant!r}")
            chosen = tenant
        elif len(grant.tenants) == 1:
            (chosen,) = grant.tenants
        else:
            raise BadInputError(
                "this token carries several tenants: choose one with the X-Stella-Tenant header"
            )
        return Principal(subject=grant.subject, tenant=chosen, scopes=grant.scopes)
