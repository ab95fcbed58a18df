"""Public keys, keyids and trust roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from export_center.errors import ConfigError, VerificationError
from export_center.signing.interface import (
    KeyType,
    keyid_of,
    load_trust_roots,
    verify_signature,
)
from export_center.signing.keyfile import FileSigner, generate_private_key
from export_center.signing.keystore import KeyStore
from export_center.signing.registry import SignerBackend, create_signer
from support.signing import openssl_keyid


@pytest.mark.parametrize("key_type", list(KeyType))
def test_keyid_is_sha256_of_spki_der_as_openssl_writes_it(
    key_type: KeyType, tmp_path: Path, openssl: str
) -> None:
    signer = FileSigner(generate_private_key(key_type))
    pub = tmp_path / "pub.pem"
    pub.write_bytes(signer.public_key_pem())
    assert signer.keyid == openssl_keyid(openssl, pub)
    assert len(signer.keyid) == 64 and signer.keyid == signer.keyid.lower()
    assert signer.key_type is key_type


def test_trust_roots_file_with_several_keys() -> None:
    a = FileSigner(generate_private_key(KeyType.ED25519))
    b = FileSigner(generate_private_key(KeyType.ECDSA_P256))
    text = b"comment lines are fine\n" + a.public_key_pem() + b"\n" + b.public_key_pem()
    roots = load_trust_roots(text + a.public_key_pem())  # a duplicate collapses
    assert sorted(roots) == sorted([a.keyid, b.keyid])
    assert keyid_of(roots[b.keyid]) == b.keyid


@pytest.mark.parametrize("content", [b"", b"\n", b"not a key at all\n"])
def test_empty_trust_roots_fail_closed(content: bytes) -> None:
    with pytest.raises(VerificationError, match="no PEM public key found") as err:
        load_trust_roots(content, where="roots.pem")
    assert err.value.check == "trust-roots"
    assert "roots.pem" in str(err.value)


def _self_signed_cert() -> bytes:
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    when = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(when)
        .not_valid_after(when + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_public(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: generate_private_key(KeyType.ED25519).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "is a 'PRIVATE KEY'",
        ),
        (_self_signed_cert, "is a 'CERTIFICATE'"),
        (
            lambda: _pem_public(rsa.generate_private_key(65537, 2048).public_key()),
            "unsupported public key",
        ),
        (
            lambda: _pem_public(ec.generate_private_key(ec.SECP384R1()).public_key()),
            "unsupported public key",
        ),
        (
            lambda: b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not a PEM public key",
        ),
    ],
)
def test_trust_roots_refuse_anything_but_supported_public_keys(make: object, match: str) -> None:
    good = FileSigner(generate_private_key(KeyType.ED25519)).public_key_pem()
    assert callable(make)
    with pytest.raises(VerificationError, match=match):
        load_trust_roots(good + make())


@pytest.mark.parametrize("key_type", list(KeyType))
def test_verify_signature(key_type: KeyType) -> None:
    signer = FileSigner(generate_private_key(key_type))
    other = FileSigner(generate_private_key(key_type))
    sig = signer.sign(b"data")
    assert verify_signature(signer.public_key, b"data", sig)
    assert not verify_signature(signer.public_key, b"datA", sig)
    assert not verify_signature(other.public_key, b"data", sig)
    assert not verify_signature(signer.public_key, b"data", b"\x30\x02garbage")
    assert not verify_signature(signer.public_key, b"data", b"")


def test_ed25519_signatures_are_deterministic() -> None:
    signer = FileSigner(generate_private_key(KeyType.ED25519))
    assert signer.sign(b"x") == signer.sign(b"x")
    assert len(signer.sign(b"x")) == 64


def test_registry_builds_a_file_signer(tmp_path: Path) -> None:
    info = KeyStore(tmp_path).generate(KeyType.ED25519)
    signer = create_signer("file", {"key_dir": str(tmp_path)})
    assert signer.keyid == info.keyid
    assert set(SignerBackend) == {"file", "pkcs11"}


def test_registry_refuses_unknown_backend_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown signer backend 'kms'; choose one of file"):
        create_signer("kms", {})
    with pytest.raises(ConfigError, match="key_dir is required"):
        create_signer("file", {})
    with pytest.raises(ConfigError, match="unknown setting"):
        create_signer("file", {"key_dir": str(tmp_path), "keyfile": "x"})
    with pytest.raises(ConfigError, match="missing setting"):
        create_signer("pkcs11", {"token": "t"})
