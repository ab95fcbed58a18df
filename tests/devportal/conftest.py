"""Fixtures for the devportal tests: a copy of the demo input, keys, a built bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from export_center.devportal import BuildOptions, build_bundle
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from support.devportal import DEMO, Key, copy_tree
from support.tools import missing


def _key(directory: Path, key_type: KeyType) -> Key:
    store = KeyStore(directory)
    info = store.generate(key_type)
    return Key(store.signer(info.keyid), info.public_path)


@pytest.fixture(scope="session")
def ed25519_key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    return _key(tmp_path_factory.mktemp("keys-ed25519"), KeyType.ED25519)


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    return _key(tmp_path_factory.mktemp("keys-other"), KeyType.ED25519)


@pytest.fixture(scope="session")
def ecdsa_key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    return _key(tmp_path_factory.mktemp("keys-ecdsa"), KeyType.ECDSA_P256)


@pytest.fixture
def demo_input(tmp_path: Path) -> Path:
    """A private copy of demo/devportal (without its profile.json)."""
    return copy_tree(DEMO, tmp_path / "input")


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory: pytest.TempPathFactory, ed25519_key: Key) -> bytes:
    """The demo bundle's bytes, signed with the session Ed25519 key."""
    base = tmp_path_factory.mktemp("demo-bundle")
    source = copy_tree(DEMO, base / "input")
    options = BuildOptions(metadata={"purpose": "tests"})
    result = build_bundle(source, base / "out", ed25519_key.signer, options)
    return result.path.read_bytes()


@pytest.fixture(scope="session")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        missing("openssl")
    assert path is not None
    return path
