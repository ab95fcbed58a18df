"""Helpers shared by the format readers: typed access to untrusted parsed JSON, purls, ordering.

Readers never index parsed documents directly: every field goes through one of the accessors
below, which raise :class:`Invalid` naming the field path (``affected[2].package.name``) and
what was wrong. A reader turns that into a refusal for the user, so a document of the wrong
shape is refused with a reason instead of crashing the ingest with a ``KeyError``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

from packageurl import PackageURL

MAX_UPSTREAM_ID = 512


class Invalid(Exception):
    """A field of a parsed document is missing or of the wrong type."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}" if path else why)
        self.path = path
        self.why = why

    @property
    def message(self) -> str:
        return str(self)


def kind(value: Any) -> str:
    """The JSON type name of a parsed value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def at(path: str, key: str | int) -> str:
    """Extend a field path: ``at("affected", 0)`` → ``affected[0]``, ``at("a", "b")`` → ``a.b``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def as_obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(path, f"expected an object, got {kind(value)}")
    return value


def as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise Invalid(path, f"expected a string, got {kind(value)}")
    return value


# The accessors below check the value first and build the field path only to report an error:
# every field of every record goes through them, and building paths eagerly was a tenth of
# the ingest time.


def req_str(d: dict[str, Any], key: str, path: str = "") -> str:
    """A required, non-empty string field."""
    s = d.get(key)
    if isinstance(s, str) and s.strip():
        return s
    p = at(path, key)
    if s is None:
        raise Invalid(p, "missing (required)")
    as_str(s, p)
    raise Invalid(p, "is empty")


def opt_str(d: dict[str, Any], key: str, path: str = "") -> str | None:
    """An optional string field: None when absent, null or empty."""
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        as_str(v, at(path, key))
    return v if v else None


def req_obj(d: dict[str, Any], key: str, path: str = "") -> dict[str, Any]:
    v = d.get(key)
    if isinstance(v, dict):
        return v
    p = at(path, key)
    if v is None:
        raise Invalid(p, "missing (required)")
    return as_obj(v, p)


def opt_obj(d: dict[str, Any], key: str, path: str = "") -> dict[str, Any] | None:
    v = d.get(key)
    if v is None or isinstance(v, dict):
        return v
    return as_obj(v, at(path, key))


def opt_list(d: dict[str, Any], key: str, path: str = "") -> list[Any]:
    """An optional array field: ``[]`` when absent or null."""
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise Invalid(at(path, key), f"expected an array, got {kind(v)}")
    return v


def str_list(d: dict[str, Any], key: str, path: str = "") -> list[str]:
    """An optional array of strings."""
    values = opt_list(d, key, path)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            as_str(v, at(at(path, key), i))
    return list(values)  # a copy: callers may extend it, the parsed document stays as read


def obj_list(d: dict[str, Any], key: str, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """An optional array of objects, each with its own path."""
    p = at(path, key)
    return [(at(p, i), as_obj(v, at(p, i))) for i, v in enumerate(opt_list(d, key, path))]


def loose_str(d: Any, key: str) -> str | None:
    """A string from a free-form object (``database_specific``): anything else is ignored."""
    if isinstance(d, dict):
        v = d.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def unique(values: Iterable[str]) -> tuple[str, ...]:
    """Deduplicated, in first-seen (source) order."""
    return tuple(dict.fromkeys(values))


def sorted_unique(values: Iterable[str], *, exclude: str | None = None) -> tuple[str, ...]:
    """Deduplicated and sorted: for lists whose order carries no meaning (aliases, CWEs)."""
    return tuple(sorted({v for v in values if v and v != exclude}))


# ---- purls --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)  # PackageURL is an immutable named tuple; purls repeat
def parse_purl(value: str | None) -> PackageURL | None:
    """A parsed purl, or None when ``value`` is absent or not a valid purl."""
    if not value:
        return None
    try:
        return PackageURL.from_string(value)
    except ValueError:
        return None


def _parts(p: PackageURL) -> tuple[Any, ...]:
    return (p.type, p.namespace, p.name, p.version, p.qualifiers, p.subpath)


@functools.lru_cache(maxsize=8192)  # SBOMs and VEX repeat the same purls many times
def canonical_purl(value: str | None) -> str | None:
    """The canonical string form of a purl (type lowercased, qualifiers sorted, ...), or None
    when the value is not a valid purl. Invalid purls are dropped, never an error.

    The canonical form is used only when it parses back to the same purl: packageurl-python
    does not re-encode a ``/`` inside a name, so ``pkg:k8s/k8s.io%2Fkubelet`` would turn into
    ``pkg:k8s/k8s.io/kubelet`` (namespace ``k8s.io``), another package. Such purls are kept
    as given.
    """
    p = parse_purl(value)
    if p is None or value is None:
        return None
    try:
        text = str(p.to_string())
    except ValueError:
        return value
    again = parse_purl(text)
    return text if again is not None and _parts(again) == _parts(p) else value


def purl_package_name(p: PackageURL) -> str:
    """The ecosystem's own package name for a purl: Maven ``group:artifact``, npm
    ``@scope/name``, Go module path ``host/path/name``, OS packages without their distro
    namespace."""
    name = str(p.name)
    ns = str(p.namespace) if p.namespace else ""
    if not ns:
        return name
    if p.type == "maven":
        return f"{ns}:{name}"
    if p.type in ("deb", "rpm", "apk", "alpm", "qpkg"):
        return name  # the namespace is the distro vendor, not part of the package name
    return f"{ns}/{name}"


def purl_with_version(purl: str, version: str) -> str:
    """``purl`` with its version set to ``version`` (used for VEX products given as
    product + version)."""
    p = parse_purl(purl)
    if p is None:
        return f"{purl}@{version}"
    try:
        wanted = PackageURL(
            type=p.type,
            namespace=p.namespace,
            name=p.name,
            version=version,
            qualifiers=p.qualifiers,
            subpath=p.subpath,
        )
        text = str(wanted.to_string())
        again = parse_purl(text)
        if again is not None and _parts(again) == _parts(wanted):
            return text
    except ValueError:
        pass
    # Not representable through packageurl-python (see canonical_purl): splice the text.
    head, sep, tail = purl.partition("?") if "?" in purl else purl.partition("#")
    return f"{head.split('@', 1)[0]}@{version}{sep}{tail}"


# ---- identity -----------------------------------------------------------------------------


def content_id(content: bytes) -> str:
    """A content-derived upstream id for documents that carry no identifier of their own."""
    return "sha256:" + hashlib.sha256(content).hexdigest()


def file_label(where: str) -> str:
    """The file name part of ``where`` (``dir/a.tar!x/bom.json`` → ``bom.json``)."""
    tail = where.rsplit("!", 1)[-1]
    return tail.replace("\\", "/").rsplit("/", 1)[-1] or where


def check_upstream_id(upstream_id: str) -> str:
    if len(upstream_id) > MAX_UPSTREAM_ID:
        raise Invalid("", f"identifier is {len(upstream_id)} characters, over {MAX_UPSTREAM_ID}")
    return upstream_id
