"""The kit's two signed documents: ``kit.json`` (what the kit holds, in import order) and each
part's ``part.json`` (which slice of the kit this part is, and the digests of every slice).

Our own signed schemas (STYLE §4): strict models, unknown fields refused, RFC 8785 bytes. Every
reader parses the signed bytes with :func:`parse_kit_manifest` / :func:`parse_part_manifest`,
which also require the canonical form: ``verify-kit.sh`` reads the same bytes with text tools
that rely on it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from export_center import TOOL_NAME, __version__
from export_center.errors import VerificationError

__all__ = [
    "Action",
    "FileRef",
    "KitBundle",
    "KitManifest",
    "PartManifest",
    "PartRef",
    "Tool",
    "canonical",
    "parse_kit_manifest",
    "parse_part_manifest",
    "this_tool",
]

Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0)]
Index = Annotated[int, Field(ge=1, le=999)]
# Kit-relative paths: plain ASCII names without quotes or backslashes (the shell reads them).
KitPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9._+-]+(/[A-Za-z0-9._+-]+)*$", max_length=255)]
KitId = Annotated[str, Field(pattern=r"^kit-[0-9a-f]{32}$")]

#: What ``stella kit import`` does with a bundle, decided by its profile.
Action = Literal["mirror-import", "trivy-install", "carry"]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel, populate_by_name=True
    )


class Tool(_Model):
    name: str
    version: str


def this_tool() -> Tool:
    return Tool(name=TOOL_NAME, version=__version__)


class FileRef(_Model):
    """A file: kit-relative path (or a part's file name), SHA-256 (hex) and size."""

    path: KitPath
    sha256: Hex
    size: Count


class KitBundle(_Model):
    """One bundle of the kit, as its signed export manifest describes it."""

    order: Index
    action: Action
    profile: str  # kind:variant
    profile_name: str
    tenant: str
    export_id: str
    as_of: Count
    manifest_digest: Digest  # of the bundle's manifests/export.json
    root_hash: Digest  # of its checksums.txt
    archive: FileRef
    sidecars: tuple[FileRef, ...]


class KitManifest(_Model):
    """``kit.json``: the bundles, in the order to import them."""

    schema_: Literal["https://stellaops.io/export-center/offline-kit/v1"] = Field(alias="schema")
    kit_id: KitId
    bundles: tuple[KitBundle, ...]
    tool: Tool


class PartRef(_Model):
    """One slice of the kit archive: ``size`` bytes at ``offset``, in file ``path``."""

    index: Index
    offset: Count
    path: KitPath
    sha256: Hex
    size: Count


class PartManifest(_Model):
    """``part.json``: this part's place in the kit, and the digests of every part."""

    schema_: Literal["https://stellaops.io/export-center/offline-kit-part/v1"] = Field(
        alias="schema"
    )
    kit_id: KitId
    kit_manifest: Digest  # sha256 of the kit's kit.json
    index: Index
    count: Index
    kit: FileRef  # the whole kit archive, once the parts are joined
    parts: tuple[PartRef, ...]
    tool: Tool

    @property
    def this(self) -> PartRef:
        return self.parts[self.index - 1]


def canonical(model: BaseModel) -> bytes:
    """The signed form: RFC 8785 of the model's JSON (camelCase keys)."""
    return bytes(rfc8785.dumps(model.model_dump(mode="json", by_alias=True)))


M = TypeVar("M", bound=BaseModel)


def _parse(data: bytes, model: type[M], where: str, check: str) -> M:
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise VerificationError(check, f"{where} is not JSON: {e}") from e
    if rfc8785.dumps(doc) != data:
        raise VerificationError(check, f"{where} is not RFC 8785 canonical JSON")
    try:
        return model.model_validate_json(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "document"
        raise VerificationError(check, f"{where}: {field}: {err['msg']}") from e


def parse_kit_manifest(data: bytes, where: str = "kit.json") -> KitManifest:
    """Parse signed ``kit.json`` bytes; orders must be 1..n in sequence.

    Raises:
        VerificationError: not canonical JSON, schema violated, or orders out of sequence.
    """
    manifest = _parse(data, KitManifest, where, "kit-manifest")
    if [b.order for b in manifest.bundles] != list(range(1, len(manifest.bundles) + 1)):
        raise VerificationError("kit-manifest", f"{where}: bundle orders are not 1..n")
    return manifest


def parse_part_manifest(data: bytes, where: str = "part.json") -> PartManifest:
    """Parse signed ``part.json`` bytes; the parts must tile the kit archive.

    Raises:
        VerificationError: not canonical JSON, schema violated, or an inconsistent table.
    """
    part = _parse(data, PartManifest, where, "part-manifest")
    if part.index > part.count or len(part.parts) != part.count:
        raise VerificationError(
            "part-manifest", f"{where}: index {part.index} / count {part.count} / table mismatch"
        )
    offset = 0
    for i, ref in enumerate(part.parts, start=1):
        if ref.index != i or ref.offset != offset:
            raise VerificationError("part-manifest", f"{where}: the parts table is out of order")
        offset += ref.size
    if offset != part.kit.size:
        raise VerificationError("part-manifest", f"{where}: the parts do not add up to the kit")
    return part
