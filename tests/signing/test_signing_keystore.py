"""The file key store: layout, modes, order, lookup, passphrases, tampering."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from export_center.errors import BadInputError, ConfigError, NotFoundError, SigningError
from export_center.settings import load_settings
from export_center.signing.interface import KeyType, keyid_of, load_public_key, verify_signature
from export_center.signing.keystore import KeyStore
from support.signing import openssl_keyid

FIXED = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_generate_writes_pair_with_exact_modes(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        info = KeyStore(tmp_path / "keys").generate(KeyType.ED25519)
    finally:
        os.umask(old)
    assert info.private_path == tmp_path / "keys" / f"{info.keyid}.key.pem"
    assert info.public_path == tmp_path / "keys" / f"{info.keyid}.pub.pem"
    assert stat.S_IMODE(info.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.public_path.stat().st_mode) == 0o644
    assert info.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert keyid_of(load_public_key(info.public_path.read_bytes())) == info.keyid


def test_keyid_matches_openssl(store: KeyStore, openssl: str) -> None:
    info = store.generate(KeyType.ECDSA_P256)
    assert openssl_keyid(openssl, info.public_path) == info.keyid
    assert store.export_public(info.keyid) == info.public_path.read_bytes()


def test_newest_is_decided_by_the_counter_not_the_clock(store: KeyStore) -> None:
    # Same timestamp for all three keys: only the counter orders them.
    infos = [store.generate(t, now=FIXED) for t in (KeyType.ECDSA_P256, KeyType.ED25519)]
    infos.append(store.generate(KeyType.ED25519, now=datetime(2000, 1, 1, tzinfo=UTC)))
    assert [k.seq for k in store.list()] == [1, 2, 3]
    assert [k.keyid for k in store.list()] == [i.keyid for i in infos]
    assert store.newest().keyid == infos[-1].keyid
    assert store.signer().keyid == infos[-1].keyid
    index = json.loads((store.directory / "index.json").read_text())
    assert index["nextSeq"] == 4
    assert index["version"] == 2
    assert index["keys"][0] == {
        "keyid": infos[0].keyid,
        "type": "ecdsa-p256",
        "seq": 1,
        "created": "2025-01-01T00:00:00Z",
        "encrypted": False,
        "backend": "file",
        "token": None,
        "object": None,
        "tenants": [],
    }


def test_concurrent_generate_loses_no_key(store: KeyStore) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                store.generate(KeyType.ED25519)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [k.seq for k in store.list()] == list(range(1, 13))
    assert len({k.keyid for k in store.list()}) == 12


def test_get_by_prefix_and_its_errors(store: KeyStore) -> None:
    infos = [store.generate(KeyType.ED25519) for _ in range(17)]
    # 17 keyids, 16 hex digits: two share a first digit.
    firsts = [i.keyid[0] for i in infos]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(BadInputError, match=f"keyid prefix '{shared}' is ambiguous"):
        store.get(shared)
    target = infos[5]
    assert store.get(target.keyid) == target
    assert store.get(target.keyid[:20].upper()) == target
    with pytest.raises(NotFoundError, match="no key 'ffffffffffffffffffff'") as err:
        store.get("f" * 20)
    assert "stella keys list" in err.value.diagnostics()
    with pytest.raises(BadInputError, match="expected hex digits"):
        store.get("not-hex")
    with pytest.raises(BadInputError, match="expected hex digits"):
        store.get("")


def test_empty_store(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "nothing-here")
    assert store.list() == ()
    with pytest.raises(NotFoundError, match="no signing key in") as err:
        store.newest()
    assert "stella keys generate" in err.value.diagnostics()
    with pytest.raises(NotFoundError):
        store.signer()
    assert not (tmp_path / "nothing-here").exists()  # reading creates nothing


def test_generate_into_out_dir(store: KeyStore, tmp_path: Path) -> None:
    info = store.generate(KeyType.ED25519, out_dir=tmp_path / "elsewhere")
    assert info.private_path.parent == tmp_path / "elsewhere"
    assert store.list() == ()
    assert KeyStore(tmp_path / "elsewhere").newest().keyid == info.keyid


def test_passphrase_protected_key(store: KeyStore) -> None:
    info = store.generate(KeyType.ECDSA_P256, passphrase="correct horse")
    assert info.encrypted
    assert info.private_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(SigningError, match="is passphrase-protected and no passphrase") as err:
        store.signer(info.keyid)
    assert "STELLA_KEY_PASSPHRASE" in err.value.diagnostics()
    with pytest.raises(SigningError, match="cannot decrypt the private key"):
        store.signer(info.keyid, passphrase="wrong")
    signer = store.signer(info.keyid, passphrase="correct horse")
    assert verify_signature(load_public_key(signer.public_key_pem()), b"d", signer.sign(b"d"))
    # From the environment through the settings, as the CLI and the worker use it.
    env = {"STELLA_DATA_DIR": str(store.directory.parent), "STELLA_KEY_PASSPHRASE": "correct horse"}
    env_store = KeyStore.from_settings(load_settings(env=env))
    assert env_store.directory == store.directory
    assert env_store.signer().keyid == info.keyid


def test_passphrase_is_ignored_for_unencrypted_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, passphrase="set globally")
    info = store.generate(KeyType.ED25519)
    assert store.signer().keyid == info.keyid


def test_empty_passphrase_is_refused(store: KeyStore) -> None:
    with pytest.raises(SigningError, match="empty passphrase"):
        store.generate(KeyType.ED25519, passphrase="")
    assert store.list() == ()


def test_swapped_key_file_is_detected(store: KeyStore) -> None:
    a = store.generate(KeyType.ED25519)
    b = store.generate(KeyType.ED25519)
    a.private_path.write_bytes(b.private_path.read_bytes())
    a.public_path.write_bytes(b.public_path.read_bytes())
    with pytest.raises(SigningError, match="file replaced"):
        store.signer(a.keyid)
    with pytest.raises(SigningError, match="file replaced"):
        store.export_public(a.keyid)


def test_missing_key_file(store: KeyStore) -> None:
    info = store.generate(KeyType.ED25519)
    info.private_path.unlink()
    with pytest.raises(NotFoundError, match=r"\.key\.pem is missing"):
        store.signer()


@pytest.mark.parametrize(
    "index",
    [
        "{not json",
        '{"version": 3, "nextSeq": 1, "keys": []}',
        '{"version": 1, "nextSeq": 1, "keys": [], "extra": 1}',
        '{"version": 1, "nextSeq": 1, "keys": [{"keyid": "'
        + "a" * 64
        + '", "type": "ed25519", "seq": 1, "created": "x", "encrypted": false}]}',
    ],
)
def test_bad_index_is_a_config_error(tmp_path: Path, index: str) -> None:
    (tmp_path / "index.json").write_text(index)
    with pytest.raises(ConfigError, match="key store index"):
        KeyStore(tmp_path).list()


def test_failed_write_leaves_no_half_pair(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from export_center.signing import keystore

    store.generate(KeyType.ED25519)
    before = sorted(p.name for p in store.directory.iterdir())

    def disk_full(path: Path, data: bytes, mode: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keystore, "_write_replace", disk_full)
    with pytest.raises(SigningError, match="No space left on device"):
        store.generate(KeyType.ED25519)
    assert sorted(p.name for p in store.directory.iterdir()) == before
    assert len(store.list()) == 1
