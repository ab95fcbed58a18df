"""trivy:db and trivy:java-db profiles end to end, with the real Trivy.

Real corpora (PyPA, Go vulndb, RustSec, the osv.dev npm and Maven sets) and one CycloneDX SBOM
are ingested into a store once per session; trivy:db and trivy:java-db profiles are exported as
signed bundles; ``stella airgap trivy-install`` puts them into a Trivy cache, and Trivy, fully
offline, must report the golden findings of its own integration fixtures and identify a JAR
without pom.properties by SHA-1. The same bundles pushed with ``stella export push`` to Debian's
docker-registry on 127.0.0.1 are downloaded by Trivy through ``--db-repository`` and
``--java-db-repository``. Two builds are byte-identical; tampered bundles are refused and leave
the cache untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from test_trivy_real import (
    GOLDEN_FIXTURES,
    NOT_IN_CORPORA,
    TRIVY_TESTDATA,
    findings,
    run_trivy,
)

from export_center.adapters.trivy_db import parse_validity
from export_center.archive.reader import iter_members, safe_extract
from export_center.bundle.verify import verify_bundle
from export_center.bundle.writer import BundleResult
from export_center.distribution.trivy import (
    TrivyBundleRefused,
    is_trivy_bundle,
    push_trivy_bundle,
)
from export_center.errors import BadInputError, InsecureTransportError, NotFoundError
from export_center.exporter import run_export
from export_center.importer.trivy_install import install_trivy_bundle
from export_center.ingest.pipeline import ingest_paths
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView
from export_center.settings import Settings, load_settings
from export_center.signing.interface import KeyType, load_trust_roots
from export_center.signing.keyfile import FileSigner, generate_private_key
from export_center.store.repository import EvidenceStore
from export_center.trivy.artifact import CONFIG_TYPE, DB, JAVA_DB, read_trivy_layout
from export_center.trivy.bbolt import BoltReader
from support.bolt import GoCheck

pytestmark = pytest.mark.slow  # whole-corpus, many subprocesses or real tools

TENANT = "default"
STELLA = str(Path(sys.executable).with_name("stella"))
CORPUS_SOURCES = [
    ("pypa", "pypa-advisory-database/vulns"),
    ("go-vulndb", "golang-vulndb/data/osv"),
    ("rustsec", "rustsec-advisory-db-osv/crates"),
    ("santatracker", "google-osv-scanner/internal/remediation/testdata/santatracker/vulns.json"),
    (
        "zeppelin",
        "google-osv-scalibr/guidedremediation/internal/strategy/override/testdata/"
        "zeppelin-server/vulnerabilities.json",
    ),
]
DB_OPTIONS = {
    "validity": "P3D",
    "dataSources": {
        "pypa": {
            "id": "pypa",
            "name": "PyPA Advisory Database",
            "url": "https://github.com/pypa/advisory-database",
        }
    },
}
DATABIND = "com.fasterxml.jackson.core:jackson-databind"
DATABIND_PURL = "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.1"


@dataclass
class Env:
    root: Path
    settings: Settings
    store: EvidenceStore
    signer: FileSigner
    trust_pem: Path
    db_profile: ProfileRevisionView
    java_profile: ProfileRevisionView
    db_bundle: BundleResult
    java_bundle: BundleResult
    jar_root: Path  # a rootfs holding the JAR without pom.properties

    def env(self) -> dict[str, str]:
        return {**os.environ, "STELLA_DATA_DIR": str(self.settings.data_dir)}

    def stella(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STELLA, *args], env=self.env(), capture_output=True, text=True, timeout=600
        )

    def install(self, bundle: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.stella(
            "airgap",
            "trivy-install",
            str(bundle),
            "--cache-dir",
            str(cache),
            "--trust-roots",
            str(self.trust_pem),
            *extra,
        )


def _mystery_jar(root: Path) -> Path:
    """A JAR with no pom.properties and no GAV-shaped name: only its SHA-1 can identify it."""
    jar = root / "app" / "mystery.jar"
    jar.parent.mkdir(parents=True)
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr(zipfile.ZipInfo("com/example/Main.class", (2020, 1, 1, 0, 0, 0)), b"\xca\xfe")
    return jar


def _sbom(sha1: str) -> bytes:
    """A CycloneDX SBOM naming the JAR by purl and SHA-1 (what a build system would emit)."""
    return orjson.dumps(
        {
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "serialNumber": "urn:uuid:6c3f0c1e-2b7a-4d55-9a34-0f1e6a1b2c3d",
            "version": 1,
            "metadata": {
                "component": {"type": "application", "name": "mystery-app", "bom-ref": "app"}
            },
            "components": [
                {
                    "type": "library",
                    "bom-ref": "databind",
                    "group": "com.fasterxml.jackson.core",
                    "name": "jackson-databind",
                    "version": "2.9.1",
                    "purl": DATABIND_PURL,
                    "hashes": [{"alg": "SHA-1", "content": sha1}],
                },
                {"type": "library", "name": "no-hash", "purl": "pkg:maven/org.example/no-hash@1"},
            ],
        }
    )


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Env:
    root = tmp_path_factory.mktemp("trivy-profiles")
    settings = load_settings(env={"STELLA_DATA_DIR": str(root / "data")})
    store = EvidenceStore.open(settings.database_url)
    for source, rel in CORPUS_SOURCES:
        rep = ingest_paths(store, [corpora / rel], source=source, tenant=TENANT, max_bytes=64 << 20)
        assert rep.stored and not rep.refused, (source, rep.refused[:3])
    jar_root = root / "rootfs"
    jar = _mystery_jar(jar_root)
    sha1 = hashlib.sha1(jar.read_bytes(), usedforsecurity=False).hexdigest()
    (root / "sboms").mkdir()
    (root / "sboms" / "mystery-app.cdx.json").write_bytes(_sbom(sha1))
    rep = ingest_paths(
        store, [root / "sboms"], source="build-sboms", tenant=TENANT, max_bytes=1 << 20
    )
    assert rep.stored == 1, rep.refused
    signer = FileSigner(generate_private_key(KeyType.ED25519))
    trust_pem = root / "trusted.pem"
    trust_pem.write_bytes(signer.public_key_pem())
    reg = ProfileRegistry(store)
    db_profile = reg.create(
        TENANT,
        "trivy-db",
        parse_profile_spec({"kind": "trivy", "variant": "db", "options": DB_OPTIONS}),
    )
    java_profile = reg.create(
        TENANT, "trivy-java-db", parse_profile_spec({"kind": "trivy", "variant": "java-db"})
    )
    out = root / "out"
    db_bundle = run_export(settings, store, db_profile, out, signer=signer).bundle
    java_bundle = run_export(settings, store, java_profile, out, signer=signer).bundle
    return Env(
        root,
        settings,
        store,
        signer,
        trust_pem,
        db_profile,
        java_profile,
        db_bundle,
        java_bundle,
        jar_root,
    )


def _member_bytes(archive: Path, name: str) -> bytes:
    for member in iter_members(archive):
        if member.name == name:
            return member.read()
    raise AssertionError(f"{name} not in {archive}")


def _tar_gz(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        return {m.name: m for m in tf.getmembers()}


def _exported_db(env: Env, tmp: Path) -> Path:
    layer = _member_bytes(env.db_bundle.archive_path, DB.archive_path)
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tf:
        tf.extractall(tmp, filter="data")
    return tmp / "trivy.db"


@pytest.fixture(scope="session")
def installed_cache(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both bundles installed with `stella airgap trivy-install` into one cache directory."""
    cache = tmp_path_factory.mktemp("installed") / "cache"
    for bundle in (env.db_bundle, env.java_bundle):
        proc = env.install(bundle.archive_path, cache)
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return cache


