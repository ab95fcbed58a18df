"""The bundle's TUF metadata, checked by python-tuf's own client: an ``ngclient.Updater`` given only
the trusted root, pointed at a plain HTTP server on 127.0.0.1 serving the extracted bundle."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tuf.api.exceptions import ExpiredMetadataError, LengthOrHashMismatchError
from tuf.ngclient import Updater

from export_center.errors import VerificationError
from export_center.mirror.options import TufOptions
from export_center.mirror.tuf import build_tuf_metadata, verify_tuf_metadata
from export_center.signing.interface import KeyType
from export_center.signing.keyfile import FileSigner
from support.mirror import Instance, advisory, extract, new_signer, retuf


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(root: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(root))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _bundle(
    make_instance: Callable[..., Instance], tmp_path: Path, signer: FileSigner, **options: object
) -> Path:
    a = make_instance("A")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(25)))
    a.put("other", advisory("OTHER-1"))
    body = {"kind": "mirror", "variant": "full", "options": options}
    built = a.export(a.profile("tuf-full", body), signer)
    return extract(built.archive_path, tmp_path / "served")


def _updater(bundle: Path, url: str, tmp_path: Path) -> Updater:
    meta, targets = tmp_path / "client-meta", tmp_path / "client-targets"
    meta.mkdir(exist_ok=True)
    targets.mkdir(exist_ok=True)
    return Updater(
        metadata_dir=str(meta),
        metadata_base_url=url + "tuf/",
        target_dir=str(targets),
        target_base_url=url,
        bootstrap=(bundle / "tuf" / "root.json").read_bytes(),
    )


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.ECDSA_P256])
def test_ngclient_verifies_and_downloads_every_target(
    key_type: KeyType,
    make_instance: Callable[..., Instance],
    tmp_path: Path,
    serve: Callable[[Path], str],
) -> None:
    bundle = _bundle(make_instance, tmp_path, new_signer(key_type))
    url = serve(bundle)
    updater = _updater(bundle, url, tmp_path)
    updater.refresh()
    data_files = sorted(
        p.relative_to(bundle).as_posix() for p in (bundle / "data").rglob("*") if p.is_file()
    )
    assert len(data_files) >= 7
    for path in data_files:
        info = updater.get_targetinfo(path)
        assert info is not None, path
        local = Path(updater.download_target(info))
        assert local.read_bytes() == (bundle / path).read_bytes()
    assert updater.get_targetinfo("README.txt") is None  # only data/ is a target


def test_ngclient_refuses_an_expired_timestamp(
    make_instance: Callable[..., Instance], tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    bundle = _bundle(
        make_instance,
        tmp_path,
        new_signer(),
        tuf={"expires": {"timestamp": "2001-01-01T00:00:00Z"}},
    )
    updater = _updater(bundle, serve(bundle), tmp_path)
    with pytest.raises(ExpiredMetadataError, match="timestamp"):
        updater.refresh()


def test_ngclient_refuses_a_modified_target(
    make_instance: Callable[..., Instance], tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    bundle = _bundle(make_instance, tmp_path, new_signer())
    shard = bundle / "data/indexes/advisories.index.json"
    shard.write_bytes(shard.read_bytes().replace(b"ADV-1", b"ADV-X", 1))
    updater = _updater(bundle, serve(bundle), tmp_path)
    updater.refresh()
    info = updater.get_targetinfo("data/indexes/advisories.index.json")
    assert info is not None
    with pytest.raises(LengthOrHashMismatchError):
        updater.download_target(info)


def test_ngclient_follows_root_versions_across_exports(
    tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    """Root versions follow a fixed schedule; a client that trusts version 1 chains to 3."""
    signer = new_signer()
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    opts = TufOptions.model_validate({"expires": {"root": 30}})
    targets = {"data/x": ("0" * 64, 0)}
    first = build_tuf_metadata(
        targets, signer, as_of=anchor, version=1, options=opts, root_anchor=anchor
    )
    later = build_tuf_metadata(
        targets,
        signer,
        as_of=anchor + timedelta(days=65),
        version=9,
        options=opts,
        root_anchor=anchor,
    )
    assert sorted(p for p in later if "root" in p) == [
        "tuf/1.root.json",
        "tuf/2.root.json",
        "tuf/3.root.json",
        "tuf/root.json",
    ]
    assert later["tuf/1.root.json"] == first["tuf/root.json"]
    now = anchor + timedelta(days=66)
    got = verify_tuf_metadata(first["tuf/root.json"], later, {"data/x": ("0" * 64, 0)}, now)
    assert got.root_version == 3
    # Another key's chain does not verify against the trusted root.
    other = build_tuf_metadata(
        targets,
        new_signer(),
        as_of=anchor + timedelta(days=65),
        version=9,
        options=opts,
        root_anchor=anchor,
    )
    with pytest.raises(VerificationError, match="root v2 is not signed by root v1"):
        verify_tuf_metadata(first["tuf/root.json"], other, {"data/x": ("0" * 64, 0)}, now)


def test_verify_tuf_metadata_checks_targets_and_expiry(tmp_path: Path) -> None:
    signer = new_signer()
    at = datetime(2026, 5, 1, tzinfo=UTC)
    opts = TufOptions()
    targets = {"data/a": ("a" * 64, 3), "data/b": ("b" * 64, 4)}
    files = build_tuf_metadata(targets, signer, as_of=at, version=5, options=opts)
    root = files["tuf/root.json"]
    assert verify_tuf_metadata(root, files, targets, at).targets == 2
    with pytest.raises(VerificationError, match="not a TUF target: data/c"):
        verify_tuf_metadata(root, files, {**targets, "data/c": ("c" * 64, 1)}, at)
    with pytest.raises(VerificationError, match="data/a: length or sha256"):
        verify_tuf_metadata(root, files, {**targets, "data/a": ("d" * 64, 3)}, at)
    with pytest.raises(VerificationError, match=r"timestamp\.json expired"):
        verify_tuf_metadata(root, files, targets, at + timedelta(days=15))
    tampered = dict(files)
    tampered["tuf/snapshot.json"] = files["tuf/snapshot.json"].replace(
        b'"version":5', b'"version":6'
    )
    with pytest.raises(VerificationError, match=r"snapshot\.json vs timestamp"):
        verify_tuf_metadata(root, tampered, targets, at)


def test_retuf_helper_signs_with_another_key(
    make_instance: Callable[..., Instance], tmp_path: Path
) -> None:
    bundle = _bundle(make_instance, tmp_path, new_signer())
    original = (bundle / "tuf/root.json").read_bytes()
    retuf(bundle, new_signer())
    assert (bundle / "tuf/root.json").read_bytes() != original
