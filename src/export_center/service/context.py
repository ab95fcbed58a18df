"""What the HTTP API adds to the process's shared services: who may call, and replayed POSTs."""

from __future__ import annotations

from dataclasses import dataclass

from export_center.runtime.container import Services
from export_center.service.auth import Authenticator, JwtVerifier, TokenStore
from export_center.service.idempotency import IdempotencyStore


@dataclass(frozen=True)
class ApiContext:
    services: Services
    tokens: TokenStore
    auth: Authenticator
    idempotency: IdempotencyStore

    @classmethod
    def open(cls, services: Services) -> ApiContext:
        """Wire authentication (stored tokens, and JWTs when a JWKS file is configured) and
        the idempotency store over ``services``.

        Raises:
            ConfigError: the JWKS file is unreadable or not a JWKS.
        """
        service = services.service
        jwt = (
            JwtVerifier(service.jwks_file, issuer=service.jwt_issuer, audience=service.jwt_audience)
            if service.jwks_file
            else None
        )
        tokens = TokenStore(services.store)
        return cls(
            services=services,
            tokens=tokens,
            auth=Authenticator(tokens, jwt),
            idempotency=IdempotencyStore(services.store),
        )
