"""Reading the input tree of a devportal:offline bundle (the only module that walks it).

Layout: ``portal/``, ``specs/``, ``sdks/<name>/``, ``changelog/`` (each optional, at least one
file in total). Other top-level entries and empty directories are skipped and reported, never
bundled silently. Symbolic links, devices and FIFOs are refused (a link could pull in a file
from outside the tree), and so are file names that the bundle's formats cannot carry safely:
names that are not UTF-8 or hold control characters, a backslash or a double quote
(``sha256sum`` escapes the first two, and ``verify-offline.sh`` reads manifest.json with plain
text tools that rely on the last).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from export_center.devportal.errors import DevportalInputError
from export_center.devportal.manifest import CATEGORY_DIRS, Category, category_of
from export_center.digests import sha256_file, sha256_hex
from export_center.errors import NotFoundError

__all__ = ["InputFile", "InputTree", "Skipped", "scan_input", "with_generated"]

logger = logging.getLogger(__name__)

_BAD_NAME = re.compile(r'[\x00-\x1f\x7f\\"]')
_SDK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_DIR_CATEGORY = {directory: category for category, directory in CATEGORY_DIRS.items()}


@dataclass(frozen=True)
class InputFile:
    """A file to bundle: bundle-relative path, where it is, its size and sha256 when read."""

    path: str
    category: Category
    source: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Skipped:
    """An input entry that is not bundled, and why (reported to the user)."""

    path: str
    reason: str


@dataclass(frozen=True)
class InputTree:
    root: Path
    files: tuple[InputFile, ...]  # sorted by path (bytewise)
    skipped: tuple[Skipped, ...]


def _check_name(rel: str) -> None:
    name = rel.rsplit("/", 1)[-1]
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DevportalInputError(f"{rel!r}: the file name is not valid UTF-8") from e
    if _BAD_NAME.search(name):
        raise DevportalInputError(
            f"{rel!r}: file names must not contain control characters, '\\' or '\"'"
        )


def _walk(
    directory: Path,
    rel: str,
    category: Category,
    out: list[InputFile],
    skipped: list[Skipped],
) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: os.fsencode(e.name))
    except OSError as e:
        raise DevportalInputError(f"{rel}: cannot read the directory: {e.strerror}") from e
    if not entries:
        skipped.append(Skipped(f"{rel}/", "empty directory (only files are bundled)"))
    for entry in entries:
        child = f"{rel}/{entry.name}"
        _check_name(child)
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise DevportalInputError(
                f"{child}: symbolic links are not bundled", hint="replace the link by a copy"
            )
        if stat.S_ISDIR(mode):
            if category is Category.SDK and rel == "sdks" and not _SDK_NAME.match(entry.name):
                raise DevportalInputError(f"{child}: SDK names must match {_SDK_NAME.pattern}")
            _walk(Path(entry.path), child, category, out, skipped)
        elif stat.S_ISREG(mode):
            if category is Category.SDK and rel == "sdks":
                raise DevportalInputError(
                    f"{child}: SDK files belong in sdks/<name>/, one directory per SDK"
                )
            try:
                digest, size = sha256_file(Path(entry.path))
            except OSError as e:
                raise DevportalInputError(f"{child}: cannot read: {e.strerror}") from e
            out.append(InputFile(child, category, Path(entry.path), size, digest))
        else:
            raise DevportalInputError(f"{child}: not a regular file or directory")


def scan_input(root: Path) -> InputTree:
    """Walk ``root`` and hash every file that will be bundled.

    Raises:
        NotFoundError: no ``root``.
        DevportalInputError: ``root`` is not a directory, nothing to bundle, a link, device or
            unreadable file, a bad file name, or a file directly under ``sdks/``.
    """
    if not root.exists():
        raise NotFoundError(f"{root}: no such input directory")
    if not root.is_dir():
        raise DevportalInputError(f"{root}: not a directory (the input tree is a directory)")
    files: list[InputFile] = []
    skipped: list[Skipped] = []
    for entry in sorted(os.scandir(root), key=lambda e: os.fsencode(e.name)):
        category = _DIR_CATEGORY.get(entry.name)
        if category is None:
            skipped.append(
                Skipped(entry.name, "not one of portal/, specs/, sdks/<name>/, changelog/")
            )
            continue
        if entry.is_symlink() or not entry.is_dir():
            raise DevportalInputError(f"{root / entry.name}: must be a directory (not a link)")
        _walk(Path(entry.path), entry.name, category, files, skipped)
    if not files:
        raise DevportalInputError(
            f"{root}: nothing to bundle",
            hint="the input needs files under portal/, specs/, sdks/<name>/ or changelog/",
        )
    for s in skipped:
        logger.info("skipped %s: %s", s.path, s.reason)
    files.sort(key=lambda f: f.path.encode("utf-8"))
    return InputTree(root=root, files=tuple(files), skipped=tuple(skipped))


def with_generated(
    base: InputTree | None, generated: Mapping[str, bytes], scratch: Path
) -> InputTree:
    """``base`` (or nothing) plus files made by the program (``generated``: bundle path ->
    bytes), written under ``scratch`` so that the builder streams and re-checks them like any
    other input file.

    Raises:
        DevportalInputError: a generated path is not in the layout, or ``base`` has it too.
    """
    files = list(base.files) if base is not None else []
    taken = {f.path for f in files}
    for path, data in sorted(generated.items()):
        category = category_of(path)
        if category is None:
            raise DevportalInputError(f"{path}: not part of the devportal layout")
        if path in taken:
            raise DevportalInputError(
                f"{path}: the input tree has this file and the run generates it too",
                hint="rename the file in the input tree, or set options.serviceSpec to false",
            )
        target = scratch / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append(InputFile(path, category, target, len(data), sha256_hex(data)))
    if not files:
        raise DevportalInputError("nothing to bundle")
    files.sort(key=lambda f: f.path.encode("utf-8"))
    return InputTree(
        root=base.root if base is not None else scratch,
        files=tuple(files),
        skipped=base.skipped if base is not None else (),
    )
