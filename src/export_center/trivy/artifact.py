"""Trivy's own OCI artifact form of its databases: which database is which, and its layout.

Trivy downloads its databases with ``--db-repository HOST/REPO:2`` and
``--java-db-repository HOST/REPO:1``: one image manifest, a config typed
``application/vnd.aquasec.trivy.config.v1+json`` (content not checked; ``{}`` here), and
exactly one layer, the ``db.tar.gz`` / ``javadb.tar.gz`` archive, titled with its file name
(docs/trivy.md, "What Trivy reads"). Trivy's bundles carry this artifact as an
OCI image layout under ``trivy/oci/db/`` (or ``trivy/oci/java-db/``) next to the archive, built
here from the layer's digest alone: no timestamps, RFC 8785 JSON, so the same archive always
gives the same manifest digest.

The trivy adapters stage this layout (:func:`layout_files`); pushing it to a registry is
:mod:`export_center.distribution.trivy`'s, which reads it back with :func:`read_trivy_layout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import rfc8785

from export_center.digests import prefixed, sha256_file, sha256_hex
from export_center.errors import VerificationError
from export_center.oci.layout import (
    INDEX_TYPE,
    LAYOUT_BYTES,
    LAYOUT_FILE,
    MANIFEST_TYPE,
    MAX_MANIFEST_BYTES,
    REF_NAME,
    TITLE,
)

__all__ = [
    "CONFIG_BYTES",
    "CONFIG_TYPE",
    "DB",
    "JAVA_DB",
    "KINDS",
    "TrivyArtifact",
    "TrivyDbKind",
    "build_trivy_manifest",
    "layout_files",
    "read_trivy_layout",
]

CONFIG_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
CONFIG_BYTES = b"{}"
_DIGEST_LEN = len("sha256:") + 64


@dataclass(frozen=True)
class TrivyDbKind:
    """One of Trivy's two databases: where it sits in a bundle, in an OCI artifact and in
    Trivy's cache directory."""

    variant: str  # the profile variant: "db" or "java-db"
    db_name: str  # the database file inside the archive and the cache
    archive_name: str  # the layer archive (its OCI title)
    layer_type: str
    tag: str  # the tag Trivy asks for
    schema_version: int  # metadata.json "Version"
    cache_subdir: str  # CACHE/<this>/

    @property
    def archive_path(self) -> str:
        """The archive's path in a bundle."""
        return f"trivy/{self.archive_name}"

    @property
    def layout_dir(self) -> str:
        """The OCI image layout's directory in a bundle."""
        return f"trivy/oci/{self.variant}"


DB = TrivyDbKind(
    variant="db",
    db_name="trivy.db",
    archive_name="db.tar.gz",
    layer_type="application/vnd.aquasec.trivy.db.layer.v1.tar+gzip",
    tag="2",
    schema_version=2,
    cache_subdir="db",
)
JAVA_DB = TrivyDbKind(
    variant="java-db",
    db_name="trivy-java.db",
    archive_name="javadb.tar.gz",
    layer_type="application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip",
    tag="1",
    schema_version=1,
    cache_subdir="java-db",
)
KINDS: dict[str, TrivyDbKind] = {DB.variant: DB, JAVA_DB.variant: JAVA_DB}


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def build_trivy_manifest(kind: TrivyDbKind, layer_digest: str, layer_size: int) -> bytes:
    """The image manifest of one Trivy database artifact (RFC 8785 bytes)."""
    return rfc8785.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": CONFIG_TYPE,
                "digest": prefixed(sha256_hex(CONFIG_BYTES)),
                "size": len(CONFIG_BYTES),
            },
            "layers": [
                {
                    "mediaType": kind.layer_type,
                    "digest": layer_digest,
                    "size": layer_size,
                    "annotations": {TITLE: kind.archive_name},
                }
            ],
        }
    )


def layout_files(
    kind: TrivyDbKind, layer_digest: str, layer_size: int
) -> tuple[list[tuple[str, bytes, str]], str]:
    """The small files of the OCI image layout of ``kind`` (path relative to the layout,
    bytes, content type), and the relative path the layer blob (the archive itself) goes to.

    The index names the manifest with the tag Trivy asks for (``2`` or ``1``).
    """
    manifest = build_trivy_manifest(kind, layer_digest, layer_size)
    manifest_digest = prefixed(sha256_hex(manifest))
    index = rfc8785.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "annotations": {REF_NAME: kind.tag},
                }
            ],
        }
    )
    files = [
        (LAYOUT_FILE, LAYOUT_BYTES, "application/json"),
        ("index.json", index, INDEX_TYPE),
        (_blob_name(manifest_digest), manifest, MANIFEST_TYPE),
        (_blob_name(prefixed(sha256_hex(CONFIG_BYTES))), CONFIG_BYTES, CONFIG_TYPE),
    ]
    return files, _blob_name(layer_digest)


