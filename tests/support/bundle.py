"""Helpers for bundle tests: a small store, a key store, and a profile."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from export_center.exporter import ProfileReferences
from export_center.model import Advisory, AffectedPackage, ParsedRecord, RangeEvent, VersionRange
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView
from export_center.settings import Settings
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore


def advisory_record(
    upstream: str, version: str = "1.0.1", *, body: bytes | None = None
) -> ParsedRecord:
    content = body or (
        b'{"id":"%s","modified":"2026-01-01T00:00:00Z","affected":[{"package":'
        b'{"ecosystem":"PyPI","name":"demo"},"ranges":[{"type":"ECOSYSTEM","events":'
        b'[{"introduced":"0"},{"fixed":"%s"}]}]}]}' % (upstream.encode(), version.encode())
    )
    return ParsedRecord(
        upstream_id=upstream,
        doc_type="advisory",
        format="osv",
        media_type="application/osv+json",
        content=content,
        normalized=Advisory(
            id=upstream,
            aliases=(
                f"CVE-2026-{zlib.crc32(upstream.encode()) % 10000:04d}",
            ),  # not hash(): salted
            modified="2026-01-01T00:00:00Z",
            affected=(
                AffectedPackage(
                    "pypi",
                    "demo",
                    "PyPI",
                    ranges=(
                        VersionRange(
                            "ECOSYSTEM",
                            (RangeEvent("introduced", "0"), RangeEvent("fixed", version)),
                        ),
                    ),
                    fixed=(version,),
                ),
            ),
        ),
    )


def put(store: EvidenceStore, tenant: str, source: str, *records: ParsedRecord) -> None:
    with store.session() as s:
        t = store.lock_tenant(s, tenant)
        for r in records:
            store.put(s, t, source, r)
        s.commit()


@dataclass
class Env:
    settings: Settings
    store: EvidenceStore
    keys: KeyStore
    keyid: str
    trust_roots: Path
    out: Path

    def profile(self, name: str = "raw-all", **spec: object) -> ProfileRevisionView:
        reg = ProfileRegistry(self.store, references=ProfileReferences(self.settings, self.store))
        body = {"kind": "json", "variant": "raw", **spec}
        return reg.create("default", name, parse_profile_spec(body))
