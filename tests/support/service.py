"""Shared helpers of the service and worker tests (imported by both conftests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from export_center.exporter import ExportOutcome, run_export
from export_center.model import AffectedPackage, ParsedRecord
from export_center.runtime.container import Services
from export_center.service.auth import SCOPES, TokenStore
from export_center.settings import Settings, load_settings
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore
from support.records import osv_record

# Short timings so that leases lapse, heartbeats tick and SSE polls within a test's patience.
FAST: dict[str, Any] = {
    "sweep_seconds": 0.2,
    "heartbeat_seconds": 0.2,
    "lease_seconds": 2.0,
    "sse_heartbeat_seconds": 0.3,
    "sse_poll_seconds": 0.05,
    "cancel_poll_seconds": 0.05,
    "retry_base_seconds": 0.1,
    "retry_max_seconds": 0.3,
}
ALL_SCOPES = list(SCOPES)


def make_settings(data_dir: Path, database_url: str | None = None) -> Settings:
    env = {"STELLA_DATA_DIR": str(data_dir)}
    if database_url:
        env["STELLA_DATABASE_URL"] = database_url
    return load_settings(env=env)


def fast_service(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with short service timings (and ``overrides``)."""
    return settings.with_service(**(FAST | overrides))


#: The tenants of the service and worker tests; their key is assigned to each.
TEST_TENANTS = ("acme", "zeta", "default")


def generate_key(settings: Settings, tenants: tuple[str, ...] = TEST_TENANTS) -> str:
    return KeyStore(settings.key_dir).generate(KeyType.ED25519, tenants=tenants).keyid


def advisory(upstream: str, body: bytes) -> ParsedRecord:
    return osv_record(
        upstream, body, package=AffectedPackage("pypi", f"pkg-{upstream.lower()}", "PyPI")
    )


def put_advisories(store: EvidenceStore, tenant: str, n: int, *, source: str = "feed") -> None:
    with store.session() as s:
        t = store.lock_tenant(s, tenant)
        for i in range(n):
            body = b'{"id":"ADV-%05d","summary":"advisory number %d"}' % (i, i)
            store.put(s, t, source, advisory(f"ADV-{i:05d}", body))
        s.commit()


def slow_export(delay: float) -> Callable[..., ExportOutcome]:
    """run_export whose progress reports sleep: an export that takes a while, really."""

    def export(*args: Any, progress: Callable[[int], None], **kwargs: Any) -> ExportOutcome:
        def slow(n: int) -> None:
            time.sleep(delay)
            progress(n)

        return run_export(*args, progress=slow, **kwargs)

    return export


def failing_export(errors: list[BaseException]) -> Callable[..., ExportOutcome]:
    """Raises the given errors on successive calls, then exports for real."""
    pending = list(errors)

    def export(*args: Any, **kwargs: Any) -> ExportOutcome:
        if pending:
            raise pending.pop(0)
        return run_export(*args, **kwargs)

    return export


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """The app on a real loopback port (uvicorn in a thread), for streaming clients."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @classmethod
    def start(cls, app: Any) -> LiveServer:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, timeout=10)
        return cls(f"http://127.0.0.1:{port}", server, thread)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass(frozen=True)
class World:
    """Tokens of the API tests' two tenants (see the ``world`` fixture)."""

    acme: str  # every scope, tenant acme
    zeta: str  # every scope, tenant zeta
    reader: str  # export:read only, acme
    multi: str  # every scope, acme and zeta


def tenant_token(services: Services, tenants: list[str], scopes: list[str] | None = None) -> str:
    _, secret = TokenStore(services.store).create("test", tenants, scopes or ALL_SCOPES)
    return secret


def auth(token: str, tenant: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if tenant:
        headers["X-Stella-Tenant"] = tenant
    return headers
