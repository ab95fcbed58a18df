"""trivy.db, metadata.json, db.tar.gz and trivy-java.db writers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from export_center.errors import BadInputError
from export_center.model import Advisory, AffectedPackage, Component, RangeEvent, VersionRange
from export_center.trivy.bbolt import BoltReader, ReadBucket
from export_center.trivy.dbwriter import metadata_json, write_db_archive, write_trivy_db
from export_center.trivy.javadb import (
    JAVA_DB_SCHEMA,
    java_metadata_json,
    write_java_db,
    write_java_db_archive,
)
from export_center.trivy.mapping import DataSource
from support.bolt import GoCheck, digest, synthetic_advisories
from support.tools import support_module_cmd

AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def fixed_range(fixed: str) -> tuple[VersionRange, ...]:
    return (VersionRange("ECOSYSTEM", (RangeEvent("introduced", "0"), RangeEvent("fixed", fixed))),)


def pypi(name: str, fixed: str) -> AffectedPackage:
    return AffectedPackage("pypi", name, "PyPI", ranges=fixed_range(fixed))


def read_json(bucket: ReadBucket, *path: bytes) -> object:
    node: bytes | ReadBucket | None = bucket
    for key in path:
        assert isinstance(node, ReadBucket)
        node = node.get(key)
    assert isinstance(node, bytes), path
    return orjson.loads(node)


def test_empty_input_still_writes_the_vulnerability_bucket(
    tmp_path: Path, gocheck: GoCheck
) -> None:
    report = write_trivy_db([], tmp_path / "trivy.db")
    assert report.advisories == 0 and report.buckets == ()
    with BoltReader(tmp_path / "trivy.db") as reader:
        assert reader.root().to_dict() == {b"data-source": {}, b"vulnerability": {}}
    gocheck(tmp_path / "trivy.db")
    assert [p.name for p in tmp_path.iterdir()] == ["trivy.db"]  # no scratch left behind


def test_buckets_keys_and_merge_rule(tmp_path: Path, gocheck: GoCheck) -> None:
    pysec = Advisory(
        "PYSEC-2023-1",
        aliases=("CVE-2023-1",),
        summary="from pysec",
        affected=(pypi("Werkzeug", "2.0"),),
    )
    ghsa = Advisory(
        "GHSA-aaaa-bbbb-cccc",
        aliases=("CVE-2023-1",),
        summary="from ghsa",
        severity_label="HIGH",
        affected=(pypi("werkzeug", "2.1"),),
    )
    deb_a = Advisory(
        "DSA-1",
        aliases=("CVE-2023-2",),
        affected=(AffectedPackage("deb", "openssl", "Debian:12", ranges=fixed_range("3.0.1")),),
    )
    deb_b = Advisory("DLA-9", aliases=("CVE-2023-3",), affected=deb_a.affected)
    sources = {"Zeta": DataSource("zeta", "Zeta Feed"), "Alpha": DataSource("alpha", "Alpha")}
    report = write_trivy_db(
        [("Zeta", pysec), ("Zeta", ghsa), ("Zeta", deb_b), ("Alpha", deb_a)],
        tmp_path / "trivy.db",
        sources=sources,
    )
    assert report.buckets == ("debian 12", "pip::Zeta Feed")
    assert (report.advisories, report.mapped, report.entries, report.merged_entries) == (4, 4, 3, 1)
    assert report.vulnerabilities == 3
    gocheck(tmp_path / "trivy.db")
    with BoltReader(tmp_path / "trivy.db") as reader:
        root = reader.root()
        assert [k for k, _ in root.items()] == [
            b"data-source",
            b"debian 12",
            b"pip::Zeta Feed",
            b"vulnerability",
        ]
        # Same feed, same package, same CVE: one entry, ranges and ids unioned.
        assert read_json(root, b"pip::Zeta Feed", b"werkzeug", b"CVE-2023-1") == {
            "VendorIDs": ["GHSA-aaaa-bbbb-cccc", "PYSEC-2023-1"],
            "VulnerableVersions": [
                "<2.1",
                ">=2.1.dev0, <=2.1, !=2.1",
                "<2.0",
                ">=2.0.dev0, <=2.0, !=2.0",
            ],
        }
        # Combined in (feed id, advisory id) order: the GHSA record's title comes first.
        assert read_json(root, b"vulnerability", b"CVE-2023-1") == {
            "Severity": "HIGH",
            "Title": "from ghsa",
            "VendorSeverity": {"zeta": 3},
        }
        # A bucket two feeds write: its data source is the feed with the smaller id.
        assert read_json(root, b"data-source", b"debian 12") == {"ID": "alpha", "Name": "Alpha"}
        assert read_json(root, b"data-source", b"pip::Zeta Feed") == {
            "ID": "zeta",
            "Name": "Zeta Feed",
        }
        assert read_json(root, b"debian 12", b"openssl", b"CVE-2023-3") == {
            "FixedVersion": "3.0.1",
            "VendorIDs": ["DLA-9"],
        }


def test_output_does_not_depend_on_input_order(tmp_path: Path, gocheck: GoCheck) -> None:
    items = list(synthetic_advisories(3000))
    write_trivy_db(items, tmp_path / "a.db")
    write_trivy_db(reversed(items), tmp_path / "b.db")
    assert (tmp_path / "a.db").read_bytes() == (tmp_path / "b.db").read_bytes()
    report = gocheck(tmp_path / "a.db")
    assert report["digest"] == digest(tmp_path / "a.db")
    assert report["roots"]["vulnerability"]["keys"] == 3000


def test_two_feeds_may_not_share_a_source_id(tmp_path: Path) -> None:
    sources = {"A": DataSource("same", "A"), "B": DataSource("same", "B")}
    with pytest.raises(BadInputError, match="feeds 'A' and 'B' share the data source id 'same'"):
        write_trivy_db([], tmp_path / "trivy.db", sources=sources)


@pytest.mark.slow
def test_streaming_keeps_memory_flat(tmp_path: Path) -> None:
    # Two runs in fresh processes: ten times the advisories must not cost memory.
    def run(count: int) -> dict[str, float]:
        cmd, env = support_module_cmd("bolt", os.environ)
        proc = subprocess.run(
            [*cmd, "advisories", str(tmp_path / f"{count}.db"), str(count)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
            env=env,
        )
        result: dict[str, float] = json.loads(proc.stdout)
        return result

    small, large = run(10_000), run(100_000)
    print(
        f"\ntrivy.db from advisories: 10k in {small['seconds']} s, peak RSS "
        f"{small['max_rss_kib'] / 1024:.0f} MiB; 100k in {large['seconds']} s, peak RSS "
        f"{large['max_rss_kib'] / 1024:.0f} MiB"
    )
    assert large["vulnerabilities"] == 100_000
    assert large["max_rss_kib"] - small["max_rss_kib"] < 40 * 1024


def test_metadata_json() -> None:
    meta = metadata_json(AS_OF, timedelta(days=2))
    assert meta == (
        b'{"Version":2,"NextUpdate":"2026-03-03T12:00:00Z","UpdatedAt":"2026-03-01T12:00:00Z",'
        b'"DownloadedAt":"2026-03-01T12:00:00Z"}'
    )
    assert orjson.loads(java_metadata_json(AS_OF, timedelta(hours=1)))["Version"] == 1
    with pytest.raises(BadInputError, match="has no time zone"):
        metadata_json(datetime(2026, 1, 1), timedelta(days=1))
    with pytest.raises(BadInputError, match="is negative"):
        metadata_json(AS_OF, timedelta(days=-1))


def test_db_archive_layout_and_determinism(tmp_path: Path) -> None:
    write_trivy_db(synthetic_advisories(200), tmp_path / "trivy.db")
    meta = metadata_json(AS_OF, timedelta(days=1))
    first = write_db_archive(tmp_path / "db.tar.gz", tmp_path / "trivy.db", meta)
    blob = (tmp_path / "db.tar.gz").read_bytes()
    second = write_db_archive(tmp_path / "again.tar.gz", tmp_path / "trivy.db", meta)
    assert first == second == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert (tmp_path / "again.tar.gz").read_bytes() == blob
    # gzip: no file name, mtime 0
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0  # FNAME flag clear
    assert blob[4:8] == b"\0\0\0\0"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["metadata.json", "trivy.db"]
        assert {(m.uid, m.gid, m.uname, m.gname, m.isfile()) for m in members} == {
            (0, 0, "", "", True)
        }
        assert len({m.mtime for m in members}) == 1
        extracted = tar.extractfile("trivy.db")
        assert extracted is not None
        assert extracted.read() == (tmp_path / "trivy.db").read_bytes()
        meta_file = tar.extractfile("metadata.json")
        assert meta_file is not None and meta_file.read() == meta


def jar_component(group: str, artifact: str, version: str, sha1: str, **extra: str) -> Component:
    quals = "".join(f"?{k}={v}" for k, v in extra.items())
    return Component(
        name=artifact,
        version=version,
        purl=f"pkg:maven/{group}/{artifact}@{version}{quals}",
        hashes=(("sha1", sha1),),
    )


def test_java_db_schema_rows_and_determinism(tmp_path: Path) -> None:
    components = [
        jar_component("org.b", "lib", "2.0", "22" * 20),
        jar_component("org.a", "core", "1.0", "11" * 20),
        jar_component("org.a", "core", "1.1", "33" * 20, type="aar"),
        jar_component("org.a", "dup", "9.9", "11" * 20),  # same sha1 as org.a:core:1.0
        Component(name="no-hash", purl="pkg:maven/org.a/x@1"),
        Component(name="npm", purl="pkg:npm/left-pad@1.0.0", hashes=(("sha1", "44" * 20),)),
        Component(name="no purl"),
        jar_component("org.a", "weird", "1", "55" * 20, type="war"),
    ]
    report = write_java_db(components, tmp_path / "trivy-java.db")
    assert (report.artifacts, report.indices) == (2, 3)
    assert dict(report.skipped) == {
        "archive type 'war' is neither jar nor aar": 1,
        "no purl": 1,
        "no sha1 hash": 1,
        "not a maven purl": 1,
        "sha1 already indexed for another artifact or version": 1,
    }
    conn = sqlite3.connect(tmp_path / "trivy-java.db")
    try:
        schema = [row[0] for row in conn.execute("SELECT sql FROM sqlite_master ORDER BY rowid")]
        assert schema == list(JAVA_DB_SCHEMA)
        # ids follow (group, artifact) order; org.a:dup lost its only index to the SHA-1
        # collision and is dropped with it.
        assert list(conn.execute("SELECT * FROM artifacts")) == [
            (1, "org.a", "core"),
            (3, "org.b", "lib"),
        ]
        rows = list(
            conn.execute(
                "SELECT a.group_id, a.artifact_id, i.version, hex(i.sha1), i.archive_type"
                " FROM indices i JOIN artifacts a ON a.id = i.artifact_id ORDER BY i.rowid"
            )
        )
    finally:
        conn.close()
    assert rows == [
        ("org.a", "core", "1.0", "11" * 20, "jar"),
        ("org.a", "core", "1.1", "33" * 20, "aar"),
        ("org.b", "lib", "2.0", "22" * 20, "jar"),
    ]
    write_java_db(reversed(components), tmp_path / "again.db")
    assert (tmp_path / "again.db").read_bytes() == (tmp_path / "trivy-java.db").read_bytes()
    meta = java_metadata_json(AS_OF, timedelta(days=1))
    digest_a = write_java_db_archive(tmp_path / "javadb.tar.gz", tmp_path / "trivy-java.db", meta)
    with tarfile.open(tmp_path / "javadb.tar.gz") as tar:
        assert tar.getnames() == ["metadata.json", "trivy-java.db"]
    assert digest_a.startswith("sha256:")
