"""``checksums.txt``: the ``sha256sum`` listing every bundle carries (docs/bundle-format.md).

One builder and one parser for the export bundles and the devportal:offline bundles alike. The
format is exactly what ``sha256sum`` writes and ``sha256sum -c`` reads: ``<hex>  <path>`` per
line, sorted by path (bytewise), LF line ends. The parser refuses anything else (another order,
CRLF, duplicates, blank or extra lines, a missing final newline): the listing is covered by a
signature, so a file that does not round-trip is not one we wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["build_checksums", "parse_checksums"]

_LINE = re.compile(r"([0-9a-f]{64})  ([^\r\n]+)")


def _key(path: str) -> bytes:
    return path.encode("utf-8", errors="surrogateescape")


def build_checksums(files: Iterable[tuple[str, str]]) -> bytes:
    """``checksums.txt`` for ``(path, sha256 hex)`` pairs, sorted by path.

    Raises:
        ValueError: a path is empty or holds a newline, carriage return or backslash (sha256sum
            would escape the line, and :func:`parse_checksums` would refuse it).
    """
    lines = []
    for path, digest in sorted(files, key=lambda f: _key(f[0])):
        if not path or any(c in path for c in "\n\r\\"):
            raise ValueError(f"{path!r}: cannot be listed in checksums.txt")
        lines.append(f"{digest}  {path}\n")
    return "".join(lines).encode("utf-8")


def parse_checksums(data: bytes) -> dict[str, str]:
    """Read ``checksums.txt`` strictly: ``{path: sha256 hex}``, the inverse of
    :func:`build_checksums`.

    Raises:
        ValueError: not UTF-8, no final newline, a malformed line (CRLF, blank, uppercase hex,
            sha256sum's binary ``*`` marker or escaping), or paths out of order or repeated.
    """
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not text:
        return {}
    if not text.endswith("\n"):
        raise ValueError("the last line has no newline")
    out: dict[str, str] = {}
    previous: bytes | None = None
    # split("\n"), not splitlines(): the latter also breaks at CR, VT, FF, U+2028 ...
    for n, line in enumerate(text[:-1].split("\n"), start=1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"line {n} is not '<sha256 hex>  <path>'")
        digest, path = match.groups()
        key = _key(path)
        if path in out:
            raise ValueError(f"line {n}: {path} listed twice")
        if previous is not None and key < previous:
            raise ValueError(f"line {n}: {path} is out of order (paths are sorted bytewise)")
        previous = key
        out[path] = digest
    return out
