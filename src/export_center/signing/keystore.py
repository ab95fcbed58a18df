"""The key store: the operator's registry of keys, a directory of PEM files plus a JSON index.

Layout of the directory (``Settings.key_dir`` = ``<data dir>/keys`` by default)::

    <keyid>.key.pem    PKCS#8 private key, mode 0600 (encrypted when a passphrase was given);
                       file keys only
    <keyid>.pub.pem    SPKI public key, mode 0644
    index.json         {"version": 2, "nextSeq": N,
                        "keys": [{keyid, type, seq, created, encrypted, backend,
                                  token, object, tenants}, ...],
                        "kms": [{id, tenants, created}, ...]}

``seq`` is a counter kept in the index: "newest" is the key with the highest ``seq``, which stays
unambiguous when two keys are created within the same clock tick or the clock steps back.
``created`` is for people only. Index updates take an exclusive lock and replace the file
atomically, so concurrent ``generate`` calls never lose a key.

Keys belong to tenants (security.md, "Operator <-> HSM/keys"): the operator assigns each key to
the tenants that may sign with it (``tenants``), and a profile may only name a key of its own
tenant, by full keyid (:meth:`KeyStore.tenant_key`); a tenant's default key is its newest.
A key of ``backend`` ``pkcs11`` lives on the operator's HSM: the index holds the token and
object labels it was registered with, the module and PIN come from the operator's settings.
KMS key ids (``kms://...``, mirror encryption) are assigned the same way. A version 1 index
(before tenants) reads as keys assigned to no tenant: usable by the operator's own commands
(``stella devportal build``), by no profile until ``stella keys assign``.
"""

from __future__ import annotations

import builtins
import fcntl
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from export_center.errors import (
    BadInputError,
    ConfigError,
    ConflictError,
    NotFoundError,
    SigningError,
)
from export_center.settings import Settings
from export_center.signing.interface import (
    KeyType,
    PublicKey,
    keyid_of,
    load_public_key,
    public_key_pem,
)
from export_center.signing.keyfile import FileSigner, generate_private_key, private_key_pem

__all__ = ["KeyInfo", "KeyStore", "KmsKeyInfo", "check_tenant_name", "signer_from_config"]

logger = logging.getLogger(__name__)

_INDEX = "index.json"
_LOCK = ".lock"
_HEX = re.compile(r"^[0-9a-f]+$")
_KEYID = re.compile(r"^[0-9a-f]{64}$")
# The store's tenant rule (store.repository.check_tenant; this layer sits below the store).
_TENANT = re.compile(r"^[a-z0-9_-]{1,64}$")
_LABEL = re.compile(r"^[^\x00-\x1f]{1,128}$")
_KMS_ID = re.compile(r"^kms://[A-Za-z0-9][A-Za-z0-9._~:/@%+-]{0,290}$")

Backend = Literal["file", "pkcs11"]


class _IndexEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    type: KeyType
    seq: int = Field(ge=1)
    created: str
    encrypted: bool = False
    backend: Backend = "file"
    token: str | None = None  # PKCS#11 token label (backend pkcs11)
    object: str | None = None  # PKCS#11 key label (backend pkcs11)
    tenants: tuple[str, ...] = ()


class _KmsEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_KMS_ID.pattern)
    tenants: tuple[str, ...] = ()
    created: str


