"""Helpers for the mirror, importer and OCI tests: instances with their own data directory,
corpus subsets, profiles, store snapshots, and a tool to re-sign tampered bundles."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import rfc8785
from sqlalchemy import select, text

from export_center.bundle.manifest import (
    CHECKSUMS,
    EXPORT_DSSE,
    EXPORT_JSON,
    MANIFEST_PAYLOAD_TYPE,
    PROVENANCE_DSSE,
    PROVENANCE_JSON,
    rerun_hash,
)
from export_center.bundle.provenance import PROVENANCE_PAYLOAD_TYPE
from export_center.bundle.writer import BundleResult
from export_center.checksums import build_checksums
from export_center.errors import ConflictError
from export_center.exporter import ProfileReferences, run_export
from export_center.importer.service import ImportOptions, ImportOutcome, import_bundle
from export_center.ingest.pipeline import ingest_paths
from export_center.mirror.crypto import KeyMaterial
from export_center.model import DOC_TYPES, AffectedPackage, ParsedRecord
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView
from export_center.settings import Settings, load_settings
from export_center.signing.dsse import sign_envelope
from export_center.signing.interface import KeyType, Signer, load_trust_roots
from export_center.signing.keyfile import FileSigner, generate_private_key
from export_center.store.models import Base
from export_center.store.repository import EvidenceStore
from support.records import CORPUS_SOURCES, osv_record

TENANT = "default"
REPO = Path(__file__).resolve().parents[2]
STELLA = str(Path(sys.executable).with_name("stella"))

#: A corpus subset that keeps the round trip quick but real: OSV JSON advisories (RustSec),
#: OpenVEX (VEXHub), CSAF VEX, CycloneDX VEX and SBOMs.
SUBSET = [
    ("rustsec", "rustsec-advisory-db-osv/crates"),
    ("trivy-db-testdata", "aquasecurity-trivy-db/pkg/vulnsrc"),
    ("vexhub", "aquasecurity-vexhub/pkg"),
    ("oasis", "oasis-tcs-csaf/csaf_2.0"),
    ("cyclonedx-examples", "cyclonedx-bom-examples"),
    ("bom-shelter", "chainguard-bom-shelter/in-the-lab"),
]

#: Every corpus folder (the full-corpus test).
FULL = CORPUS_SOURCES


@dataclass
class Instance:
    """One Stella installation: its own data directory, database and key store."""

    root: Path
    settings: Settings
    store: EvidenceStore

    @classmethod
    def create(cls, root: Path, db_file: Path | None = None, *, url: str | None = None) -> Instance:
        """A fresh instance; ``db_file`` seeds its SQLite database, ``url`` names another one."""
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        if db_file is not None:
            shutil.copyfile(db_file, data / "stella.db")
        env = {"STELLA_DATA_DIR": str(data)}
        if url is not None:
            env["STELLA_DATABASE_URL"] = url
        settings = load_settings(env=env)
        return cls(root, settings, EvidenceStore.open(settings.database_url))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STELLA_DATA_DIR": str(self.data_dir),
            "STELLA_DATABASE_URL": self.settings.database_url,
        }

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def profile(self, name: str, body: dict[str, Any]) -> ProfileRevisionView:
        reg = ProfileRegistry(self.store, references=ProfileReferences(self.settings, self.store))
        spec = parse_profile_spec(body)
        try:
            return reg.create(TENANT, name, spec)
        except ConflictError:  # exists already: add a revision
            return reg.revise(TENANT, name, spec)

    def export(
        self, profile: ProfileRevisionView, signer: Signer, out: Path | None = None
    ) -> BundleResult:
        return run_export(
            self.settings, self.store, profile, out or self.root / "out", signer=signer
        ).bundle

    def import_(self, bundle: str | Path, opts: ImportOptions, **kw: Any) -> ImportOutcome:
        return import_bundle(self.store, str(bundle), self.data_dir, opts, **kw)

    def ingest(self, source: str, *paths: Path) -> None:
        rep = ingest_paths(
            self.store, list(paths), source=source, tenant=TENANT, max_bytes=64 << 20
        )
        assert rep.stored or rep.unchanged, f"nothing ingested from {paths}"

    def put(self, source: str, *records: ParsedRecord, now: datetime | None = None) -> None:
        with self.store.session() as s:
            cur = self.store.lock_tenant(s, TENANT)
            for r in records:
                self.store.put(s, cur, source, r, now=now)
            s.commit()


def advisory(upstream: str, version: str = "1.0.1", *, withdrawn: bool = False) -> ParsedRecord:
    body = b'{"id":"%s","affected":[{"package":{"ecosystem":"PyPI","name":"demo"}}],"v":"%s"%s}' % (
        upstream.encode(),
        version.encode(),
        b',"withdrawn":"2026-02-01T00:00:00Z"' if withdrawn else b"",
    )
    return osv_record(
        upstream,
        body,
        aliases=(f"CVE-2026-{int(hashlib.sha256(upstream.encode()).hexdigest()[:4], 16)}",),
        package=AffectedPackage("pypi", "demo", "PyPI", fixed=(version,)),
        withdrawn="2026-02-01T00:00:00Z" if withdrawn else None,
    )


def new_signer(key_type: KeyType = KeyType.ED25519) -> FileSigner:
    return FileSigner(generate_private_key(key_type))


def trust_for(*signers: Signer) -> dict[str, Any]:
    pem = b"".join(s.public_key_pem() for s in signers)
    return load_trust_roots(pem)


def options(*signers: Signer, **kw: Any) -> ImportOptions:
    return ImportOptions(trust_roots=trust_for(*signers), imported_by="test", **kw)


def age_identity() -> tuple[str, str]:
    from pyrage import x25519

    ident = x25519.Identity.generate()
    return str(ident), str(ident.to_public())


def keys_for(*identities: str) -> KeyMaterial:
    return KeyMaterial(age_identities=identities)


def evidence(store: EvidenceStore, tenant: str = TENANT) -> dict[str, Any]:
    """Everything that must be equal between two instances: per record the raw bytes, digest,
    ids, revision, flags and normalized JSON; the counts; the derived index rows."""
    seq = store.current_sequence(tenant)
    out: dict[str, Any] = {"counts": store.counts(tenant, seq)}
    for doc_type in DOC_TYPES:
        out[doc_type] = [
            (
                r.observation_id,
                r.source,
                r.upstream_id,
                r.revision,
                r.digest,
                r.content,
                r.withdrawn,
                r.supersedes,
                r.format,
                r.media_type,
                data,
            )
            for r, data in store.iter_records(tenant, seq, doc_type=doc_type)
        ]
    with store.engine.connect() as c:
        for table, cols in (
            ("advisory_packages", "i.purl_type, i.name"),
            ("vex_statements", "i.vulnerability, i.product, i.status, i.justification"),
            ("sbom_components", "i.purl, i.name, i.version, i.sha1"),
        ):
            out[table] = sorted(
                (
                    tuple(row)
                    for row in c.execute(
                        text(
                            f"SELECT r.observation_id, {cols} FROM {table} i "
                            "JOIN normalized_records n ON n.id = i.normalized_id "
                            "JOIN raw_records r ON r.id = n.raw_id "
                            "WHERE r.tenant = :t AND r.superseded_seq IS NULL"
                        ),
                        {"t": tenant},
                    )
                ),
                key=repr,
            )
    return out


def snapshot(store: EvidenceStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: 'the store is untouched' means this is unchanged."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as c:
        for name, table in sorted(Base.metadata.tables.items()):
            rows = c.execute(select(table)).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def extract(archive: Path, dest: Path) -> Path:
    from export_center.archive.reader import safe_extract

    safe_extract(archive, dest)
    return dest


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resign(
    bundle_dir: Path,
    signer: Signer,
    *,
    mutate: Any = None,
) -> None:
    """Recompute manifest contents, rerunHash, provenance subjects and checksums of an extracted
    bundle after its files were changed, and sign both envelopes with ``signer``: what an
    attacker holding ``signer`` (trusted or not) can produce."""
    manifest = orjson.loads((bundle_dir / EXPORT_JSON).read_bytes())
    for entry in manifest["contents"]:
        p = bundle_dir / entry["path"]
        entry["digest"] = "sha256:" + sha256_file(p)
        entry["bytes"] = p.stat().st_size
    manifest["rerunHash"] = rerun_hash([e["digest"] for e in manifest["contents"]])
    if mutate is not None:
        mutate(manifest)
    body = rfc8785.dumps(manifest)
    (bundle_dir / EXPORT_JSON).write_bytes(body)
    (bundle_dir / EXPORT_DSSE).write_bytes(sign_envelope(body, MANIFEST_PAYLOAD_TYPE, [signer]))
    stmt = orjson.loads((bundle_dir / PROVENANCE_JSON).read_bytes())
    for subject in stmt["subject"]:
        subject["digest"]["sha256"] = sha256_file(bundle_dir / subject["name"])
    prov = rfc8785.dumps(stmt)
    (bundle_dir / PROVENANCE_JSON).write_bytes(prov)
    (bundle_dir / PROVENANCE_DSSE).write_bytes(
        sign_envelope(prov, PROVENANCE_PAYLOAD_TYPE, [signer])
    )
    files = sorted(
        p.relative_to(bundle_dir).as_posix()
        for p in bundle_dir.rglob("*")
        if p.is_file() and p.name != CHECKSUMS
    )
    (bundle_dir / CHECKSUMS).write_bytes(
        build_checksums([(f, sha256_file(bundle_dir / f)) for f in files])
    )


def retuf(bundle_dir: Path, tuf_signer: Signer, **expires: Any) -> None:
    """Rewrite the TUF metadata of an extracted bundle, signed by ``tuf_signer``."""
    from export_center.mirror.options import TufOptions
    from export_center.mirror.tuf import build_tuf_metadata

    manifest = orjson.loads((bundle_dir / EXPORT_JSON).read_bytes())
    targets = {
        p.relative_to(bundle_dir).as_posix(): (sha256_file(p), p.stat().st_size)
        for p in (bundle_dir / "data").rglob("*")
        if p.is_file()
    }
    as_of = datetime.strptime(manifest["asOf"]["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    files = build_tuf_metadata(
        targets,
        tuf_signer,
        as_of=as_of,
        version=manifest["asOf"]["sequence"],
        options=TufOptions.model_validate({"expires": expires}),
    )
    for path, data in files.items():
        (bundle_dir / path).write_bytes(data)


def stella(
    *args: str, env: dict[str, str], check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STELLA, *args], env=env, capture_output=True, text=True, check=check, timeout=600
    )