@dataclass(frozen=True)
class TrivyArtifact:
    """A Trivy database artifact read from an OCI image layout."""

    kind: TrivyDbKind
    manifest: bytes
    manifest_digest: str
    layer_digest: str
    layer_size: int
    layer_path: Path  # the blob file holding the archive


def _loads(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise VerificationError("trivy-oci", f"{where}: not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise VerificationError("trivy-oci", f"{where}: not a JSON object")
    return doc


def _annotations(descriptor: dict[str, Any], where: str) -> dict[str, Any]:
    """A descriptor's annotations: absent, or a JSON object (a list is refused, not met as an
    AttributeError)."""
    value = descriptor.get("annotations")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VerificationError("trivy-oci", f"{where}: annotations are not a JSON object")
    return value


def _blob(layout: Path, digest: object, where: str) -> Path:
    if not isinstance(digest, str) or len(digest) != _DIGEST_LEN:
        raise VerificationError("trivy-oci", f"{where}: bad digest {digest!r}")
    hexpart = digest.removeprefix("sha256:")
    if not digest.startswith("sha256:") or any(c not in "0123456789abcdef" for c in hexpart):
        raise VerificationError("trivy-oci", f"{where}: bad digest {digest!r}")
    path = layout / "blobs" / "sha256" / hexpart
    if path.is_symlink() or not path.is_file():
        raise VerificationError("trivy-oci", f"{where}: blob {digest} is missing")
    if sha256_file(path)[0] != hexpart:
        raise VerificationError("trivy-oci", f"{where}: blob {digest} does not match its digest")
    return path


def read_trivy_layout(layout: Path, kind: TrivyDbKind) -> TrivyArtifact:
    """Read and check the Trivy artifact of ``kind`` in the OCI image layout ``layout``: one
    manifest tagged ``kind.tag``, Trivy's config type, exactly one layer of ``kind``'s media
    type and title, every blob present and matching its digest.

    Raises:
        VerificationError: (check ``trivy-oci``) anything else.
    """
    if (layout / LAYOUT_FILE).read_bytes() != LAYOUT_BYTES:
        raise VerificationError("trivy-oci", f"{layout}: unexpected {LAYOUT_FILE}")
    index = _loads((layout / "index.json").read_bytes(), f"{layout}/index.json")
    manifests = index.get("manifests")
    if not (isinstance(manifests, list) and len(manifests) == 1):
        raise VerificationError("trivy-oci", f"{layout}/index.json: expected one manifest")
    if not isinstance(manifests[0], dict):
        raise VerificationError("trivy-oci", f"{layout}/index.json: expected one manifest")
    desc = manifests[0]
    if _annotations(desc, "index.json").get(REF_NAME) != kind.tag:
        raise VerificationError("trivy-oci", f"{layout}: the manifest is not tagged {kind.tag}")
    manifest_path = _blob(layout, desc.get("digest"), "index.json")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise VerificationError("trivy-oci", f"{layout}: manifest too large")
    manifest = manifest_path.read_bytes()
    doc = _loads(manifest, "manifest")
    config, layers = doc.get("config"), doc.get("layers")
    if doc.get("mediaType") != MANIFEST_TYPE or not isinstance(config, dict):
        raise VerificationError("trivy-oci", f"{layout}: not an OCI image manifest")
    if config.get("mediaType") != CONFIG_TYPE:
        raise VerificationError("trivy-oci", f"{layout}: config is not {CONFIG_TYPE}")
    _blob(layout, config.get("digest"), "config")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise VerificationError("trivy-oci", f"{layout}: Trivy wants exactly one layer")
    layer = layers[0]
    if layer.get("mediaType") != kind.layer_type:
        raise VerificationError("trivy-oci", f"{layout}: layer is not {kind.layer_type}")
    if _annotations(layer, "layer").get(TITLE) != kind.archive_name:
        raise VerificationError("trivy-oci", f"{layout}: layer is not titled {kind.archive_name}")
    layer_path = _blob(layout, layer.get("digest"), "layer")
    if layer_path.stat().st_size != layer.get("size"):
        raise VerificationError("trivy-oci", f"{layout}: layer size differs from the manifest")
    return TrivyArtifact(
        kind,
        manifest,
        prefixed(sha256_hex(manifest)),
        str(layer["digest"]),
        int(layer["size"]),
        layer_path,
    )
