"""TUF metadata over a mirror bundle's ``data/``: written with python-tuf's metadata API, signed
through our :class:`~export_center.signing.interface.Signer`, and verified on bytes.

Writing (:func:`build_tuf_metadata`): one key (the export's signing key) holds every top-level
role with threshold 1; ``consistent_snapshot`` is off, so a plain static copy of the bundle is a
valid TUF repository (``tuf/`` is the metadata URL, the bundle root the target URL). Versions of
targets, snapshot and timestamp are the export's as-of sequence (monotonic, deterministic); root
versions follow a fixed schedule from the tenant's first change (:func:`_root_chain`), and every
version is in the bundle as ``tuf/<version>.root.json``. Expiry comes from the profile, relative to
the as-of time, never from the wall clock, so the metadata is byte-identical on a rerun (Ed25519).

Verification (:func:`verify_tuf_metadata`) is a pure function of bytes and a reference time:
the trusted root (distributed out of band, or the one the previous import installed), the
bundle's four role files and the digests of the files under ``data/``. It applies the TUF
client workflow's checks: root chaining (one version step), signature thresholds, expiry,
snapshot/targets versions, lengths and hashes, and that the targets are exactly ``data/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Both libraries re-export these names without __all__; mypy --strict wants explicit exports.
from securesystemslib.signer import Key, Signature, SSlibKey  # type: ignore[attr-defined]
from securesystemslib.signer import Signer as SslibSigner  # type: ignore[attr-defined]
from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from export_center.bundle.manifest import ExportManifest
from export_center.bundle.verify import CollectedFiles
from export_center.digests import sha256_hex
from export_center.errors import SigningError, VerificationError
from export_center.mirror.options import DEFAULT_EXPIRES_DAYS, TUF_ROLES, TufOptions
from export_center.signing.interface import PublicKey, Signer, keyid_of, load_public_key

__all__ = [
    "TufSignerAdapter",
    "TufVerified",
    "build_tuf_metadata",
    "tuf_check",
    "tuf_key",
    "verify_tuf_metadata",
]

_CHECK = "tuf"
ROLE_FILES: dict[str, str] = {role: f"tuf/{role}.json" for role in TUF_ROLES}


def tuf_key(public_key: PublicKey) -> SSlibKey:
    """The securesystemslib key of one of our public keys, under our keyid (sha256 of SPKI)."""
    return SSlibKey.from_crypto(public_key, keyid=keyid_of(public_key))


class TufSignerAdapter(SslibSigner):
    """A securesystemslib ``Signer`` that signs through one of our signers (file or PKCS#11).

    Scheme ``ed25519`` (raw signature over the payload) or ``ecdsa-sha2-nistp256`` (DER over
    SHA-256 of the payload): exactly what :meth:`Signer.sign` produces for the two key types.
    """

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._key = tuf_key(load_public_key(signer.public_key_pem()))

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: Any = None,
    ) -> SslibSigner:
        raise ValueError("TufSignerAdapter wraps a signer object; it has no private key URI")

    @property
    def public_key(self) -> Key:
        return self._key

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._key.keyid, self._signer.sign(payload).hex())


def _root_chain(
    key: Key, signer: TufSignerAdapter, as_of: datetime, anchor: datetime, options: TufOptions
) -> list[bytes]:
    """Root versions 1..k, each signed by the (one) key, each deterministic.

    A root must not change without a version bump, yet it must not expire while bundles are
    still made with it. With a validity of P days (``tuf.expires.root``), root version ``i``
    expires at ``anchor + (i + 1) * P`` and an export as of ``T`` uses version
    ``k = (T - anchor) // P + 1``: every root overlaps the next by P, and a client holding any
    earlier version chains to ``k`` through the versioned roots the bundle carries
    (``tuf/<i>.root.json``). ``anchor`` is the tenant's first change, so the chain is the
    same for every export of the store. An absolute ``tuf.expires.root`` pins version 1.
    """
    value = options.expires.get("root", DEFAULT_EXPIRES_DAYS["root"])
    if isinstance(value, datetime):
        expiries = [options.expiry("root", as_of)]
    else:
        period = timedelta(days=value)
        k = max(1, (as_of - anchor) // period + 1)
        base = anchor.astimezone(UTC).replace(microsecond=0)
        expiries = [base + (i + 1) * period for i in range(1, k + 1)]
    return [
        _signed(
            Metadata(
                Root(
                    version=i,
                    expires=expires,
                    keys={key.keyid: key},
                    roles={role: Role([key.keyid], 1) for role in TUF_ROLES},
                    consistent_snapshot=False,
                )
            ),
            signer,
        )
        for i, expires in enumerate(expiries, 1)
    ]


def build_tuf_metadata(
    targets: Mapping[str, tuple[str, int]],
    signer: Signer,
    *,
    as_of: datetime,
    version: int,
    options: TufOptions,
    root_anchor: datetime | None = None,
) -> dict[str, bytes]:
    """TUF metadata for ``targets`` (bundle path -> (sha256 hex, size)), as bundle files.

    Returns ``{"tuf/root.json": ..., "tuf/1.root.json": ..., "tuf/targets.json": ...}``.
    ``root_anchor`` (default ``as_of``) is where the root versions start (:func:`_root_chain`).

    Raises:
        SigningError: the signer failed.
    """
    tsigner = TufSignerAdapter(signer)
    key = tsigner.public_key
    version = max(1, version)
    roots = _root_chain(key, tsigner, as_of, root_anchor or as_of, options)
    target_files = {
        path: TargetFile(length=size, hashes={"sha256": digest}, path=path)
        for path, (digest, size) in sorted(targets.items())
    }
    tgt = Targets(version=version, expires=options.expiry("targets", as_of), targets=target_files)
    tgt_bytes = _signed(Metadata(tgt), tsigner)
    snap = Snapshot(
        version=version,
        expires=options.expiry("snapshot", as_of),
        meta={
            "targets.json": MetaFile(
                version=version, length=len(tgt_bytes), hashes={"sha256": sha256_hex(tgt_bytes)}
            )
        },
    )
    snap_bytes = _signed(Metadata(snap), tsigner)
    ts = Timestamp(
        version=version,
        expires=options.expiry("timestamp", as_of),
        snapshot_meta=MetaFile(
            version=version, length=len(snap_bytes), hashes={"sha256": sha256_hex(snap_bytes)}
        ),
    )
    return {
        ROLE_FILES["root"]: roots[-1],
        **{f"tuf/{i}.root.json": data for i, data in enumerate(roots, 1)},
        ROLE_FILES["targets"]: tgt_bytes,
        ROLE_FILES["snapshot"]: snap_bytes,
        ROLE_FILES["timestamp"]: _signed(Metadata(ts), tsigner),
    }


def _signed(md: Metadata[Any], signer: TufSignerAdapter) -> bytes:
    try:
        md.sign(signer)
    except UnsignedMetadataError as e:
        raise SigningError(f"cannot sign TUF {md.signed.type} metadata: {e}") from e
    return md.to_bytes()


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TufVerified:
    """What a verified TUF chain establishes."""

    root: bytes  # the bundle's root.json: the trusted root from now on
    root_version: int
    targets_version: int
    timestamp_expires: datetime
    targets: int


def _load(data: bytes | None, role: str, expected: type[Any]) -> Metadata[Any]:
    if data is None:
        raise VerificationError(_CHECK, f"{ROLE_FILES[role]} is missing")
    try:
        md = Metadata.from_bytes(data)
    except DeserializationError as e:
        raise VerificationError(_CHECK, f"{ROLE_FILES[role]}: not TUF metadata: {e}") from e
    if not isinstance(md.signed, expected):
        raise VerificationError(_CHECK, f"{ROLE_FILES[role]}: is {md.signed.type}, not {role}")
    return md


def _delegate(delegator: Root, role: str, md: Metadata[Any], what: str) -> None:
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as e:
        raise VerificationError(_CHECK, f"{what}: {e}") from e


def _not_expired(md: Metadata[Any], role: str, now: datetime) -> None:
    if md.signed.is_expired(now):
        expired = md.signed.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
        raise VerificationError(
            _CHECK,
            f"{ROLE_FILES[role]} expired at {expired}",
            hint="ask the exporter for a fresh bundle (or a longer tuf.expires)",
        )


def _check_meta(meta: MetaFile, data: bytes, what: str) -> None:
    try:
        meta.verify_length_and_hashes(data)
    except LengthOrHashMismatchError as e:
        raise VerificationError(_CHECK, f"{what}: {e}") from e


def root_keys_trusted(root_bytes: bytes, trust_roots: Mapping[str, PublicKey]) -> bool:
    """True when every key of the root role is one of ``trust_roots`` (same public key)."""
    md = _load(root_bytes, "root", Root)
    root: Root = md.signed
    for keyid in root.roles["root"].keyids:
        key = root.keys.get(keyid)
        if not isinstance(key, SSlibKey):
            return False
        try:
            crypto = key._crypto_key()
        except ValueError:
            return False
        if not isinstance(crypto, Ed25519PublicKey | ec.EllipticCurvePublicKey):
            return False
        if keyid_of(crypto) not in trust_roots:
            return False
    return bool(root.roles["root"].keyids)


def verify_tuf_metadata(
    trusted_root: bytes,
    files: Mapping[str, bytes],
    data_digests: Mapping[str, tuple[str, int]],
    now: datetime,
) -> TufVerified:
    """Verify the bundle's TUF metadata (``files``: bundle path -> bytes of ``tuf/*.json``)
    against ``trusted_root``, as of ``now``; the targets must be exactly ``data_digests``
    (bundle path -> (sha256 hex, size) of every file under ``data/``).

    Raises:
        VerificationError: (check ``tuf``) any check of the TUF client workflow fails.
    """
    trusted = _load(trusted_root, "root", Root)
    _delegate(trusted.signed, "root", trusted, "trusted root is not signed by its own keys")
    root = _load(files.get(ROLE_FILES["root"]), "root", Root)
    old_v, new_v = trusted.signed.version, root.signed.version
    if new_v < old_v:
        raise VerificationError(
            _CHECK, f"root version {new_v} is older than the trusted root's {old_v} (rollback)"
        )
    if new_v == old_v:
        if root.signed_bytes != trusted.signed_bytes:
            raise VerificationError(
                _CHECK,
                f"tuf/root.json (version {new_v}) is not the trusted root",
                hint="the bundle was signed under another TUF root; check --tuf-root",
            )
    else:
        # Root rotation: every intermediate version must be in the bundle as
        # tuf/<version>.root.json, each signed by its predecessor's root keys and by its own.
        current = trusted
        for v in range(old_v + 1, new_v + 1):
            step_bytes = files.get(f"tuf/{v}.root.json")
            if step_bytes is None and v != new_v:
                raise VerificationError(
                    _CHECK, f"tuf/{v}.root.json is missing: root v{old_v} cannot chain to v{new_v}"
                )
            step = root if step_bytes is None else _load(step_bytes, "root", Root)
            if step.signed.version != v:
                raise VerificationError(
                    _CHECK, f"tuf/{v}.root.json has version {step.signed.version}"
                )
            _delegate(current.signed, "root", step, f"root v{v} is not signed by root v{v - 1}")
            _delegate(step.signed, "root", step, f"root v{v} is not signed by its own keys")
            current = step
        if current.signed_bytes != root.signed_bytes:
            raise VerificationError(_CHECK, "tuf/root.json differs from the last root of the chain")
    _delegate(root.signed, "root", root, "root is not signed by its own root keys")
    _not_expired(root, "root", now)
    r: Root = root.signed

    ts = _load(files.get(ROLE_FILES["timestamp"]), "timestamp", Timestamp)
    _delegate(r, "timestamp", ts, "timestamp signature")
    _not_expired(ts, "timestamp", now)

    snap_bytes = files.get(ROLE_FILES["snapshot"])
    snap = _load(snap_bytes, "snapshot", Snapshot)
    assert snap_bytes is not None
    _check_meta(ts.signed.snapshot_meta, snap_bytes, "snapshot.json vs timestamp")
    _delegate(r, "snapshot", snap, "snapshot signature")
    if snap.signed.version != ts.signed.snapshot_meta.version:
        raise VerificationError(_CHECK, "snapshot version differs from the timestamp's")
    _not_expired(snap, "snapshot", now)

    tgt_bytes = files.get(ROLE_FILES["targets"])
    tgt = _load(tgt_bytes, "targets", Targets)
    assert tgt_bytes is not None
    tmeta = snap.signed.meta.get("targets.json")
    if tmeta is None:
        raise VerificationError(_CHECK, "snapshot does not list targets.json")
    _check_meta(tmeta, tgt_bytes, "targets.json vs snapshot")
    _delegate(r, "targets", tgt, "targets signature")
    if tgt.signed.version != tmeta.version:
        raise VerificationError(_CHECK, "targets version differs from the snapshot's")
    _not_expired(tgt, "targets", now)
    if tgt.signed.delegations is not None:
        raise VerificationError(_CHECK, "targets delegate to other roles; mirrors never do")

    listed: dict[str, TargetFile] = tgt.signed.targets
    if missing := sorted(set(data_digests) - set(listed)):
        raise VerificationError(_CHECK, f"not a TUF target: {', '.join(missing[:5])}")
    if extra := sorted(set(listed) - set(data_digests)):
        raise VerificationError(_CHECK, f"TUF target not in the bundle: {', '.join(extra[:5])}")
    for path, (digest, size) in sorted(data_digests.items()):
        tf = listed[path]
        if tf.length != size or tf.hashes.get("sha256") != digest:
            raise VerificationError(_CHECK, f"{path}: length or sha256 differs from targets.json")
    return TufVerified(
        root=files[ROLE_FILES["root"]],
        root_version=r.version,
        targets_version=tgt.signed.version,
        timestamp_expires=ts.signed.expires,
        targets=len(listed),
    )


def tuf_check(
    trust_roots: Mapping[str, PublicKey], tuf_root: bytes | None, now: datetime
) -> Callable[[ExportManifest, CollectedFiles], str | None]:
    """Step 8 of bundles.md for ``stella export verify``: a mirror bundle's TUF chain, with
    every role's expiry as of ``now``, from ``tuf_root`` (received out of band) or else the
    bundle's own root when all its keys are among ``trust_roots`` (the importer's first-import
    rule). Other bundles carry no TUF metadata: the check passes saying so (it does not apply,
    which is not a check left undone, so it is not "skipped"). A delta's base is checked by the
    importer, against what is installed; offline there is nothing to check it against.
    """

    def check(manifest: ExportManifest, collected: CollectedFiles) -> str | None:
        if manifest.profile.kind != "mirror":
            return f"does not apply: a {manifest.profile.kind} bundle carries no TUF metadata"
        files = {p: d for p, d in collected.kept.items() if p.startswith("tuf/")}
        trusted, how = tuf_root, "given root"
        if trusted is None:
            bundle_root = files.get(ROLE_FILES["root"])
            if bundle_root is None or not root_keys_trusted(bundle_root, trust_roots):
                raise VerificationError(
                    _CHECK,
                    "untrusted TUF root: its keys are not among the trusted keys",
                    hint="pass --tuf-root with the root.json received out of band",
                )
            trusted, how = bundle_root, "the bundle's root, whose keys are trusted keys"
        data = {p: d for p, d in collected.digests.items() if p.startswith("data/")}
        result = verify_tuf_metadata(trusted, files, data, now)
        return (
            f"{result.targets} targets, root v{result.root_version} ({how}), timestamp "
            f"expires {result.timestamp_expires:%Y-%m-%dT%H:%M:%SZ}"
        )

    return check
