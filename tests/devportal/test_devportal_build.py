"""Building devportal:offline bundles: layout, manifest, determinism, refusals of the input."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rfc8785

from export_center.archive.writer import source_date_epoch
from export_center.devportal import BuildOptions, DevportalInputError, build_bundle, verify_bundle
from export_center.devportal.builder import write_bundle
from export_center.devportal.inputs import scan_input
from export_center.errors import BadInputError
from export_center.signing.interface import load_trust_roots
from support.devportal import DEMO, Key, unpack

ROOT_FILES = {
    "checksums.txt",
    "instructions-portable.txt",
    "manifest.dsse.json",
    "manifest.json",
    "verify-offline.sh",
}


def _build(src: Path, out: Path, key: Key, **options: object) -> bytes:
    result = build_bundle(src, out, key.signer, BuildOptions(**options))  # type: ignore[arg-type]
    return result.path.read_bytes()


# -- layout and manifest -------------------------------------------------------------------


def test_manifest_has_exactly_the_spec_fields(demo_bundle: bytes) -> None:
    files = unpack(demo_bundle)
    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == {
        "version",
        "bundleId",
        "generatedAt",
        "metadata",
        "sources",
        "totals",
        "entries",
    }
    assert manifest["version"] == "devportal-offline/v1"
    assert manifest["generatedAt"] == "2025-01-01T00:00:00Z"
    assert manifest["metadata"] == {"purpose": "tests"}
    assert manifest["sources"] == {
        "portalIncluded": True,
        "specsIncluded": True,
        "sdkNames": ["python"],
        "changelogIncluded": True,
    }
    entries = manifest["entries"]
    assert [e["path"] for e in entries] == sorted(e["path"] for e in entries)
    assert all(
        set(e) == {"category", "path", "sha256", "sizeBytes", "contentType"} for e in entries
    )
    by_path = {e["path"]: e for e in entries}
    assert by_path["specs/export-center.openapi.yaml"]["category"] == "specs"
    assert by_path["specs/export-center.openapi.yaml"]["contentType"] == "application/yaml"
    assert by_path["sdks/python/README.md"]["category"] == "sdk"
    assert by_path["portal/index.html"]["contentType"] == "text/html"
    for path, entry in by_path.items():
        assert entry["sha256"] == hashlib.sha256(files[path]).hexdigest()
        assert entry["sizeBytes"] == len(files[path])
    assert manifest["totals"] == {
        "entryCount": len(entries),
        "totalSizeBytes": sum(e["sizeBytes"] for e in entries),
    }
    # canonical JSON (RFC 8785), exactly what is signed
    assert rfc8785.dumps(manifest) == files["manifest.json"]
    content = set(files) - ROOT_FILES
    assert content == set(by_path)


def test_bundle_id_is_derived_from_the_content(
    demo_bundle: bytes, demo_input: Path, tmp_path: Path, other_key: Key
) -> None:
    first = json.loads(unpack(demo_bundle)["manifest.json"])
    # another key, time and metadata: same content, same id
    again = _build(demo_input, tmp_path / "a", other_key, source_date_epoch=1, metadata={"x": 1})
    assert json.loads(unpack(again)["manifest.json"])["bundleId"] == first["bundleId"]
    (demo_input / "changelog" / "CHANGELOG.md").write_text("changed\n")
    changed = _build(demo_input, tmp_path / "b", other_key)
    assert json.loads(unpack(changed)["manifest.json"])["bundleId"] != first["bundleId"]
    assert first["bundleId"].startswith("devportal-") and len(first["bundleId"]) == 42


def test_checksums_cover_every_file_but_itself(demo_bundle: bytes) -> None:
    files = unpack(demo_bundle)
    lines = files["checksums.txt"].decode().splitlines()
    listed = {line[66:]: line[:64] for line in lines}
    assert [line[66:] for line in lines] == sorted(listed)
    assert set(listed) == set(files) - {"checksums.txt"}
    for path, digest in listed.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest


def test_archive_members_are_normalized(demo_bundle: bytes) -> None:
    # gzip header: no file name flag, mtime 0
    assert demo_bundle[:3] == b"\x1f\x8b\x08"
    assert demo_bundle[3] & 0x08 == 0  # FNAME
    assert demo_bundle[4:8] == b"\0\0\0\0"
    raw = gzip.decompress(demo_bundle)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        members = tar.getmembers()
    # bytewise order of the archive names, a directory's with its trailing "/" (the shared
    # archive writer's rule: each directory sits right before its contents)
    names = [m.name + "/" if m.isdir() else m.name for m in members]
    assert names == sorted(names, key=lambda n: n.encode())
    dirs = {m.name for m in members if m.isdir()}
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == 1735689600
        parent = m.name.rsplit("/", 1)[0] if "/" in m.name else None
        assert parent is None or parent in dirs, f"{m.name}: parent directory not explicit"
        if m.isdir() or m.name == "verify-offline.sh":
            assert m.mode == 0o755
        else:
            assert m.isfile() and m.mode == 0o644
    assert {"portal", "portal/assets", "specs", "sdks", "sdks/python", "changelog"} <= dirs
    # USTAR magic of a POSIX (PAX-capable) archive
    assert raw[257:263] == b"ustar\x00"


def test_source_date_epoch_and_generated_at(
    demo_input: Path, tmp_path: Path, other_key: Key
) -> None:
    data = _build(demo_input, tmp_path / "a", other_key, source_date_epoch=1_700_000_000)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert {m.mtime for m in tar.getmembers()} == {1_700_000_000}
    assert json.loads(unpack(data)["manifest.json"])["generatedAt"] == "2023-11-14T22:13:20Z"
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    data = _build(demo_input, tmp_path / "b", other_key, generated_at=moment)
    assert json.loads(unpack(data)["manifest.json"])["generatedAt"] == "2026-03-01T12:00:00Z"
    assert source_date_epoch({}) == 1735689600
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "42"}) == 42
    with pytest.raises(BadInputError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})


def test_names_that_need_pax_records_and_tricky_order(tmp_path: Path, ed25519_key: Key) -> None:
    src = tmp_path / "in"
    deep = src / "portal" / ("d" * 60) / ("e" * 60)  # archive name over 100 bytes
    for d in (src / "portal" / "a", src / "portal" / "docs" / "ünïcode", deep):
        d.mkdir(parents=True)
    (src / "portal" / "a" / "x.html").write_text("<p>x</p>\n")
    (src / "portal" / "a-b.html").write_text("<p>y</p>\n")  # '-' sorts before '/'
    (src / "portal" / "docs" / "ünïcode" / "page.html").write_text("<p>u</p>\n")
    (deep / "file.txt").write_text("long\n")
    data = _build(src, tmp_path / "out", ed25519_key)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = [m.name + "/" if m.isdir() else m.name for m in tar.getmembers()]
    assert (
        names.index("portal/a-b.html") < names.index("portal/a/") < names.index("portal/a/x.html")
    )
    assert f"portal/{'d' * 60}/{'e' * 60}/file.txt" in names
    assert "portal/docs/ünïcode/page.html" in names
    files = unpack(data)
    assert files["portal/docs/ünïcode/page.html"] == b"<p>u</p>\n"
    report = verify_bundle(io.BytesIO(data), load_trust_roots(ed25519_key.public_pem.read_bytes()))
    assert report.entry_count == 4


def test_an_input_file_that_changes_during_the_build_is_refused(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    # The SDK files are not read by the content checks: only the archive writer sees them
    # again, and it checks them against the size and SHA-256 the manifest records.
    readme = demo_input / "sdks" / "python" / "README.md"
    tree = scan_input(demo_input)
    readme.write_bytes(readme.read_bytes().upper())
    with pytest.raises(
        DevportalInputError,
        match=r"input changed during the build: 'sdks/python/README\.md': the data does not hash",
    ):
        write_bundle(tree, ed25519_key.signer, BuildOptions(), io.BytesIO())
    readme.unlink()
    with pytest.raises(
        DevportalInputError,
        match=r"input changed during the build: sdks/python/README\.md: cannot open",
    ):
        write_bundle(tree, ed25519_key.signer, BuildOptions(), io.BytesIO())


# -- determinism ---------------------------------------------------------------------------


def test_built_twice_gives_identical_bytes(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    first = _build(demo_input, tmp_path / "one", ed25519_key)
    second = _build(demo_input, tmp_path / "two", ed25519_key)
    assert first == second


def test_file_metadata_and_creation_order_do_not_matter(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    reference = _build(demo_input, tmp_path / "ref", ed25519_key)
    # the same files written in reverse order, with other modes and mtimes
    other = tmp_path / "other"
    files = sorted((p for p in demo_input.rglob("*") if p.is_file()), reverse=True)
    for n, path in enumerate(files):
        target = other / path.relative_to(demo_input)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        target.chmod(0o600 if n % 2 else 0o755)
        os.utime(target, (1_000_000 + n, 2_000_000_000 - n))
    assert _build(other, tmp_path / "out", ed25519_key) == reference


def _build_in_subprocess(
    input_dir: Path, out: Path, data_dir: Path, *, tz: str, umask: int, lang: str
) -> bytes:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(out.parent),
        "STELLA_DATA_DIR": str(data_dir),
        "TZ": tz,
        "LC_ALL": lang,
        "LANG": lang,
        "PYTHONHASHSEED": str(umask),
    }
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from export_center.cli.main import main; main()",
            "devportal",
            "build",
            str(input_dir),
            "--out",
            str(out),
        ],
        env=env,
        umask=umask,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return (out / "devportal-offline-bundle.tgz").read_bytes()


@pytest.mark.slow
def test_identical_bytes_across_time_zone_umask_and_locale(
    demo_input: Path, tmp_path: Path
) -> None:
    from export_center.signing.interface import KeyType
    from export_center.signing.keystore import KeyStore

    data_dir = tmp_path / "data"
    store = KeyStore(data_dir / "keys")
    store.generate(KeyType.ED25519)
    a = _build_in_subprocess(
        demo_input, tmp_path / "a", data_dir, tz="Pacific/Kiritimati", umask=0o022, lang="C"
    )
    b = _build_in_subprocess(
        demo_input, tmp_path / "b", data_dir, tz="America/Adak", umask=0o077, lang="C.UTF-8"
    )
    assert a == b
    in_process = build_bundle(demo_input, tmp_path / "c", store.signer()).path.read_bytes()
    assert in_process == a


def test_ecdsa_signatures_vary_but_everything_else_is_reproducible(
    demo_input: Path, tmp_path: Path, ecdsa_key: Key
) -> None:
    a = unpack(_build(demo_input, tmp_path / "a", ecdsa_key))
    b = unpack(_build(demo_input, tmp_path / "b", ecdsa_key))
    differing = {p for p in a if a[p] != b[p]}
    assert differing <= {"manifest.dsse.json", "checksums.txt"}
    assert a["manifest.json"] == b["manifest.json"]


# -- the input tree ------------------------------------------------------------------------


def test_demo_input_is_accepted_with_its_openapi_spec(tmp_path: Path, ed25519_key: Key) -> None:
    result = build_bundle(DEMO, tmp_path / "out", ed25519_key.signer)
    assert result.openapi_documents == ("specs/export-center.openapi.yaml",)
    assert [s.path for s in result.skipped] == ["profile.json"]  # reported, not bundled
    assert "profile.json" not in unpack(result.path.read_bytes())


def test_any_category_may_be_absent(tmp_path: Path, ed25519_key: Key) -> None:
    src = tmp_path / "in"
    (src / "changelog").mkdir(parents=True)
    (src / "changelog" / "CHANGES.md").write_text("# 1.0\n")
    data = _build(src, tmp_path / "out", ed25519_key)
    manifest = json.loads(unpack(data)["manifest.json"])
    assert manifest["sources"] == {
        "portalIncluded": False,
        "specsIncluded": False,
        "sdkNames": [],
        "changelogIncluded": True,
    }


def test_empty_input_is_refused(tmp_path: Path, ed25519_key: Key) -> None:
    (tmp_path / "in" / "portal").mkdir(parents=True)
    (tmp_path / "in" / "README").write_text("x")
    with pytest.raises(DevportalInputError, match="nothing to bundle"):
        build_bundle(tmp_path / "in", tmp_path / "out", ed25519_key.signer)
    assert not (tmp_path / "out" / "devportal-offline-bundle.tgz").exists()


def test_symlinks_are_refused(demo_input: Path, tmp_path: Path, ed25519_key: Key) -> None:
    (demo_input / "portal" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(DevportalInputError, match=r"portal/passwd: symbolic links"):
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)


def test_sdk_files_need_a_named_directory(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    (demo_input / "sdks" / "loose.whl").write_bytes(b"PK")
    with pytest.raises(DevportalInputError, match=r"sdks/loose.whl: SDK files belong in"):
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)


@pytest.mark.parametrize("name", ['quote".html', "back\\slash.html", "new\nline.html"])
def test_unsafe_file_names_are_refused(
    demo_input: Path, tmp_path: Path, ed25519_key: Key, name: str
) -> None:
    (demo_input / "portal" / name).write_text("<p>x</p>")
    with pytest.raises(DevportalInputError, match="file names must not contain"):
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)


def test_names_that_collide_on_case_insensitive_file_systems_are_refused(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    # Extracted on macOS or Windows one would overwrite the other; the archive writer refuses.
    (demo_input / "portal" / "INDEX.html").write_text("<p>x</p>")
    with pytest.raises(BadInputError, match=r"'portal/index\.html': collides with"):
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)
    assert not (tmp_path / "out" / "devportal-offline-bundle.tgz").exists()


def test_a_refused_build_keeps_the_previous_bundle(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    good = _build(demo_input, tmp_path / "out", ed25519_key)
    (demo_input / "portal" / "bad.css").write_text("@import 'https://cdn.example/x.css';\n")
    with pytest.raises(BadInputError):
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)
    assert (tmp_path / "out" / "devportal-offline-bundle.tgz").read_bytes() == good
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["devportal-offline-bundle.tgz"]
