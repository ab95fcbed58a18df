"""The fast paths of export and verify give the bytes of the plain ones, on the real corpora.

- Export: a zstd bundle's large files are compressed while the adapter writes them (staging →
  :class:`ZstdFrameWriter`), and the archive is a sequence of frames. Its tar stream must be
  the one the reference writer makes of the same files, uncompressed; its compressed bytes the
  ones :func:`write_tree` makes of the same files read from disk (no frame compressed ahead);
  and neither may depend on the zstd worker count.
- Verify: the archive is decompressed in a thread of its own, ahead of the hashing, while the
  archive digest and signature are checked in others. Every member's digest must be the one
  an independent extraction (GNU tar) and ``sha256`` give.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from export_center.archive.reader import Limits, iter_members
from export_center.archive.writer import FRAME_THRESHOLD, FileSource, write_tree
from export_center.bundle.verify import _collect_archive, verify_bundle
from export_center.exporter import run_export
from export_center.ingest.pipeline import ingest_paths
from export_center.settings import load_settings
from export_center.signing.interface import KeyType, load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore
from support.bundle import Env
from support.tools import need_tool

pytestmark = pytest.mark.slow  # whole-corpus, many subprocesses or real tools

# The three OSV feeds: 8,158 advisories, shards from ~1.5 MiB to ~12 MiB.
REAL = (
    ("pypa", "pypa-advisory-database/vulns"),
    ("go-vulndb", "golang-vulndb/data/osv"),
    ("rustsec", "rustsec-advisory-db-osv/crates"),
)


@pytest.fixture(scope="module")
def real(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("real")
    settings = load_settings(env={"STELLA_DATA_DIR": str(root / "data")})
    store = EvidenceStore.open(settings.database_url)
    for source, folder in REAL:
        ingest_paths(store, [corpora / folder], source=source, tenant="default", max_bytes=64 << 20)
    keys = KeyStore.from_settings(settings)
    info = keys.generate(KeyType.ED25519, tenants=["default"])
    roots = root / "trusted.pem"
    roots.write_bytes(keys.export_public(info.keyid))
    return Env(settings, store, keys, info.keyid, roots, root / "out")


def _unzstd(data: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    return reader.read()


def _frame_count(data: bytes) -> int:
    n, rest = 0, data
    while rest:
        d = zstandard.ZstdDecompressor().decompressobj()
        d.decompress(rest)
        rest = d.unused_data
        n += 1
    return n


def _export(env: Env, name: str) -> Path:
    profile = env.profile(name, compression={"algorithm": "zstd", "level": 10})
    return run_export(env.settings, env.store, profile, env.out / name).bundle.archive_path


def test_json_raw_export_gives_the_reference_writers_bytes(real: Env, tmp_path: Path) -> None:
    archive = _export(real, "fast")
    data = archive.read_bytes()
    files = {m.name: m.read() for m in iter_members(archive) if not m.is_dir}
    large = sorted(p for p, b in files.items() if len(b) >= FRAME_THRESHOLD)
    # Every shard of the three feeds is large enough to have been compressed while written.
    assert len(large) == 6, large
    assert _frame_count(data) == 2 * len(large) + 1
    # The tar stream: what the reference writer makes of the same files.
    plain = io.BytesIO()
    write_tree(plain, list(files.items()), compression="none")
    assert _unzstd(data) == plain.getvalue()
    # The compressed bytes: what write_tree makes of the files read from disk, any workers.
    on_disk = []
    for n, (path, content) in enumerate(sorted(files.items())):
        local = tmp_path / f"f{n}"
        local.write_bytes(content)
        on_disk.append((path, FileSource.from_path(local)))
    for threads in (1, 3):
        again = io.BytesIO()
        write_tree(again, on_disk, compression="zstd", level=10, threads=threads)
        assert again.getvalue() == data, threads


def test_bytes_do_not_depend_on_workers_tz_locale_umask_or_hashseed(
    real: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The zstd worker count follows the CPU count (frames compressed while staged and the
    ones between them); the environment is the usual suspects'."""
    profile = real.profile("env", compression={"algorithm": "zstd", "level": 10})
    digests = set()
    for cpus in (1, 2, 3):
        monkeypatch.setattr(os, "cpu_count", lambda n=cpus: n)
        out = run_export(real.settings, real.store, profile, tmp_path / str(cpus))
        digests.add(hashlib.sha256(out.bundle.archive_path.read_bytes()).hexdigest())
    monkeypatch.undo()
    assert len(digests) == 1
    child_env = {
        **os.environ,
        "STELLA_DATA_DIR": str(real.settings.data_dir),
        "TZ": "Pacific/Kiritimati",
        "LANG": "tr_TR.UTF-8",
        "LC_ALL": "tr_TR.UTF-8",
        "PYTHONHASHSEED": "12345",
    }
    stella = Path(sys.executable).with_name("stella")
    other = tmp_path / "other"
    subprocess.run(
        ["sh", "-c", f'umask 077 && exec "{stella}" export run env --out "{other}" --format json'],
        env=child_env,
        check=True,
        capture_output=True,
    )
    (again,) = other.glob("*.tar.zst")
    assert {hashlib.sha256(again.read_bytes()).hexdigest()} == digests


def test_verify_reads_the_bytes_an_independent_extraction_gives(real: Env, tmp_path: Path) -> None:
    tar = need_tool("tar")
    need_tool("zstd")
    archive = _export(real, "verify")
    report = verify_bundle(archive, load_trust_roots(real.trust_roots.read_bytes()))
    assert report.ok, report.as_json()
    assert [c.status for c in report.checks] == ["pass"] * len(report.checks)
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run([tar, "--zstd", "-xf", str(archive), "-C", str(dest)], check=True)
    independent = {
        p.relative_to(dest).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_size,
        )
        for p in dest.rglob("*")
        if p.is_file()
    }
    assert _collect_archive(archive, Limits()).digests == independent
    # The directory route (no read-ahead, no archive checks) agrees.
    assert verify_bundle(dest, load_trust_roots(real.trust_roots.read_bytes())).ok
