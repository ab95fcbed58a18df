"""Publishing a bundle to a registry as one OCI artifact (docs/mirror.md, "OCI").

Shared by ``stella export push`` and the worker's automatic push after a successful run. The
bundle is written as an OCI image layout (:func:`~export_center.oci.layout.write_oci_layout`:
its files are the layers) and uploaded with the registry client. Nothing is verified here:
the bundle is the one this instance just published (or the operator names), and the importer
verifies whatever it pulls. Trivy bundles pushed for Trivy itself go through
:mod:`.trivy`, which verifies first.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from export_center.errors import BadInputError
from export_center.oci.layout import CONFIG_BYTES, OciArtifact, write_oci_layout
from export_center.oci.registry import RegistryClient, parse_ref

__all__ = ["push_bundle"]


def push_bundle(
    bundle: Path,
    ref: str,
    work: Path,
    *,
    client: httpx.Client | None = None,
    credentials: tuple[str, str] | None = None,
) -> OciArtifact:
    """Push ``bundle`` (archive or directory) to ``ref`` as one artifact; returns it (with the
    manifest digest the registry now serves under the tag).

    Raises:
        BadInputError: bad reference. NotFoundError: no such bundle.
        RegistryError: the registry refused.
        InsecureTransportError: a request (a redirect, the token realm) would go over plain
            HTTP to a non-loopback host.
    """
    oref = parse_ref(ref)
    if oref.reference.startswith("sha256:"):
        raise BadInputError(f"{ref}: push to a tag, not a digest")
    layout = work / "oci-layout"
    art = write_oci_layout(bundle, layout, tag=oref.reference)
    blobs = layout / "blobs" / "sha256"
    with RegistryClient(oref, client=client, credentials=credentials, actions="pull,push") as reg:
        for layer in sorted(set(art.layers), key=lambda x: x.digest):
            reg.push_blob(layer.digest, path=blobs / layer.digest.split(":", 1)[1])
        reg.push_blob(art.config_digest(), data=CONFIG_BYTES)
        reg.push_manifest(art.manifest, oref.reference)
    return art
