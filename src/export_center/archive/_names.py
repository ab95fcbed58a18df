"""Member-name rules shared by the writer (which never emits a bad name) and the reader
(which refuses one). A name is a relative, ``/``-separated path of plain components.
"""

from __future__ import annotations

import unicodedata

# NAME_MAX on Linux and macOS: a longer component cannot be created on disk anyway.
MAX_COMPONENT_BYTES = 255


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe relative member path, or ``None`` when it is.

    ``name`` carries no trailing ``/`` (directories are named like files here). Refused:
    empty names, absolute paths, backslashes (a separator on Windows), control characters
    (NUL included: C strings end there, terminals obey the rest), empty, ``.`` and ``..``
    components, and components longer than the file system allows.
    """
    if not name:
        return "empty name"
    if name.startswith("/"):
        return "absolute path"
    if "\\" in name:
        return "backslash in name"
    for ch in name:
        if unicodedata.category(ch) == "Cc":
            return f"control character U+{ord(ch):04X} in name"
    for part in name.split("/"):
        if part == "":
            return "empty path component"
        if part == "..":
            return "'..' path component"
        if part == ".":
            return "'.' path component"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            return f"path component longer than {MAX_COMPONENT_BYTES} bytes"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid Unicode (lone surrogate)"
    return None


def collision_key(name: str) -> str:
    """The key under which two names land on the same file on a case-insensitive or
    normalizing file system (macOS, Windows): NFC, then case-folded."""
    return unicodedata.normalize("NFC", name).casefold()


def parents(name: str) -> list[str]:
    """Every ancestor directory of ``name``, outermost first (``a/b/c`` → ``a``, ``a/b``)."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
