"""``manifest.json`` of a devportal:offline bundle (docs/devportal.md, "The bundle").

The model is the schema: field names are exactly the spec's, unknown fields are refused when a
manifest is read back, and the bytes are RFC 8785 canonical JSON, so the same input always gives
the same manifest (and, with an Ed25519 key, the same signature).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from export_center.checksums import build_checksums
from export_center.digests import sha256_hex

__all__ = [
    "BUNDLE_ID_PREFIX",
    "MANIFEST_VERSION",
    "PAYLOAD_TYPE",
    "Category",
    "DevportalManifest",
    "Entry",
    "Sources",
    "Totals",
    "build_manifest",
    "bundle_id_for",
    "category_of",
    "content_type_for",
    "format_generated_at",
]

MANIFEST_VERSION = "devportal-offline/v1"
#: DSSE payloadType of manifest.dsse.json.
PAYLOAD_TYPE = "application/vnd.stellaops.devportal-manifest+json"
BUNDLE_ID_PREFIX = "devportal-"

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_SDK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class Category(StrEnum):
    PORTAL = "portal"
    SPECS = "specs"
    SDK = "sdk"
    CHANGELOG = "changelog"


#: Top-level input (and bundle) directory of each category.
CATEGORY_DIRS: Mapping[Category, str] = {
    Category.PORTAL: "portal",
    Category.SPECS: "specs",
    Category.SDK: "sdks",
    Category.CHANGELOG: "changelog",
}


def category_of(path: str) -> Category | None:
    """The category of a bundle path (``sdks/<name>/...`` needs the name level), or None."""
    top, sep, rest = path.partition("/")
    if not sep or not rest:
        return None
    for category, directory in CATEGORY_DIRS.items():
        if top == directory:
            if category is Category.SDK:
                name, sep, tail = rest.partition("/")
                return category if sep and tail and _SDK_NAME.match(name) else None
            return category
    return None


# A fixed table rather than `mimetypes`, which reads /etc/mime.types and so differs per host.
_CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html",
    ".htm": "text/html",
    ".xhtml": "application/xhtml+xml",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".rst": "text/x-rst",
    ".csv": "text/csv",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".whl": "application/zip",
    ".jar": "application/java-archive",
    ".tgz": "application/gzip",
    ".gz": "application/gzip",
    ".tar": "application/x-tar",
    ".wasm": "application/wasm",
}


def content_type_for(path: str) -> str:
    """Media type by file suffix (``application/octet-stream`` when unknown)."""
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    suffix = name[dot:] if dot > 0 else ""  # ".htaccess" has no suffix
    return _CONTENT_TYPES.get(suffix, "application/octet-stream")


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class Entry(_Model):
    category: Category
    path: str
    sha256: str
    size_bytes: Annotated[int, Field(ge=0)]
    content_type: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _SHA256_HEX.match(v):
            raise ValueError("must be 64 lowercase hex digits")
        return v

    @model_validator(mode="after")
    def _category_matches_path(self) -> Entry:
        if category_of(self.path) is not self.category:
            raise ValueError(f"path {self.path!r} is not under the {self.category} directory")
        return self


class Sources(_Model):
    portal_included: bool
    specs_included: bool
    sdk_names: tuple[str, ...]
    changelog_included: bool


class Totals(_Model):
    entry_count: Annotated[int, Field(ge=0)]
    total_size_bytes: Annotated[int, Field(ge=0)]


class DevportalManifest(_Model):
    """The manifest; construct with :func:`build_manifest`, read with ``model_validate_json``.

    Reading checks internal consistency too: entries sorted and unique, sources and totals
    derived from the entries, bundleId derived from them.
    """

    version: Literal["devportal-offline/v1"]
    bundle_id: str
    generated_at: str
    metadata: dict[str, Any]
    sources: Sources
    totals: Totals
    entries: tuple[Entry, ...]

    @field_validator("generated_at")
    @classmethod
    def _rfc3339(cls, v: str) -> str:
        if not v.endswith("Z"):
            raise ValueError("must be an RFC 3339 UTC time ending in 'Z'")
        datetime.fromisoformat(v)  # ValueError names the problem
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DevportalManifest:
        paths = [e.path for e in self.entries]
        if paths != sorted(set(paths), key=_path_key):
            raise ValueError("entries must be sorted by path (bytewise) without duplicates")
        expected_sources = _sources(self.entries)
        if self.sources != expected_sources:
            raise ValueError(
                f"sources {self.sources.model_dump(by_alias=True)} do not match the entries "
                f"({expected_sources.model_dump(by_alias=True)})"
            )
        if self.totals != _totals(self.entries):
            raise ValueError("totals do not match the entries")
        if self.bundle_id != bundle_id_for(self.entries):
            raise ValueError("bundleId is not the one derived from the entries")
        return self

    def canonical(self) -> bytes:
        """RFC 8785 bytes: what manifest.json holds and the DSSE envelope signs."""
        return rfc8785.dumps(self.model_dump(mode="json", by_alias=True))


def _path_key(path: str) -> bytes:
    return path.encode("utf-8", errors="surrogateescape")


def _sources(entries: Iterable[Entry]) -> Sources:
    categories = {e.category for e in entries}
    sdk_names = sorted(
        {e.path.split("/", 2)[1] for e in entries if e.category is Category.SDK}, key=_path_key
    )
    return Sources(
        portal_included=Category.PORTAL in categories,
        specs_included=Category.SPECS in categories,
        sdk_names=tuple(sdk_names),
        changelog_included=Category.CHANGELOG in categories,
    )


def _totals(entries: Sequence[Entry]) -> Totals:
    return Totals(entry_count=len(entries), total_size_bytes=sum(e.size_bytes for e in entries))


def bundle_id_for(entries: Iterable[Entry]) -> str:
    """``devportal-`` + 32 hex digits of the content digest.

    The content digest is the SHA-256 of the content files' ``sha256sum`` lines
    (``<hex>  <path>\\n``, sorted by path): it names what the bundle carries, independent of
    the time, the metadata or the signing key.
    """
    listing = build_checksums((e.path, e.sha256) for e in entries)
    return BUNDLE_ID_PREFIX + sha256_hex(listing)[:32]


def format_generated_at(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` (seconds, plus microseconds only when non-zero).

    Raises:
        ValueError: ``moment`` has no time zone.
    """
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_manifest(
    entries: Iterable[Entry], *, generated_at: datetime, metadata: Mapping[str, Any]
) -> DevportalManifest:
    """The manifest over ``entries`` (sorted here), with derived sources, totals and bundleId.

    Raises:
        ValueError: duplicate paths, or ``generated_at`` without a time zone.
    """
    ordered = tuple(sorted(entries, key=lambda e: _path_key(e.path)))
    return DevportalManifest(
        version=MANIFEST_VERSION,
        bundle_id=bundle_id_for(ordered),
        generated_at=format_generated_at(generated_at),
        metadata=dict(metadata),
        sources=_sources(ordered),
        totals=_totals(ordered),
        entries=ordered,
    )
