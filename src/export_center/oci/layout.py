"""Any bundle as an OCI image layout, and back (docs/mirror.md, "OCI").

One artifact manifest whose layers are the bundle's files, byte for byte, each titled with
``org.opencontainers.image.title`` (its path in the bundle), sorted by path; no timestamps, so
the same bundle gives the same manifest digest. ``artifactType`` names the bundle; the config is
the empty JSON object typed as an image config (``application/vnd.oci.image.config.v1+json``)
rather than OCI 1.1's empty descriptor type, because skopeo before 1.14 refuses ``inspect`` on
artifacts whose config is not an image config, and registries of the 2.x generation reject
unknown config types.

Reading (:func:`materialize`) is a security boundary like the archive reader: titles must be
safe relative paths (the archive reader's name rules), unique, within count and size limits, and
every blob is checked against its digest and size while it is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, TypeVar

import orjson
import rfc8785
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from export_center.archive._names import collision_key, name_problem
from export_center.digests import prefixed, sha256_hex
from export_center.errors import (
    BadInputError,
    NotFoundError,
    UnsafeArchiveError,
    VerificationError,
    output_error,
)

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
ARTIFACT_TYPE = "application/vnd.stellaops.export.bundle.v1"
LAYER_TYPE = "application/vnd.stellaops.export.bundle.file.v1"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
EXPORT_ID_ANNOTATION = "io.stellaops.export.id"
CONFIG_BYTES = b"{}"
LAYOUT_FILE = "oci-layout"
LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_LAYERS = 100_000
MAX_TOTAL_BYTES = 16 << 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    path: str
    digest: str  # sha256:<hex>
    size: int


@dataclass(frozen=True)
class OciArtifact:
    manifest: bytes
    manifest_digest: str
    layers: tuple[Layer, ...]
    export_id: str | None

    def config_digest(self) -> str:
        return prefixed(sha256_hex(CONFIG_BYTES))


def build_manifest(layers: list[Layer], export_id: str | None) -> bytes:
    """The artifact manifest (RFC 8785 bytes) over ``layers`` (sorted by path here)."""
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_TYPE,
            "digest": prefixed(sha256_hex(CONFIG_BYTES)),
            "size": len(CONFIG_BYTES),
        },
        "layers": [
            {
                "mediaType": LAYER_TYPE,
                "digest": layer.digest,
                "size": layer.size,
                "annotations": {TITLE: layer.path},
            }
            for layer in sorted(layers, key=lambda x: x.path.encode())
        ],
    }
    if export_id:
        body["annotations"] = {EXPORT_ID_ANNOTATION: export_id}
    return rfc8785.dumps(body)


def _iter_bundle_files(bundle: Path) -> Iterator[tuple[str, Callable[[], Iterator[bytes]]]]:
    if bundle.is_dir():
        for p in sorted(bundle.rglob("*"), key=lambda q: q.as_posix().encode()):
            if p.is_symlink() or (not p.is_file() and not p.is_dir()):
                raise UnsafeArchiveError(f"{p}: not a regular file")
            if p.is_file():

                def chunks(p: Path = p) -> Iterator[bytes]:
                    with p.open("rb") as fh:
                        while chunk := fh.read(_CHUNK):
                            yield chunk

                yield p.relative_to(bundle).as_posix(), chunks
        return
    if not bundle.is_file():
        raise NotFoundError(f"{bundle}: no such bundle")
    from export_center.archive.reader import Limits, iter_members

    for member in iter_members(bundle, Limits()):
        if not member.is_dir:
            yield member.name, member.chunks


def _put_blob(blobs: Path, chunks: Iterator[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".blob.")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        final = blobs / h.hexdigest()
        if final.exists():
            Path(tmp).unlink()
        else:
            Path(tmp).replace(final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return prefixed(h.hexdigest()), size


def write_oci_layout(bundle: Path, out_dir: Path, *, tag: str | None = None) -> OciArtifact:
    """Write ``bundle`` (archive or directory) as an OCI image layout at ``out_dir``.

    ``tag`` (the index's ``org.opencontainers.image.ref.name``) defaults to the export id.
    The layout is built next to ``out_dir`` and renamed into place (all or nothing).

    Raises:
        NotFoundError: no such bundle.
        BadInputError: ``out_dir`` exists and is not empty, cannot be created (a file in the
            way), or the bundle has no manifest.
        UnsafeArchiveError: the archive is hostile.
    """
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BadInputError(f"{out_dir}: exists and is not an empty directory")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as e:
        raise output_error(out_dir, "the OCI layout", e) from e
    try:
        blobs = tmp / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layers: list[Layer] = []
        export_id: str | None = None
        for path, chunks in _iter_bundle_files(bundle):
            digest, size = _put_blob(blobs, chunks())
            layers.append(Layer(path, digest, size))
            if path == "manifests/export.json":
                data = (blobs / digest.split(":", 1)[1]).read_bytes()
                export_id = _export_id(data)
        if export_id is None:
            raise BadInputError(f"{bundle}: not a bundle (no manifests/export.json)")
        manifest = build_manifest(layers, export_id)
        manifest_digest, _ = _put_blob(blobs, iter([manifest]))
        _put_blob(blobs, iter([CONFIG_BYTES]))
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "artifactType": ARTIFACT_TYPE,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "annotations": {REF_NAME: tag or export_id},
                }
            ],
        }
        (tmp / "index.json").write_bytes(rfc8785.dumps(index))
        (tmp / LAYOUT_FILE).write_bytes(LAYOUT_BYTES)
        if out_dir.exists():
            out_dir.rmdir()
        tmp.replace(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return OciArtifact(manifest, manifest_digest, tuple(layers), export_id)


def _export_id(manifest_json: bytes) -> str | None:
    try:
        doc = orjson.loads(manifest_json)
    except orjson.JSONDecodeError:
        return None
    value = doc.get("exportId") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


# -- reading -------------------------------------------------------------------------------
#
# index.json and the manifest come from outside: they become typed models first (a list where
# an object belongs, annotations that are not a string map, a size that is not a number are
# refused with the file and the field, never met later as an AttributeError). OCI is a foreign
# format: fields we do not read are allowed and ignored.


class _Oci(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class _Descriptor(_Oci):
    media_type: str = Field(default="", alias="mediaType")
    digest: str
    size: Annotated[int, Field(ge=0)]
    annotations: dict[str, str] = Field(default_factory=dict)


class _Index(_Oci):
    schema_version: Literal[2] = Field(alias="schemaVersion")
    manifests: Annotated[list[_Descriptor], Field(max_length=MAX_LAYERS)]


class _Manifest(_Oci):
    schema_version: Literal[2] = Field(alias="schemaVersion")
    media_type: str = Field(default=MANIFEST_TYPE, alias="mediaType")
    layers: Annotated[list[_Descriptor], Field(max_length=MAX_LAYERS)]
    annotations: dict[str, str] = Field(default_factory=dict)


_M = TypeVar("_M", bound=_Oci)


def _parse(model: type[_M], data: bytes, where: str, what: str) -> _M:
    """``data`` as ``model``, or UnsafeArchiveError naming the file and the field."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise UnsafeArchiveError(f"{where}: {what} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise UnsafeArchiveError(f"{where}: {what} is not a JSON object")
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise UnsafeArchiveError(f"{where}: {what}: {loc}: {first['msg']}") from e


def parse_manifest(data: bytes, where: str) -> list[Layer]:
    """The layers of an artifact manifest, validated (names, duplicates, limits).

    Raises:
        UnsafeArchiveError: a hostile or malformed manifest.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise UnsafeArchiveError(f"{where}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    doc = _parse(_Manifest, data, where, "manifest")
    if doc.media_type != MANIFEST_TYPE:
        raise UnsafeArchiveError(f"{where}: manifest media type {doc.media_type!r}")
    layers: list[Layer] = []
    seen: set[str] = set()
    total = 0
    for n, d in enumerate(doc.layers):
        title = d.annotations.get(TITLE)
        digest, size = d.digest, d.size
        if not isinstance(title, str):
            raise UnsafeArchiveError(f"{where}: layer {n} has no {TITLE}")
        if problem := name_problem(title):
            raise UnsafeArchiveError(f"{where}: layer {title!r}: {problem}")
        key = collision_key(title)
        if key in seen:
            raise UnsafeArchiveError(f"{where}: layer {title!r} appears twice")
        seen.add(key)
        if (
            not isinstance(digest, str)
            or not digest.startswith("sha256:")
            or len(digest) != 71
            or any(c not in "0123456789abcdef" for c in digest[7:])
        ):
            raise UnsafeArchiveError(f"{where}: layer {title!r}: bad digest {digest!r}")
        total += size
        if total > MAX_TOTAL_BYTES:
            raise UnsafeArchiveError(f"{where}: layers add up to more than {MAX_TOTAL_BYTES} bytes")
        layers.append(Layer(title, digest, size))
    # A file and a directory of the same name cannot both exist.
    prefixes = {t.rsplit("/", 1)[0] for t in seen if "/" in t}
    for p in sorted(prefixes):
        parts = p.split("/")
        for i in range(1, len(parts) + 1):
            if "/".join(parts[:i]) in seen:
                raise UnsafeArchiveError(
                    f"{where}: {'/'.join(parts[:i])!r} is a file and a directory"
                )
    return layers


BlobOpener = Callable[[Layer], Iterator[bytes]]


def materialize(layers: list[Layer], open_blob: BlobOpener, dest: Path) -> None:
    """Write every layer to ``dest/<title>``, checking size and sha256 as it streams.

    Raises:
        VerificationError: a blob does not match its descriptor.
    """
    dest.mkdir(parents=True, exist_ok=False)
    root = dest.resolve()
    for layer in layers:
        target = root / layer.path
        if not target.resolve().is_relative_to(root):
            raise UnsafeArchiveError(f"{layer.path}: leaves the destination")
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        with target.open("xb") as out:
            for chunk in open_blob(layer):
                size += len(chunk)
                if size > layer.size:
                    raise VerificationError("oci", f"{layer.path}: blob larger than {layer.size}")
                h.update(chunk)
                out.write(chunk)
        if size != layer.size or prefixed(h.hexdigest()) != layer.digest:
            raise VerificationError("oci", f"{layer.path}: blob does not match {layer.digest}")


def _read_file_chunks(fh: BinaryIO) -> Iterator[bytes]:
    while chunk := fh.read(_CHUNK):
        yield chunk


def read_oci_layout(layout: Path, tag: str | None, dest: Path) -> OciArtifact:
    """Materialize the bundle stored in the OCI layout ``layout`` (ref ``tag``, or the only
    manifest) into ``dest``.

    Raises:
        NotFoundError: not a layout, or no manifest with that tag.
        UnsafeArchiveError, VerificationError: as :func:`parse_manifest`, :func:`materialize`.
    """
    if not (layout / LAYOUT_FILE).is_file() or not (layout / "index.json").is_file():
        raise NotFoundError(f"{layout}: not an OCI image layout (no oci-layout/index.json)")
    index_path = layout / "index.json"
    if index_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise UnsafeArchiveError(f"{index_path}: larger than {MAX_MANIFEST_BYTES} bytes")
    index = _parse(_Index, index_path.read_bytes(), str(index_path), "image index")
    manifests = index.manifests
    if tag is not None:
        manifests = [m for m in manifests if m.annotations.get(REF_NAME) == tag]
    if len(manifests) != 1:
        raise NotFoundError(
            f"{layout}: {len(manifests)} manifests match {tag or 'any tag'}; name one tag"
        )
    digest = manifests[0].digest
    blobs = layout / "blobs" / "sha256"

    def blob_path(d: str) -> Path:
        hexpart = d.removeprefix("sha256:")
        if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
            raise UnsafeArchiveError(f"{layout}: bad blob digest {d!r}")
        p = blobs / hexpart
        if p.is_symlink() or not p.is_file():
            raise NotFoundError(f"{layout}: blob {d} is missing")
        return p

    mpath = blob_path(digest)
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise UnsafeArchiveError(f"{layout}: manifest blob too large")
    manifest = mpath.read_bytes()
    if prefixed(sha256_hex(manifest)) != digest:
        raise VerificationError("oci", f"{layout}: manifest does not match {digest}")
    layers = parse_manifest(manifest, str(layout))

    def open_blob(layer: Layer) -> Iterator[bytes]:
        with blob_path(layer.digest).open("rb") as fh:
            yield from _read_file_chunks(fh)

    materialize(layers, open_blob, dest)
    export_id = _parse(_Manifest, manifest, str(layout), "manifest").annotations.get(
        EXPORT_ID_ANNOTATION
    )
    return OciArtifact(manifest, digest, tuple(layers), export_id)
