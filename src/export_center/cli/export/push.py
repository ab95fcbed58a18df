"""``stella export push``: a bundle as one OCI artifact, to a registry or an OCI layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from export_center.cli import common
from export_center.errors import BadInputError, ExitCode


def push(
    bundle: Annotated[Path, typer.Argument(help="Archive (.tar.zst/.tar.gz) or bundle directory.")],
    target: Annotated[
        str,
        typer.Argument(help="oci://HOST/REPO:TAG (a registry) or oci:DIR[:TAG] (an OCI layout)."),
    ],
    output: common.FormatOpt = "table",
    trust_roots: Annotated[
        Path | None,
        typer.Option(
            "--trust-roots",
            help="Trivy bundles: PEM public keys the bundle is verified against before the push "
            "(default: <data dir>/airgap/trust-roots.pem).",
        ),
    ] = None,
) -> None:
    """Publish a bundle as one OCI artifact (its files are the layers) to a registry or layout.

    A trivy:db / trivy:java-db bundle pushed to a registry is verified first, then sent as
    Trivy's own artifact (for trivy --db-repository / --java-db-repository; tag 2 / 1 when
    the reference names none).

    Plain HTTP is used only for loopback registries; credentials come from
    STELLA_REGISTRY_USERNAME / STELLA_REGISTRY_PASSWORD.
    """
    import shutil
    import tempfile

    from export_center.distribution.push import push_bundle
    from export_center.oci.layout import write_oci_layout

    if not bundle.exists():
        common.fail(f"{bundle}: no such bundle", ExitCode.NOT_FOUND)
    from export_center.distribution.trivy import is_trivy_bundle

    if not (target.startswith("oci:") and not target.startswith("oci://")) and is_trivy_bundle(
        bundle
    ):
        _push_trivy(bundle, target, trust_roots, output)
        return
    if target.startswith("oci://"):
        work = Path(tempfile.mkdtemp(prefix="stella-push-"))
        try:
            credentials = common.settings().registry_credentials
            art = push_bundle(bundle, target, work, credentials=credentials)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    elif target.startswith("oci:"):
        rest = target[len("oci:") :]
        path, sep, tag = rest.rpartition(":")
        if not (sep and path and "/" not in tag):
            path, tag = rest, ""
        layout = common.check_output_dir(Path(path), "the OCI layout")
        art = write_oci_layout(bundle, layout, tag=tag or None)
    else:
        raise BadInputError(f"{target!r}: expected oci://HOST/REPO:TAG or oci:DIR[:TAG]")
    result = {
        "target": target,
        "exportId": art.export_id,
        "manifestDigest": art.manifest_digest,
        "layers": len(art.layers),
        "bytes": sum(layer.size for layer in art.layers),
    }
    if output == "json":
        common.print_json(result)
        return
    common.console.print(
        f"pushed {art.export_id} to {target}: {len(art.layers)} files, manifest "
        f"{art.manifest_digest}",
        highlight=False,
    )


def _push_trivy(bundle: Path, target: str, trust_roots: Path | None, output: str) -> None:
    """``push`` of a Trivy bundle: verify it, push Trivy's artifact (distribution/trivy.py)."""
    from export_center.distribution.trivy import push_trivy_bundle

    digest = push_trivy_bundle(
        bundle,
        target,
        trust_roots=common.read_trust_roots(trust_roots),
        credentials=common.settings().registry_credentials,
    )
    if output == "json":
        common.print_json({"target": target, "manifestDigest": digest, "verified": True})
        return
    common.console.print(
        f"verified {bundle.name} and pushed its Trivy database to {target}: manifest {digest}",
        highlight=False,
    )
