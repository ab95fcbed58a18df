"""The PKCS#11 backend against a real SoftHSM2 token (fails, not skips, in CI without it)."""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import cast

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from export_center.errors import ConfigError, NotFoundError, SigningError
from export_center.signing.dsse import detached_signature, sign_envelope, verify_envelope
from export_center.signing.interface import (
    KeyType,
    load_trust_roots,
    verify_signature,
)
from export_center.signing.pkcs11 import Pkcs11Config, Pkcs11Signer
from export_center.signing.registry import create_signer
from support.signing import SoftHsm, openssl_keyid, openssl_verify
from support.tools import missing

LABELS = {KeyType.ECDSA_P256: "p256", KeyType.ED25519: "ed25519"}


def _signer(hsm: SoftHsm, key_type: KeyType) -> Pkcs11Signer:
    if key_type is KeyType.ED25519 and not hsm.eddsa:
        missing("CKM_EDDSA in SoftHSM (SoftHSM >= 2.6 built with EdDSA support)")
    return Pkcs11Signer(Pkcs11Config(hsm.module, hsm.token, LABELS[key_type], pin=hsm.pin))


@pytest.mark.parametrize("key_type", list(KeyType))
def test_token_signature_verifies_with_cryptography_and_openssl(
    softhsm: SoftHsm, key_type: KeyType, tmp_path: Path, openssl: str
) -> None:
    signer = _signer(softhsm, key_type)
    assert signer.key_type is key_type
    pub = tmp_path / "pub.pem"
    pub.write_bytes(signer.public_key_pem())
    assert signer.keyid == openssl_keyid(openssl, pub)

    data = b"archive bytes \x00\x01" * 1000
    sig = signer.sign(data)
    public = serialization.load_pem_public_key(pub.read_bytes())
    if key_type is KeyType.ECDSA_P256:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(sig, data, ec.ECDSA(hashes.SHA256()))  # DER, over SHA-256(data)
    else:
        assert isinstance(public, Ed25519PublicKey)
        public.verify(sig, data)
        assert signer.sign(data) == sig  # Ed25519 is deterministic on the token too

    blob = tmp_path / "blob.bin"
    blob.write_bytes(data)
    result = openssl_verify(openssl, key_type, pub, blob, detached_signature(signer, data))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("key_type", list(KeyType))
def test_token_signed_dsse_envelope(softhsm: SoftHsm, key_type: KeyType) -> None:
    signer = _signer(softhsm, key_type)
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    envelope = sign_envelope(payload, "application/vnd.in-toto+json", [signer])
    roots = load_trust_roots(signer.public_key_pem())
    assert verify_envelope(envelope, roots, "application/vnd.in-toto+json") == payload
    key = SSlibKey.from_crypto(roots[signer.keyid], keyid=signer.keyid)
    Envelope.from_dict(json.loads(envelope)).verify([key], 1)


def test_uri_and_pin_through_the_registry(softhsm: SoftHsm) -> None:
    # The PIN is the caller's (the settings' STELLA_PKCS11_PIN): the signer reads no environment.
    uri = f"pkcs11:token={softhsm.token};object=p256;type=private?module-path={softhsm.module}"
    signer = create_signer("pkcs11", {"uri": uri, "pin": softhsm.pin})
    assert signer.key_type is KeyType.ECDSA_P256
    same = create_signer(
        "pkcs11",
        {"module": softhsm.module, "token": softhsm.token, "key_label": "p256", "pin": softhsm.pin},
    )
    assert same.keyid == signer.keyid


def test_wrong_or_missing_pin(softhsm: SoftHsm) -> None:
    config = Pkcs11Config(softhsm.module, softhsm.token, "p256", pin="0000")
    with pytest.raises(SigningError, match="wrong user PIN") as err:
        Pkcs11Signer(config)
    assert "STELLA_PKCS11_PIN" in err.value.diagnostics()
    with pytest.raises(SigningError, match="no user PIN"):
        Pkcs11Signer(Pkcs11Config(softhsm.module, softhsm.token, "p256"))


def test_unknown_token_or_key(softhsm: SoftHsm) -> None:
    with pytest.raises(NotFoundError, match="no PKCS#11 token labelled 'nope'"):
        Pkcs11Signer(Pkcs11Config(softhsm.module, "nope", "p256", pin=softhsm.pin))
    with pytest.raises(NotFoundError, match="key 'nope': no private key object"):
        Pkcs11Signer(Pkcs11Config(softhsm.module, softhsm.token, "nope", pin=softhsm.pin))


def test_missing_module(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="does not exist"):
        Pkcs11Signer(Pkcs11Config(str(tmp_path / "no.so"), "t", "k", pin="1"))


def test_uri_parsing() -> None:
    config = Pkcs11Config.from_uri(
        "pkcs11:token=My%20Token;object=release%2Fkey?module-path=/usr/lib/x.so"
    )
    assert config == Pkcs11Config("/usr/lib/x.so", "My Token", "release/key")
    assert "secret" not in repr(Pkcs11Config("m", "t", "k", pin="secret"))
    for bad, match in [
        ("pkcs12:token=a", "must start with 'pkcs11:'"),
        ("pkcs11:token=a;object=b?module-path=m&pin-value=1", "PIN in the URI is refused"),
        ("pkcs11:token=a;object=b;id=%01?module-path=m", "unsupported attribute"),
        ("pkcs11:token=a;object=b;type=public?module-path=m", "type must be 'private'"),
        ("pkcs11:token=a?module-path=m", "object is required"),
        ("pkcs11:token=a;token=b;object=c?module-path=m", "repeated attribute"),
    ]:
        with pytest.raises(ConfigError, match=match):
            Pkcs11Config.from_uri(bad)


@pytest.mark.parametrize("key_type", list(KeyType))
def test_token_signs_an_mmap_in_one_part(
    softhsm: SoftHsm, key_type: KeyType, tmp_path: Path
) -> None:
    # The bundle writer hands the archive over as an mmap; python-pkcs11 would take any
    # non-bytes iterable for a multi-part operation.
    signer = _signer(softhsm, key_type)
    blob = tmp_path / "archive.bin"
    blob.write_bytes(b"\x01\x02" * 5000)
    with blob.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        sig = signer.sign(cast(bytes, mm))
    assert verify_signature(signer.public_key, blob.read_bytes(), sig)