@pytest.fixture(scope="session")
def exported_vulnerability_ids(
    env: Env, tmp_path_factory: pytest.TempPathFactory
) -> frozenset[str]:
    db = _exported_db(env, tmp_path_factory.mktemp("exported-db"))
    with BoltReader(db) as reader:
        vulns = reader.bucket(b"vulnerability")
        assert vulns is not None
        return frozenset(k.decode() for k, _v in vulns.items())


# -- the bundles ----------------------------------------------------------------------------


def test_db_bundle_holds_trivy_layout_and_oci_artifact(
    env: Env, tmp_path: Path, gocheck: GoCheck
) -> None:
    bundle = env.db_bundle.archive_path
    report = verify_bundle(bundle, load_trust_roots(env.trust_pem.read_bytes()))
    assert report.ok, report.as_json()
    manifest = report.manifest
    assert manifest is not None
    assert manifest.profile.kind == "trivy" and is_trivy_bundle(bundle)
    trivy_paths = sorted(e.path for e in manifest.contents if e.path.startswith("trivy/"))
    assert trivy_paths[0] == "trivy/db.tar.gz"
    assert all(p.startswith("trivy/oci/db/") for p in trivy_paths[1:])
    assert len(trivy_paths) == 6  # archive, oci-layout, index.json, manifest, config, layer

    # Trivy's own archive: trivy.db and metadata.json at top level, deterministic headers.
    layer = _member_bytes(bundle, "trivy/db.tar.gz")
    members = _tar_gz(layer)
    assert sorted(members) == ["metadata.json", "trivy.db"]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert layer[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tf:
        tf.extractall(tmp_path, filter="data")
    metadata = json.loads((tmp_path / "metadata.json").read_bytes())
    as_of = manifest.as_of.time
    next_update = datetime.fromisoformat(as_of.replace("Z", "+00:00")) + timedelta(days=3)
    assert metadata == {
        "Version": 2,
        "UpdatedAt": as_of,
        "DownloadedAt": as_of,
        "NextUpdate": next_update.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    checked = gocheck(tmp_path / "trivy.db")
    assert {"pip::PyPA Advisory Database", "go::go-vulndb", "cargo::rustsec"} <= set(
        checked["roots"]
    )
    assert "npm::santatracker" in checked["roots"] and "maven::zeppelin" in checked["roots"]

    # The OCI image layout: Trivy's media types, one layer = the same archive, tag "2".
    layout = tmp_path / "bundle"
    safe_extract(bundle, layout)
    art = read_trivy_layout(layout / "trivy/oci/db", DB)
    assert art.layer_path.read_bytes() == layer
    doc = json.loads(art.manifest)
    assert doc["config"]["mediaType"] == CONFIG_TYPE
    assert doc["layers"] == [
        {
            "mediaType": "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip",
            "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
            "size": len(layer),
            "annotations": {"org.opencontainers.image.title": "db.tar.gz"},
        }
    ]
    index = json.loads((layout / "trivy/oci/db/index.json").read_bytes())
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "2"}
    assert b"created" not in art.manifest and b"created" not in json.dumps(index).encode()
    assert manifest.trivy is not None and manifest.trivy.db is not None
    section = manifest.trivy.db
    assert section.oci.manifest_digest == art.manifest_digest
    assert section.withdrawn_left_out > 0 and manifest.counts["withdrawn"] > 0

    # Provenance covers the DB; every source's input set is a resolved dependency.
    prov = json.loads((layout / "manifests/provenance.json").read_bytes())
    subjects = {s["name"]: s["digest"]["sha256"] for s in prov["subject"]}
    assert subjects["trivy/db.tar.gz"] == hashlib.sha256(layer).hexdigest()
    deps = {d["name"] for d in prov["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps == {f"advisories/{s}" for s, _ in CORPUS_SOURCES}
    assert manifest.counts["advisories"] == section.advisories > 8000


def test_java_db_bundle_indexes_the_sbom_component(env: Env, tmp_path: Path) -> None:
    import sqlite3

    bundle = env.java_bundle.archive_path
    layer = _member_bytes(bundle, "trivy/javadb.tar.gz")
    assert sorted(_tar_gz(layer)) == ["metadata.json", "trivy-java.db"]
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tf:
        tf.extractall(tmp_path, filter="data")
    assert json.loads((tmp_path / "metadata.json").read_bytes())["Version"] == 1
    with sqlite3.connect(tmp_path / "trivy-java.db") as conn:
        rows = conn.execute(
            "SELECT a.group_id, a.artifact_id, i.version, i.archive_type FROM indices i"
            " JOIN artifacts a ON a.id = i.artifact_id"
        ).fetchall()
    assert rows == [("com.fasterxml.jackson.core", "jackson-databind", "2.9.1", "jar")]
    safe_extract(bundle, tmp_path / "bundle")
    art = read_trivy_layout(tmp_path / "bundle/trivy/oci/java-db", JAVA_DB)
    assert art.layer_path.read_bytes() == layer
    manifest = json.loads((tmp_path / "bundle/manifests/export.json").read_bytes())
    assert manifest["counts"]["javaIndices"] == 1
    assert manifest["trivy"]["javaDb"]["skipped"] == {"no sha1 hash": 1}


def test_two_builds_are_byte_identical(env: Env, tmp_path: Path) -> None:
    # Another output directory, umask and time zone: the same bytes, signatures included.
    old_umask = os.umask(0o077)
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"
    try:
        again = [
            run_export(env.settings, env.store, p, tmp_path / "again", signer=env.signer).bundle
            for p in (env.db_profile, env.java_profile)
        ]
    finally:
        os.umask(old_umask)
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
    for first, second in zip((env.db_bundle, env.java_bundle), again, strict=True):
        assert first.archive_path.name == second.archive_path.name
        assert first.archive_path.read_bytes() == second.archive_path.read_bytes()
        for suffix in (".sha256", ".sig"):
            side = first.archive_path.name + suffix
            assert (first.archive_path.parent / side).read_bytes() == (
                second.archive_path.parent / side
            ).read_bytes()


# -- Trivy, offline, on the installed cache -------------------------------------------------


@pytest.mark.parametrize("fixture", GOLDEN_FIXTURES)
def test_golden_findings_from_the_installed_bundle(
    fixture: str,
    corpora: Path,
    installed_cache: Path,
    exported_vulnerability_ids: frozenset[str],
    trivy_bin: Path,
) -> None:
    testdata = corpora / TRIVY_TESTDATA
    expected = findings(json.loads((testdata / f"{fixture}.json.golden").read_text()))
    got = findings(run_trivy(trivy_bin, installed_cache, testdata / "fixtures/repo" / fixture))
    checked = {
        f
        for f in expected
        if f[0] in exported_vulnerability_ids
        and not any(f[0].startswith(p) for p in NOT_IN_CORPORA)
    }
    left_out = expected - checked
    assert checked, f"{fixture}: no golden finding could be checked"
    assert checked <= got, f"{fixture}: missing {sorted(checked - got)}"
    assert all(f[0].startswith(tuple(NOT_IN_CORPORA)) for f in left_out), left_out


def test_installed_files_are_the_bundle_files(env: Env, installed_cache: Path) -> None:
    for bundle, kind in ((env.db_bundle, DB), (env.java_bundle, JAVA_DB)):
        layer = _member_bytes(bundle.archive_path, kind.archive_path)
        with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tf:
            for name in (kind.db_name, "metadata.json"):
                member = tf.extractfile(name)
                assert member is not None
                assert (installed_cache / kind.cache_subdir / name).read_bytes() == member.read()
        leftovers = [p.name for p in (installed_cache / kind.cache_subdir).iterdir()]
        assert sorted(leftovers) == sorted([kind.db_name, "metadata.json"])


def test_jar_without_pom_is_identified_by_sha1_from_the_sbom(
    env: Env, installed_cache: Path, trivy_bin: Path
) -> None:
    got = findings(run_trivy(trivy_bin, installed_cache, env.jar_root, mode="rootfs"))
    assert ("CVE-2020-9548", DATABIND, "2.9.1") in got
    assert {name for _id, name, _v in got} == {DATABIND}


# -- refusals -------------------------------------------------------------------------------


def _cache_state(cache: Path) -> dict[str, tuple[int, bytes]]:
    if not cache.exists():
        return {}
    return {
        p.relative_to(cache).as_posix(): (p.stat().st_ino, p.read_bytes() if p.is_file() else b"")
        for p in sorted(cache.rglob("*"))
    }


def _tampered_copies(env: Env, tmp_path: Path) -> dict[str, Path]:
    src = env.db_bundle.archive_path
    out: dict[str, Path] = {}
    # 1. One byte of the archive flipped (sidecars kept).
    flipped = tmp_path / "flipped" / src.name
    flipped.parent.mkdir()
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    for suffix in (".sha256", ".sig"):
        shutil.copyfile(src.with_name(src.name + suffix), flipped.with_name(flipped.name + suffix))
    out["flipped byte"] = flipped
    # 2. An extracted bundle whose database was replaced (checksums recomputed, not re-signed).
    swapped = tmp_path / "swapped"
    safe_extract(src, swapped)
    db = swapped / "trivy/db.tar.gz"
    db.write_bytes(db.read_bytes()[:-64] + bytes(64))
    lines = []
    for line in (swapped / "checksums.txt").read_text().splitlines():
        digest, path = line.split("  ", 1)
        if path == "trivy/db.tar.gz":
            digest = hashlib.sha256(db.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path}\n")
    (swapped / "checksums.txt").write_text("".join(lines))
    out["database swapped"] = swapped
    # 3. A perfectly valid bundle, signed by a key nobody trusts.
    stranger = FileSigner(generate_private_key(KeyType.ED25519))
    strange = run_export(
        env.settings, env.store, env.java_profile, tmp_path / "stranger", signer=stranger
    ).bundle.archive_path
    out["untrusted signer"] = strange
    return out


def test_trivy_install_refuses_tampered_bundles_and_leaves_the_cache(
    env: Env, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    assert env.install(env.db_bundle.archive_path, cache).returncode == 0
    before = _cache_state(cache)
    fresh = tmp_path / "fresh-cache"
    roots = load_trust_roots(env.trust_pem.read_bytes())
    tampered = _tampered_copies(env, tmp_path)
    failed_checks = {}
    for what, bundle in tampered.items():
        for target in (cache, fresh):
            with pytest.raises(TrivyBundleRefused) as refused:
                install_trivy_bundle(bundle, target, roots)
            failed_checks[what] = refused.value.check
        assert _cache_state(cache) == before, what
        assert not fresh.exists(), what
    assert failed_checks == {
        "flipped byte": "archive-digest",
        "database swapped": "contents",
        "untrusted signer": "archive-signature",
    }
    # The command: exit code 2, the failed check named, the cache untouched.
    proc = env.install(tampered["database swapped"], cache)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "FAIL contents" in proc.stdout and "does not match the signed manifest" in proc.stderr
    assert _cache_state(cache) == before


def test_trivy_install_refuses_other_profiles_and_older_databases(env: Env, tmp_path: Path) -> None:
    raw = ProfileRegistry(env.store).create(
        TENANT,
        "just-the-sbom",
        parse_profile_spec(
            {
                "kind": "json",
                "variant": "raw",
                "include": ["sboms"],
                "selectors": {"sources": ["build-sboms"]},
            }
        ),
    )
    not_trivy = run_export(env.settings, env.store, raw, tmp_path / "raw", signer=env.signer)
    cache = tmp_path / "cache"
    proc = env.install(not_trivy.bundle.archive_path, cache)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not a trivy:db or trivy:java-db bundle" in proc.stdout + proc.stderr
    assert not cache.exists()

    # A newer database is installed: the older bundle is refused unless forced.
    roots = load_trust_roots(env.trust_pem.read_bytes())
    install_trivy_bundle(env.db_bundle.archive_path, cache, roots)
    meta = cache / "db" / "metadata.json"
    newer = json.loads(meta.read_bytes()) | {"UpdatedAt": "2999-01-01T00:00:00Z"}
    meta.write_bytes(json.dumps(newer).encode())
    before = _cache_state(cache)
    proc = env.install(env.db_bundle.archive_path, cache)
    assert proc.returncode == 6 and "newer" in proc.stderr, proc.stderr
    assert _cache_state(cache) == before
    forced = install_trivy_bundle(env.db_bundle.archive_path, cache, roots, force=True)
    assert forced.installed.replaced_updated_at == "2999-01-01T00:00:00Z"
    assert json.loads(meta.read_bytes())["UpdatedAt"] == forced.installed.metadata["UpdatedAt"]


def test_profile_options_are_validated(env: Env, tmp_path: Path) -> None:
    assert parse_validity("P7D") == timedelta(days=7)
    assert parse_validity("PT36H") == timedelta(hours=36)
    assert parse_validity("P1W2DT3H") == timedelta(days=9, hours=3)
    assert parse_validity(48) == timedelta(hours=48)
    for bad in ("7 days", "P", "PT", "P1DT", "P0D", -1, 0, "P4000D"):
        with pytest.raises(ValueError, match="validity"):
            parse_validity(bad)  # type: ignore[arg-type]
    # A typo is refused when the profile is written, naming the field (not at run time).
    with pytest.raises(BadInputError, match=r"options\.validty: unknown field"):
        parse_profile_spec({"kind": "trivy", "variant": "db", "options": {"validty": "P1D"}})
    with pytest.raises(NotFoundError):
        ProfileRegistry(env.store).get(TENANT, "trivy-typo")


# -- registry -------------------------------------------------------------------------------


def test_pushed_databases_are_downloaded_by_trivy(
    env: Env, registry: str, tmp_path: Path, trivy_bin: Path, corpora: Path
) -> None:
    db_ref = f"{registry}/stella/trivy-db"
    java_ref = f"{registry}/stella/trivy-java-db"
    for bundle, ref in ((env.db_bundle, db_ref), (env.java_bundle, f"{java_ref}:1")):
        proc = env.stella(
            "export",
            "push",
            str(bundle.archive_path),
            f"oci://{ref}",
            "--trust-roots",
            str(env.trust_pem),
            "--format",
            "json",
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["verified"] is True
    # No tag given for the main DB: Trivy's "2" was used.
    manifest = httpx.get(
        f"http://{db_ref.replace('/stella/', '/v2/stella/', 1)}/manifests/2",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert manifest.status_code == 200, manifest.text
    assert manifest.json()["layers"][0]["annotations"]["org.opencontainers.image.title"] == (
        "db.tar.gz"
    )

    # A fresh cache, no --skip-*-update: Trivy downloads both DBs from the loopback registry
    # over plain HTTP without --insecure.
    cache = tmp_path / "cache"
    cmd = [
        str(trivy_bin),
        "rootfs",
        "--cache-dir",
        str(cache),
        "--db-repository",
        f"{db_ref}:2",
        "--java-db-repository",
        f"{java_ref}:1",
        "--offline-scan",
        "--scanners",
        "vuln",
        "--skip-version-check",
        "--disable-telemetry",
        "--quiet",
        "--format",
        "json",
        str(env.jar_root),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert ("CVE-2020-9548", DATABIND, "2.9.1") in findings(json.loads(proc.stdout))
    exported = _exported_db(env, tmp_path / "exported")
    assert (cache / "db" / "trivy.db").read_bytes() == exported.read_bytes()
    assert (cache / "java-db" / "trivy-java.db").is_file()
    # The downloaded DB then serves offline scans too.
    testdata = corpora / TRIVY_TESTDATA
    got = findings(run_trivy(trivy_bin, cache, testdata / "fixtures/repo/pip"))
    assert ("CVE-2019-14806", "Werkzeug", "0.11") in got


def test_push_verifies_first_and_refuses_plain_http(
    env: Env, registry: str, tmp_path: Path
) -> None:
    # Untrusted keys: nothing reaches the registry.
    other = tmp_path / "other.pem"
    other.write_bytes(FileSigner(generate_private_key(KeyType.ED25519)).public_key_pem())
    ref = f"oci://{registry}/stella/refused:2"
    proc = env.stella(
        "export", "push", str(env.db_bundle.archive_path), ref, "--trust-roots", str(other)
    )
    assert proc.returncode == 2, proc.stderr
    assert "manifest-signature" in proc.stderr or "archive-signature" in proc.stderr
    assert httpx.get(f"http://{registry}/v2/stella/refused/manifests/2").status_code == 404

    roots = load_trust_roots(env.trust_pem.read_bytes())
    with pytest.raises(BadInputError, match="plain HTTP"):
        push_trivy_bundle(
            env.db_bundle.archive_path, "http://registry.example/x:2", trust_roots=roots
        )

    # An HTTPS registry that redirects to plain HTTP elsewhere is refused at the redirect.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.scheme == "https":
            return httpx.Response(
                307, headers={"Location": f"http://cdn.example{request.url.path}"}
            )
        return httpx.Response(200)  # never reached

    client = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)
    with pytest.raises(InsecureTransportError, match=r"refusing plain HTTP to cdn\.example"):
        push_trivy_bundle(
            env.db_bundle.archive_path,
            "oci://registry.example/stella/db:2",
            trust_roots=roots,
            client=client,
        )
    assert seen and all(u.startswith("https://registry.example/") for u in seen)
