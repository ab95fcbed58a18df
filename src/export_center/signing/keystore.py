"""The file key store: a directory of PEM key pairs plus a small JSON index.

Layout of the directory (``Settings.key_dir`` = ``<data dir>/keys`` by default)::

    <keyid>.key.pem    PKCS#8 private key, mode 0600 (encrypted when a passphrase was given)
    <keyid>.pub.pem    SPKI public key, mode 0644
    index.json         {"version": 1, "nextSeq": N,
                        "keys": [{keyid, type, seq, created, encrypted}, ...]}

``seq`` is a counter kept in the index: "newest" is the key with the highest ``seq``, which stays
unambiguous when two keys are created within the same clock tick or the clock steps back.
``created`` is for people only. Index updates take an exclusive lock and replace the file
atomically, so concurrent ``generate`` calls never lose a key.
"""

from __future__ import annotations

import builtins
import fcntl
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from export_center.errors import BadInputError, ConfigError, NotFoundError, SigningError
from export_center.settings import Settings
from export_center.signing.interface import KeyType, keyid_of, load_public_key, public_key_pem
from export_center.signing.keyfile import FileSigner, generate_private_key, private_key_pem

__all__ = ["KeyInfo", "KeyStore", "signer_from_config"]

logger = logging.getLogger(__name__)

_INDEX = "index.json"
_LOCK = ".lock"
_HEX = re.compile(r"^[0-9a-f]+$")


class _IndexEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    type: KeyType
    seq: int = Field(ge=1)
    created: str
    encrypted: bool


class _Index(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: Literal[1] = 1
    next_seq: int = Field(default=1, ge=1, alias="nextSeq")
    keys: list[_IndexEntry] = Field(default_factory=list)


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

    def get(self, ref: str) -> KeyInfo:
        """The key whose keyid is ``ref`` or starts with ``ref`` (case-insensitive).

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
    ) -> KeyInfo:
        """Create a key pair in this store (or in the store at ``out_dir``) and index it.

        Raises:
            SigningError: empty passphrase, or the directory cannot be written.
        """
        if out_dir is not None and out_dir != self.directory:
            return KeyStore(out_dir, passphrase=self._passphrase).generate(
                key_type, passphrase=passphrase, now=now
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
                    _write_replace(
                        self.directory / _INDEX,
                        index.model_dump_json(by_alias=True, indent=2).encode("utf-8") + b"\n",
                        0o644,
                    )
                except OSError:
                    # Leave no unindexed half of a pair behind (a full disk, a read-only dir).
                    for path in written:
                        path.unlink(missing_ok=True)
                    raise
        except OSError as e:
            raise SigningError(f"cannot write key store {self.directory}: {e}") from e
        logger.info("generated %s key %s in %s", key_type.value, keyid, self.directory)
        return info

    # -- internals -------------------------------------------------------------------------

    def _info(self, entry: _IndexEntry) -> KeyInfo:
        return KeyInfo(
            keyid=entry.keyid,
            key_type=entry.type,
            seq=entry.seq,
            created=entry.created,
            encrypted=entry.encrypted,
            private_path=self.directory / f"{entry.keyid}.key.pem",
            public_path=self.directory / f"{entry.keyid}.pub.pem",
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
