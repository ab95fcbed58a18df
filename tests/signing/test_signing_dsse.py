"""DSSE envelopes and detached signatures, checked against independent implementations."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from export_center.errors import SigningError, VerificationError
from export_center.signing.dsse import (
    detached_signature,
    pae,
    sign_envelope,
    verify_detached_signature,
    verify_envelope,
)
from export_center.signing.interface import KeyType, PublicKey, load_trust_roots
from export_center.signing.keyfile import FileSigner, generate_private_key
from support.signing import openssl_verify

MANIFEST_TYPE = "application/vnd.stellaops.export-manifest+json"
INTOTO_TYPE = "application/vnd.in-toto+json"
PAYLOAD = b'{"schema":"https://stellaops.io/export-center/manifest/v1"}'


def _signer(key_type: KeyType) -> FileSigner:
    return FileSigner(generate_private_key(key_type))


def _roots(*signers: FileSigner) -> dict[str, PublicKey]:
    return {s.keyid: s.public_key for s in signers}


def _sslib_key(signer: FileSigner) -> SSlibKey:
    return SSlibKey.from_crypto(signer.public_key, keyid=signer.keyid)


def test_pae_matches_the_spec_example() -> None:
    # The worked example of the DSSE v1 protocol document.
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    # Lengths are of the UTF-8 bytes; an empty body is "0" followed by the separator.
    assert pae("t\u00e9", b"") == b"DSSEv1 3 t\xc3\xa9 0 "


@pytest.mark.parametrize("key_type", list(KeyType))
def test_envelope_round_trip_and_securesystemslib_agrees(key_type: KeyType) -> None:
    signer = _signer(key_type)
    envelope = sign_envelope(PAYLOAD, MANIFEST_TYPE, [signer])
    assert verify_envelope(envelope, _roots(signer), MANIFEST_TYPE) == PAYLOAD

    doc = json.loads(envelope)
    assert list(doc) == ["payload", "payloadType", "signatures"]  # RFC 8785 order
    assert base64.b64decode(doc["payload"], validate=True) == PAYLOAD
    parsed = Envelope.from_dict(doc)
    assert parsed.payload == PAYLOAD and parsed.payload_type == MANIFEST_TYPE
    accepted = parsed.verify([_sslib_key(signer)], 1)
    assert list(accepted) == [signer.keyid]

    wrong = _signer(key_type)
    with pytest.raises(SslibVerificationError):
        Envelope.from_dict(json.loads(envelope)).verify(
            [SSlibKey.from_crypto(wrong.public_key, keyid=signer.keyid)], 1
        )


@pytest.mark.parametrize("key_type", list(KeyType))
def test_envelope_made_by_securesystemslib_verifies_here(key_type: KeyType) -> None:
    key = generate_private_key(key_type)
    mine = FileSigner(key)
    sslib_signer = CryptoSigner(key, _sslib_key(mine))
    envelope = Envelope(PAYLOAD, INTOTO_TYPE, {})
    envelope.sign(sslib_signer)
    raw = json.dumps(envelope.to_dict()).encode()
    assert verify_envelope(raw, _roots(mine), INTOTO_TYPE) == PAYLOAD


def test_multiple_signers_sorted_by_keyid_and_threshold() -> None:
    signers = [_signer(KeyType.ED25519), _signer(KeyType.ECDSA_P256), _signer(KeyType.ED25519)]
    envelope = sign_envelope(PAYLOAD, MANIFEST_TYPE, signers)
    keyids = [s["keyid"] for s in json.loads(envelope)["signatures"]]
    assert keyids == sorted(s.keyid for s in signers)
    # One trusted key is enough by default ...
    assert verify_envelope(envelope, _roots(signers[1]), MANIFEST_TYPE) == PAYLOAD
    # ... a threshold counts distinct trusted keys.
    assert verify_envelope(envelope, _roots(*signers), MANIFEST_TYPE, threshold=3) == PAYLOAD
    with pytest.raises(VerificationError, match="1 valid signature"):
        verify_envelope(envelope, _roots(signers[0]), MANIFEST_TYPE, threshold=2)
    Envelope.from_dict(json.loads(envelope)).verify([_sslib_key(s) for s in signers], 3)


def test_ed25519_envelope_is_byte_identical_golden() -> None:
    # Fixed key, fixed payload: RFC 8785 + Ed25519 make the bytes stable on any machine.
    signer = FileSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    envelope = sign_envelope(b'{"schema":"x"}', MANIFEST_TYPE, [signer])
    assert envelope == (
        b'{"payload":"eyJzY2hlbWEiOiJ4In0=","payloadType":"application/vnd.stellaops.export-'
        b'manifest+json","signatures":[{"keyid":"a050837d85070582ccf7394b0988847cc312cb88259b'
        b'894899f6f239cf1791a5","sig":"bCE28BMQl2oLhEWjgCGlZ0mQK7w1Ko4VsET/GOlB+Kg8qSi14byNfBa'
        b'JtmwttMvphJwUoJcgNrOzbdRR9LAWCA=="}]}'
    )
    assert sign_envelope(b'{"schema":"x"}', MANIFEST_TYPE, [signer]) == envelope


def test_signing_refuses_no_signer_or_duplicates() -> None:
    key = generate_private_key(KeyType.ED25519)
    with pytest.raises(SigningError, match="at least one signer"):
        sign_envelope(PAYLOAD, MANIFEST_TYPE, [])
    with pytest.raises(SigningError, match="same key was given twice"):
        sign_envelope(PAYLOAD, MANIFEST_TYPE, [FileSigner(key), FileSigner(key)])


def _mutate(envelope: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(envelope)
    change(doc)
    return json.dumps(doc).encode()


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.__setitem__(key, value)


def _tamper_payload(d: dict[str, Any]) -> None:
    d["payload"] = base64.b64encode(PAYLOAD.replace(b"v1", b"v2")).decode()


def _tamper_sig(d: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(d["signatures"][0]["sig"]))
    sig[-1] ^= 1
    d["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


@pytest.mark.parametrize("key_type", list(KeyType))
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_tamper_payload, "0 valid signature"),
        (_tamper_sig, "0 valid signature"),
        (_set("payloadType", INTOTO_TYPE), "payloadType is 'application/vnd.in-toto"),
        (_set("signatures", []), "envelope has no signatures"),
        (lambda d: d.pop("signatures"), r"missing \['signatures'\]"),
        (_set("extra", 1), r"unexpected \['extra'\]"),
        (_set("payload", "***"), "payload is not valid base64"),
        (_set("signatures", [{"keyid": "x", "sig": 5}]), "must be strings"),
        (_set("signatures", [{"sig": "AA==", "cert": "x"}]), "must be an object"),
        (_set("payloadType", 7), "must be strings"),
    ],
)
def test_bad_envelopes_fail(
    key_type: KeyType, change: Callable[[dict[str, Any]], None], match: str
) -> None:
    signer = _signer(key_type)
    envelope = _mutate(sign_envelope(PAYLOAD, MANIFEST_TYPE, [signer]), change)
    with pytest.raises(VerificationError, match=match) as err:
        verify_envelope(envelope, _roots(signer), MANIFEST_TYPE)
    assert err.value.check == "dsse"


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b'"x"', b'{"payload":"", "payload":"", "payloadType":"", '],
)
def test_malformed_json_fails(raw: bytes) -> None:
    signer = _signer(KeyType.ED25519)
    with pytest.raises(VerificationError, match="envelope is not"):
        verify_envelope(raw, _roots(signer), MANIFEST_TYPE)


def test_duplicate_members_are_refused() -> None:
    signer = _signer(KeyType.ED25519)
    env = sign_envelope(PAYLOAD, MANIFEST_TYPE, [signer]).decode()
    doubled = env.replace('{"payload":', '{"payload":"e30=","payload":', 1).encode()
    with pytest.raises(VerificationError, match="duplicate member 'payload'"):
        verify_envelope(doubled, _roots(signer), MANIFEST_TYPE)


def test_wrong_key_and_empty_trust_roots_fail() -> None:
    signer, other = _signer(KeyType.ED25519), _signer(KeyType.ED25519)
    envelope = sign_envelope(PAYLOAD, MANIFEST_TYPE, [signer])
    with pytest.raises(VerificationError, match="0 valid signature") as err:
        verify_envelope(envelope, _roots(other), MANIFEST_TYPE)
    assert "--trust-roots" in err.value.diagnostics()
    with pytest.raises(VerificationError, match="no trust roots"):
        verify_envelope(envelope, {}, MANIFEST_TYPE)
    # A trusted key presented under the signer's keyid is still checked cryptographically.
    with pytest.raises(VerificationError, match="0 valid signature"):
        verify_envelope(envelope, {signer.keyid: other.public_key}, MANIFEST_TYPE)


def test_keyid_is_a_hint_only() -> None:
    signer = _signer(KeyType.ECDSA_P256)
    envelope = sign_envelope(PAYLOAD, MANIFEST_TYPE, [signer])

    def drop_keyid(d: dict[str, Any]) -> None:
        del d["signatures"][0]["keyid"]

    # No keyid: every trusted key is tried.
    assert verify_envelope(_mutate(envelope, drop_keyid), _roots(signer), MANIFEST_TYPE) == PAYLOAD

    # URL-safe, unpadded base64 is accepted too (DSSE allows both).
    def urlsafe(d: dict[str, Any]) -> None:
        d["payload"] = base64.urlsafe_b64encode(PAYLOAD).decode().rstrip("=")

    assert verify_envelope(_mutate(envelope, urlsafe), _roots(signer), MANIFEST_TYPE) == PAYLOAD


def test_trust_roots_file_end_to_end() -> None:
    signer = _signer(KeyType.ED25519)
    roots = load_trust_roots(signer.public_key_pem())
    envelope = sign_envelope(PAYLOAD, MANIFEST_TYPE, [signer])
    assert verify_envelope(envelope, roots, MANIFEST_TYPE) == PAYLOAD


@pytest.mark.parametrize("key_type", list(KeyType))
def test_detached_signature_verifies_with_openssl(
    key_type: KeyType, tmp_path: Path, openssl: str
) -> None:
    signer = _signer(key_type)
    data = tmp_path / "bundle.tar.zst"
    data.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 64)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(signer.public_key_pem())

    sidecar = detached_signature(signer, data.read_bytes())
    assert not sidecar.endswith(b"\n")  # as cosign sign-blob --output-signature writes it
    raw = base64.b64decode(sidecar, validate=True)
    if key_type is KeyType.ECDSA_P256:
        assert raw[0] == 0x30  # DER SEQUENCE
    else:
        assert len(raw) == 64
    ok = openssl_verify(openssl, key_type, pub, data, sidecar)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    verify_detached_signature(signer.public_key, data.read_bytes(), sidecar + b"\n")
    tampered = data.read_bytes() + b"x"
    data.write_bytes(tampered)
    bad = openssl_verify(openssl, key_type, pub, data, sidecar)
    assert bad.returncode != 0
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_detached_signature(signer.public_key, tampered, sidecar, where="x.sig")
    with pytest.raises(VerificationError, match=r"x\.sig: not base64"):
        verify_detached_signature(signer.public_key, tampered, b"%%%", where="x.sig")