class _Index(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: Literal[1, 2] = 2
    next_seq: int = Field(default=1, ge=1, alias="nextSeq")
    keys: list[_IndexEntry] = Field(default_factory=list)
    kms: list[_KmsEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class KeyInfo:
    """One key of the store."""

    keyid: str
    key_type: KeyType
    seq: int
    created: str
    encrypted: bool
    private_path: Path
    public_path: Path
    backend: Backend = "file"
    token: str | None = None
    object: str | None = None
    tenants: tuple[str, ...] = ()


@dataclass(frozen=True)
class KmsKeyInfo:
    """A KMS key id (``kms://...``) the operator assigned to tenants."""

    id: str
    tenants: tuple[str, ...]
    created: str


def check_tenant_name(tenant: str) -> str:
    """Raises: BadInputError: not a tenant name (1-64 of a-z, 0-9, '-', '_')."""
    if not _TENANT.match(tenant):
        raise BadInputError(
            f"invalid tenant {tenant[:80]!r}: use 1-64 characters of a-z, 0-9, '-' and '_'"
        )
    return tenant


class KeyStore:
    """Key pairs in one directory. Reading never creates anything; ``generate`` does."""

    def __init__(self, directory: Path, *, passphrase: str | None = None) -> None:
        """``passphrase`` opens encrypted keys when a call gives none (the settings'
        ``STELLA_KEY_PASSPHRASE``, see :meth:`from_settings`)."""
        self.directory = directory
        self._passphrase = passphrase

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        secret = settings.key_passphrase
        return cls(settings.key_dir, passphrase=secret.get_secret_value() if secret else None)

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> tuple[KeyInfo, ...]:
        """Every key, oldest first (by ``seq``).

        Raises:
            ConfigError: the index is unreadable or invalid.
        """
        index = self._read_index()
        return tuple(self._info(e) for e in sorted(index.keys, key=lambda e: e.seq))

    def newest(self) -> KeyInfo:
        """The key with the highest ``seq``.

        Raises:
            NotFoundError: the store holds no key.
        """
        keys = self.list()
        if not keys:
            raise NotFoundError(
                f"no signing key in {self.directory}",
                hint="create one with `stella keys generate --type ed25519`",
            )
        return keys[-1]

    def tenant_keys(self, tenant: str) -> tuple[KeyInfo, ...]:
        """The keys assigned to ``tenant``, oldest first."""
        return tuple(k for k in self.list() if tenant in k.tenants)

    def tenant_key(self, tenant: str, keyid: str | None = None) -> KeyInfo:
        """The key a profile of ``tenant`` signs with: ``keyid`` (full, exact) when it is
        assigned to the tenant, else the tenant's newest key.

        The refusal is the same for a key that does not exist and one of another tenant, so
        that a tenant cannot learn which keys exist.

        Raises:
            NotFoundError: no such key for this tenant, or the tenant has no key.
        """
        keys = self.tenant_keys(tenant)
        if keyid is None:
            if not keys:
                raise NotFoundError(
                    f"tenant {tenant!r} has no signing key",
                    hint=f"the operator assigns one: `stella keys generate --tenant {tenant}` "
                    f"or `stella keys assign KEYID --tenant {tenant}`",
                )
            return keys[-1]
        for k in keys:
            if k.keyid == keyid:
                return k
        raise NotFoundError(
            f"no key {keyid[:64]!r} is assigned to tenant {tenant!r}",
            hint="a profile names one of its tenant's keys by its full keyid",
        )

    def kms_keys(self) -> tuple[KmsKeyInfo, ...]:
        """Every registered KMS key id.

        Raises:
            ConfigError: the index is unreadable or invalid.
        """
        return tuple(
            KmsKeyInfo(e.id, e.tenants, e.created)
            for e in sorted(self._read_index().kms, key=lambda e: e.id)
        )

    def tenant_kms(self, tenant: str) -> frozenset[str]:
        """The KMS key ids assigned to ``tenant``."""
        return frozenset(k.id for k in self.kms_keys() if tenant in k.tenants)

    def get(self, ref: str) -> KeyInfo:
        """The key whose keyid is ``ref`` or starts with ``ref`` (case-insensitive): for the
        operator's commands; profiles name keys through :meth:`tenant_key`.

        Raises:
            BadInputError: ``ref`` is empty, not hex, or a prefix of several keyids.
            NotFoundError: no key matches.
        """
        needle = ref.strip().lower()
        if not needle or not _HEX.match(needle):
            raise BadInputError(f"keyid {ref!r}: expected hex digits (a keyid or its prefix)")
        matches = [k for k in self.list() if k.keyid.startswith(needle)]
        if not matches:
            raise NotFoundError(
                f"no key {ref!r} in {self.directory}",
                hint="`stella keys list` shows the keys in the store",
            )
        if len(matches) > 1:
            ids = ", ".join(k.keyid[:16] for k in matches)
            raise BadInputError(f"keyid prefix {ref!r} is ambiguous: {ids}; give more digits")
        return matches[0]

    def export_public(self, keyid: str) -> bytes:
        """The PEM public key of ``keyid`` (or a unique prefix).

        Raises:
            NotFoundError: unknown key, or its public key file is missing.
            BadInputError: ambiguous prefix.
            SigningError: the file does not hold the key its name says.
        """
        info = self.get(keyid)
        pem = self._read_file(info.public_path, info.keyid)
        try:
            actual = keyid_of(load_public_key(pem))
        except ValueError as e:
            raise SigningError(f"{info.public_path}: {e}") from e
        if actual != info.keyid:
            raise SigningError(
                f"{info.public_path} holds key {actual}, not {info.keyid}: file replaced?"
            )
        return pem

    def signer(self, keyid: str | None = None, passphrase: str | None = None) -> FileSigner:
        """A signer for ``keyid`` (or a unique prefix), or for the newest key.

        The passphrase of an encrypted key comes from ``passphrase`` or, when None, from the
        store's (``STELLA_KEY_PASSPHRASE`` for a store made :meth:`from_settings`).

        Raises:
            NotFoundError: no such key (or an empty store), or its key file is missing.
            BadInputError: ambiguous prefix.
            SigningError: wrong or missing passphrase, or the file holds another key.
        """
        info = self.get(keyid) if keyid is not None else self.newest()
        if info.backend != "file":
            raise SigningError(
                f"key {info.keyid} is on PKCS#11 token {info.token!r}: it signs through the "
                "exporter with the operator's STELLA_PKCS11_MODULE and STELLA_PKCS11_PIN"
            )
        if passphrase is None:
            passphrase = self._passphrase
        pem = self._read_file(info.private_path, info.keyid)
        signer = FileSigner.from_pem(pem, passphrase, where=str(info.private_path))
        if signer.keyid != info.keyid:
            raise SigningError(
                f"{info.private_path} holds key {signer.keyid}, not {info.keyid}: file replaced?"
            )
        return signer

    # -- writing ---------------------------------------------------------------------------

    def generate(
        self,
        key_type: KeyType,
        out_dir: Path | None = None,
        passphrase: str | None = None,
        *,
        now: datetime | None = None,
        tenants: Sequence[str] = (),
    ) -> KeyInfo:
        """Create a key pair in this store (or in the store at ``out_dir``), assigned to
        ``tenants``, and index it.

        Raises:
            SigningError: empty passphrase, or the directory cannot be written.
            BadInputError: an invalid tenant name.
        """
        owners = tuple(sorted({check_tenant_name(t) for t in tenants}))
        if out_dir is not None and out_dir != self.directory:
            return KeyStore(out_dir, passphrase=self._passphrase).generate(
                key_type, passphrase=passphrase, now=now, tenants=owners
            )
        key = generate_private_key(key_type)
        private_pem = private_key_pem(key, passphrase)
        public = key.public_key()
        keyid = keyid_of(public)
        created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._locked():
                index = self._read_index()
                entry = _IndexEntry(
                    keyid=keyid,
                    type=key_type,
                    seq=index.next_seq,
                    created=created,
                    encrypted=passphrase is not None,
                    tenants=owners,
                )
                info = self._info(entry)
                index.keys.append(entry)
                index.next_seq += 1
                written: builtins.list[Path] = []  # (``list`` is a method name here)
                try:
                    _write_new(info.private_path, private_pem, 0o600)
                    written.append(info.private_path)
                    _write_new(info.public_path, public_key_pem(public), 0o644)
                    written.append(info.public_path)
                    self._write_index(index)
                except OSError:
                    # Leave no unindexed half of a pair behind (a full disk, a read-only dir).
                    for path in written:
                        path.unlink(missing_ok=True)
                    raise
        except OSError as e:
            raise SigningError(f"cannot write key store {self.directory}: {e}") from e
        logger.info("generated %s key %s in %s", key_type.value, keyid, self.directory)
        return info

    def register_pkcs11(
        self,
        token: str,
        label: str,
        public_key: PublicKey,
        *,
        tenants: Sequence[str] = (),
        now: datetime | None = None,
    ) -> KeyInfo:
        """Register the key pair labelled ``label`` on PKCS#11 token ``token`` (whose public
        key the caller read off the token), assigned to ``tenants``.

        Raises:
            ConflictError: the key is registered already.
            BadInputError: an invalid label or tenant.
            SigningError: the directory cannot be written.
        """
        for what, value in (("token", token), ("object", label)):
            if not _LABEL.match(value):
                raise BadInputError(f"PKCS#11 {what} label {value[:80]!r}: 1-128 characters")
        owners = tuple(sorted({check_tenant_name(t) for t in tenants}))
        keyid = keyid_of(public_key)
        key_type = (
            KeyType.ED25519 if isinstance(public_key, Ed25519PublicKey) else KeyType.ECDSA_P256
        )
        created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._locked():
                index = self._read_index()
                if any(k.keyid == keyid for k in index.keys):
                    raise ConflictError(f"key {keyid} is registered already")
                entry = _IndexEntry(
                    keyid=keyid,
                    type=key_type,
                    seq=index.next_seq,
                    created=created,
                    backend="pkcs11",
                    token=token,
                    object=label,
                    tenants=owners,
                )
                info = self._info(entry)
                index.keys.append(entry)
                index.next_seq += 1
                _write_replace(info.public_path, public_key_pem(public_key), 0o644)
                self._write_index(index)
        except OSError as e:
            raise SigningError(f"cannot write key store {self.directory}: {e}") from e
        logger.info("registered PKCS#11 key %s (%s/%s)", keyid, token, label)
        return info

    def assign(self, ref: str, tenant: str) -> KeyInfo:
        """Let ``tenant`` sign with key ``ref`` (keyid or unique prefix; operator command).

        Raises:
            NotFoundError, BadInputError: as :meth:`get`; BadInputError: invalid tenant.
        """
        return self._retenant(ref, check_tenant_name(tenant), add=True)

    def unassign(self, ref: str, tenant: str) -> KeyInfo:
        """Take key ``ref`` away from ``tenant`` (its published bundles stay valid).

        Raises:
            NotFoundError, BadInputError: as :meth:`get`.
        """
        return self._retenant(ref, tenant, add=False)

    def assign_kms(self, key_id: str, tenant: str, *, now: datetime | None = None) -> KmsKeyInfo:
        """Let ``tenant`` encrypt mirror bundles to the KMS key ``key_id`` (registering it).

        Raises:
            BadInputError: not a KMS key id, or an invalid tenant.
        """
        if not _KMS_ID.match(key_id):
            raise BadInputError(f"{key_id[:80]!r} is not a KMS key id (kms://...)")
        check_tenant_name(tenant)
        created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._locked():
                index = self._read_index()
                old = next((e for e in index.kms if e.id == key_id), None)
                tenants = tuple(sorted({tenant, *(old.tenants if old else ())}))
                entry = _KmsEntry(
                    id=key_id, tenants=tenants, created=old.created if old else created
                )
                index.kms = [e for e in index.kms if e.id != key_id] + [entry]
                self._write_index(index)
        except OSError as e:
            raise SigningError(f"cannot write key store {self.directory}: {e}") from e
        return KmsKeyInfo(entry.id, entry.tenants, entry.created)

    def unassign_kms(self, key_id: str, tenant: str) -> KmsKeyInfo:
        """Take the KMS key ``key_id`` away from ``tenant``.

        Raises:
            NotFoundError: no such KMS key id.
        """
        try:
            with self._locked():
                index = self._read_index()
                old = next((e for e in index.kms if e.id == key_id), None)
                if old is None:
                    raise NotFoundError(f"no KMS key {key_id[:80]!r} in {self.directory}")
                entry = old.model_copy(
                    update={"tenants": tuple(t for t in old.tenants if t != tenant)}
                )
                index.kms = [entry if e.id == key_id else e for e in index.kms]
                self._write_index(index)
        except OSError as e:
            raise SigningError(f"cannot write key store {self.directory}: {e}") from e
        return KmsKeyInfo(entry.id, entry.tenants, entry.created)

    # -- internals -------------------------------------------------------------------------

    def _retenant(self, ref: str, tenant: str, *, add: bool) -> KeyInfo:
        keyid = self.get(ref).keyid
        try:
            with self._locked():
                index = self._read_index()
                entries = []
                changed: _IndexEntry | None = None
                for e in index.keys:
                    if e.keyid == keyid:
                        owners = set(e.tenants) | {tenant} if add else set(e.tenants) - {tenant}
                        e = e.model_copy(update={"tenants": tuple(sorted(owners))})
                        changed = e
                    entries.append(e)
                index.keys = entries
                self._write_index(index)
        except OSError as e:
            raise SigningError(f"cannot write key store {self.directory}: {e}") from e
        if changed is None:  # removed by someone else between get() and the lock
            raise NotFoundError(f"no key {ref!r} in {self.directory}")
        return self._info(changed)

    def _write_index(self, index: _Index) -> None:
        index.version = 2
        _write_replace(
            self.directory / _INDEX,
            index.model_dump_json(by_alias=True, indent=2).encode("utf-8") + b"\n",
            0o644,
        )

    def _info(self, entry: _IndexEntry) -> KeyInfo:
        return KeyInfo(
            keyid=entry.keyid,
            key_type=entry.type,
            seq=entry.seq,
            created=entry.created,
            encrypted=entry.encrypted,
            private_path=self.directory / f"{entry.keyid}.key.pem",
            public_path=self.directory / f"{entry.keyid}.pub.pem",
            backend=entry.backend,
            token=entry.token,
            object=entry.object,
            tenants=entry.tenants,
        )

    def _read_index(self) -> _Index:
        path = self.directory / _INDEX
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return _Index()
        except OSError as e:
            raise ConfigError(f"key store index {path}: {e}") from e
        try:
            index = _Index.model_validate_json(raw)
        except ValidationError as e:
            raise ConfigError(f"key store index {path} is invalid: {e}") from e
        seqs = [k.seq for k in index.keys]
        ids = [k.keyid for k in index.keys]
        if (
            len(set(seqs)) != len(seqs)
            or len(set(ids)) != len(ids)
            or (seqs and max(seqs) >= index.next_seq)
        ):
            raise ConfigError(f"key store index {path} is inconsistent (duplicate keys or seq)")
        return index

    def _read_file(self, path: Path, keyid: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError as e:
            raise NotFoundError(f"key {keyid}: file {path} is missing") from e
        except OSError as e:
            raise SigningError(f"key {keyid}: cannot read {path}: {e}") from e

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _write_fd(fd: int, data: bytes, mode: int) -> None:
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)  # exactly ``mode``, whatever the umask
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (it must not exist) with exactly ``mode``, whatever the umask."""
    _write_fd(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), data, mode)


def _write_replace(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace ``path`` with ``data``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_fd(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), data, mode)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def signer_from_config(config: Mapping[str, str]) -> FileSigner:
    """The ``file`` backend factory: ``key_dir`` (required), ``keyid``, ``passphrase``.

    Raises:
        ConfigError: ``key_dir`` missing or an unknown setting.
        NotFoundError, BadInputError, SigningError: as :meth:`KeyStore.signer`.
    """
    unknown = sorted(set(config) - {"key_dir", "keyid", "passphrase"})
    if unknown:
        raise ConfigError(f"file signer: unknown setting(s) {', '.join(unknown)}")
    key_dir = config.get("key_dir")
    if not key_dir:
        raise ConfigError("file signer: key_dir is required")
    return KeyStore(Path(key_dir).expanduser()).signer(
        config.get("keyid") or None, config.get("passphrase")
    )
