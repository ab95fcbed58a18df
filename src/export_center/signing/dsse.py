"""DSSE v1 envelopes and detached archive signatures.

DSSE (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md) signs the
Pre-Authentication Encoding of the payload type and the payload bytes, never the JSON of the
envelope, so the envelope itself may be re-serialized without breaking signatures. We still write
it as RFC 8785 canonical JSON with signatures sorted by keyid, so that an Ed25519-signed envelope
is byte-identical between runs (docs/bundle-format.md, "Reproducible by design").
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

from export_center.errors import SigningError, VerificationError
from export_center.signing.interface import PublicKey, Signer, verify_signature

__all__ = [
    "detached_signature",
    "pae",
    "sign_envelope",
    "verify_detached_signature",
    "verify_envelope",
]

logger = logging.getLogger(__name__)

_CHECK = "dsse"
_ENVELOPE_FIELDS = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_FIELDS = frozenset({"keyid", "sig"})
_B64_STD = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")
_B64_URL = re.compile(rb"^[A-Za-z0-9_-]*={0,2}$")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, where LEN is the ASCII decimal byte
    length (of the UTF-8 encoded type, and of the payload) without leading zeros.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def sign_envelope(payload: bytes, payload_type: str, signers: Sequence[Signer]) -> bytes:
    """A DSSE envelope over ``payload``, signed by every signer, as RFC 8785 JSON bytes.

    ``payload`` and each ``sig`` are standard base64 with padding; signatures are sorted by
    keyid. With Ed25519 keys the result is deterministic.

    Raises:
        SigningError: no signer, two signers with the same key, or a signer failed.
    """
    if not signers:
        raise SigningError("a DSSE envelope needs at least one signer")
    keyids = [s.keyid for s in signers]
    if len(set(keyids)) != len(keyids):
        raise SigningError("the same key was given twice as a DSSE signer")
    message = pae(payload_type, payload)
    signatures: list[dict[str, str]] = sorted(
        ({"keyid": s.keyid, "sig": _b64(s.sign(message))} for s in signers),
        key=lambda sig: sig["keyid"],
    )
    envelope: dict[str, str | list[dict[str, str]]] = {
        "payloadType": payload_type,
        "payload": _b64(payload),
        "signatures": signatures,
    }
    return rfc8785.dumps(envelope)


def verify_envelope(
    envelope_bytes: bytes,
    trust_roots: Mapping[str, PublicKey],
    expected_payload_type: str,
    *,
    threshold: int = 1,
) -> bytes:
    """Verify a DSSE envelope and return its payload bytes.

    Passes only when signatures from at least ``threshold`` distinct trusted keys verify over
    PAE(payloadType, payload). A signature whose keyid names no trusted key is ignored (DSSE
    keyids are unauthenticated hints); one without a keyid is tried against every trusted key.
    Base64 may be standard or URL-safe, padded or not, as the DSSE spec allows.

    Raises:
        VerificationError: (check ``dsse``) no trust roots, malformed envelope, unexpected
            payload type, or too few valid signatures from trusted keys.
    """
    if not trust_roots:
        raise VerificationError(_CHECK, "no trust roots: refusing to verify against nothing")
    if threshold < 1:
        raise VerificationError(_CHECK, f"threshold must be at least 1, got {threshold}")
    payload_type, payload, signatures = _parse_envelope(envelope_bytes)
    if payload_type != expected_payload_type:
        raise VerificationError(
            _CHECK, f"payloadType is {payload_type!r}, expected {expected_payload_type!r}"
        )
    message = pae(payload_type, payload)
    verified: set[str] = set()
    for keyid, sig in signatures:
        if not keyid:
            candidates = list(trust_roots.items())
        elif keyid in trust_roots:
            candidates = [(keyid, trust_roots[keyid])]
        else:
            continue
        for root_id, key in candidates:
            if root_id not in verified and verify_signature(key, message, sig):
                verified.add(root_id)
                break
    if len(verified) < threshold:
        signed_by = ", ".join(sorted(k[:16] for k, _ in signatures if k)) or "no keyid"
        raise VerificationError(
            _CHECK,
            f"{len(verified)} valid signature(s) from trusted keys, {threshold} required "
            f"(envelope signed by: {signed_by})",
            hint="check that --trust-roots holds the public key that signed this bundle",
        )
    logger.debug("DSSE envelope verified by %s", sorted(verified))
    return payload


def detached_signature(signer: Signer, data: bytes) -> bytes:
    """The ``<archive>.sig`` sidecar: base64 (standard, padded) of ``signer.sign(data)``.

    For ECDSA P-256 that is base64 of the DER signature over SHA-256 of ``data``, exactly what
    ``cosign sign-blob --output-signature`` writes (no trailing newline), so ``cosign verify-blob
    --key pub.pem --signature <archive>.sig`` accepts it; ``openssl dgst -sha256 -verify pub.pem
    -signature sig.der`` needs the DER, i.e. the sidecar base64-decoded first
    (``base64 -d <archive>.sig > sig.der``). For Ed25519 it is base64 of the raw 64-byte
    signature (``openssl pkeyutl -verify -rawin`` on the decoded bytes).

    Raises:
        SigningError: the signer failed.
    """
    return _b64(signer.sign(data)).encode("ascii")


def verify_detached_signature(
    public_key: PublicKey, data: bytes, sidecar: bytes, *, where: str = "signature"
) -> None:
    """Check a ``.sig`` sidecar written by :func:`detached_signature` (surrounding ASCII
    whitespace, e.g. a trailing newline added by hand, is tolerated).

    Raises:
        VerificationError: (check ``signature``) not base64 or not a valid signature.
    """
    try:
        sig = base64.b64decode(sidecar.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerificationError("signature", f"{where}: not base64: {e}") from e
    if not verify_signature(public_key, data, sig):
        raise VerificationError("signature", f"{where}: signature does not verify")


# -- internals -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: str, what: str) -> bytes:
    raw = value.encode("ascii", errors="replace")
    if b"=" not in raw:  # the DSSE spec lets producers leave the padding out
        raw += b"=" * (-len(raw) % 4)
    try:
        if _B64_STD.match(raw):
            return base64.b64decode(raw, validate=True)
        if _B64_URL.match(raw):
            return base64.urlsafe_b64decode(raw)
    except (binascii.Error, ValueError) as e:
        raise VerificationError(_CHECK, f"{what} is not valid base64: {e}") from e
    raise VerificationError(_CHECK, f"{what} is not valid base64")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two "payload" members would let two parsers see two different payloads.
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member {k!r}")
        out[k] = v
    return out


def _parse_envelope(envelope_bytes: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    try:
        doc = json.loads(envelope_bytes, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise VerificationError(_CHECK, f"envelope is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise VerificationError(_CHECK, "envelope is not a JSON object")
    missing = sorted(_ENVELOPE_FIELDS - doc.keys())
    extra = sorted(doc.keys() - _ENVELOPE_FIELDS)
    if missing or extra:
        raise VerificationError(
            _CHECK, f"envelope fields: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    payload_type, payload_b64, raw_sigs = doc["payloadType"], doc["payload"], doc["signatures"]
    if not isinstance(payload_type, str) or not isinstance(payload_b64, str):
        raise VerificationError(_CHECK, "payloadType and payload must be strings")
    if not isinstance(raw_sigs, list) or not raw_sigs:
        raise VerificationError(_CHECK, "envelope has no signatures")
    signatures: list[tuple[str, bytes]] = []
    for n, item in enumerate(raw_sigs):
        if not isinstance(item, dict) or not item.keys() <= _SIGNATURE_FIELDS:
            raise VerificationError(_CHECK, f"signatures[{n}] must be an object {{keyid, sig}}")
        keyid, sig = item.get("keyid", ""), item.get("sig")
        if not isinstance(keyid, str) or not isinstance(sig, str):
            raise VerificationError(_CHECK, f"signatures[{n}]: keyid and sig must be strings")
        signatures.append((keyid, _b64decode(sig, f"signatures[{n}].sig")))
    return payload_type, _b64decode(payload_b64, "payload"), signatures
