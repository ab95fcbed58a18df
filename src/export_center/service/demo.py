"""``stella serve --demo``: make a fresh data directory show something at once.

Idempotent: generates an Ed25519 signing key if the tenant has none, ingests the project's
demo evidence if the tenant holds none, creates a ``demo-json`` profile (json:raw) if missing,
and issues a token with every scope (a new one each start: secrets are never stored in clear).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from export_center.errors import ConflictError
from export_center.planner.profiles import parse_profile_spec
from export_center.runtime.container import Services
from export_center.service.auth import SCOPES, TokenStore
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore

log = logging.getLogger(__name__)

DEMO_PROFILE = "demo-json"
_SOURCES = (("advisories", "demo-osv"), ("vex", "demo-vex"), ("sboms", "demo-sbom"))


@dataclass(frozen=True)
class DemoSetup:
    tenant: str
    profile: str
    token: str
    ingested: int


def demo_evidence_dir() -> Path | None:
    """The repository's ``demo/evidence`` (when running from a checkout)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "demo" / "evidence"
        if candidate.is_dir():
            return candidate
    return None


def seed_demo(services: Services, *, tenant: str | None = None) -> DemoSetup:
    """Prepare the demo data (see the module docstring).

    Raises:
        SigningError: the key store cannot be written.
    """
    settings = services.settings
    tenant = tenant or settings.default_tenant
    keys = KeyStore.from_settings(settings)
    if not keys.tenant_keys(tenant):
        info = keys.generate(KeyType.ED25519, tenants=[tenant])
        log.info("demo: generated signing key %s for tenant %s", info.keyid, tenant)
    ingested = 0
    evidence = demo_evidence_dir()
    if evidence is not None and services.store.current_sequence(tenant) == 0:
        from export_center.ingest.pipeline import ingest_paths

        for folder, source in _SOURCES:
            if (evidence / folder).is_dir():
                report = ingest_paths(
                    services.store,
                    [evidence / folder],
                    source=source,
                    tenant=tenant,
                    max_bytes=settings.max_document_bytes,
                )
                ingested += report.stored
        log.info("demo: ingested %d records from %s", ingested, evidence)
    with contextlib.suppress(ConflictError):  # created by an earlier start
        services.registry.create(
            tenant, DEMO_PROFILE, parse_profile_spec({"kind": "json", "variant": "raw"})
        )
    _, secret = TokenStore(services.store).create("demo", [tenant], list(SCOPES))
    return DemoSetup(tenant=tenant, profile=DEMO_PROFILE, token=secret, ingested=ingested)
