"""``stella airgap trivy-install``: verify a Trivy bundle, install its database in a cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from export_center.cli import common


def trivy_install(
    bundle: Annotated[
        str,
        typer.Argument(
            help="trivy:db or trivy:java-db bundle: archive, directory, oci:DIR[:TAG] or "
            "oci://HOST/REPO:TAG."
        ),
    ],
    cache_dir: Annotated[
        Path, typer.Option("--cache-dir", help="Trivy's cache directory (trivy --cache-dir).")
    ],
    trust_roots: Annotated[
        Path | None,
        typer.Option(
            "--trust-roots", help="PEM public keys (default: <data dir>/airgap/trust-roots.pem)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Install a database older than the installed one.")
    ] = False,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Refuse (exit 2) a bundle of any other tenant."),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Verify a Trivy bundle, then install its database into --cache-dir atomically.

    Installs db/trivy.db + db/metadata.json (trivy:db) or java-db/trivy-java.db +
    java-db/metadata.json (trivy:java-db). A bundle that fails verification is refused
    (exit 2) and the cache is left as it was. Scan with
    `trivy ... --cache-dir DIR --skip-db-update --skip-java-db-update --offline-scan`.
    """
    from export_center.cli.airgap._telemetry import record
    from export_center.distribution.trivy import TrivyBundleRefused
    from export_center.errors import ConflictError, VerificationError
    from export_center.importer.trivy_install import install_trivy_bundle

    common.check_output_dir(cache_dir, "the Trivy cache")
    roots = common.read_trust_roots(trust_roots)
    try:
        result = install_trivy_bundle(
            bundle,
            cache_dir,
            roots,
            force=force,
            registry_credentials=common.settings().registry_credentials,
            tenant=tenant,
        )
    except (VerificationError, ConflictError) as e:
        # A bundle that fails a check, or an older database than the installed one.
        record("trivy", "refused", exit_code=e.exit_code)
        if not isinstance(e, TrivyBundleRefused):
            raise
        if output == "json":
            common.print_json({"status": "refused", "reason": e.message, **e.report.as_json()})
        else:
            for c in e.report.checks:
                common.print_checks([c])
        raise
    record("trivy", "imported")
    inst = result.installed
    files = [str(inst.directory / inst.kind.db_name), str(inst.directory / "metadata.json")]
    if output == "json":
        common.print_json(
            {
                "status": "installed",
                "exportId": result.export_id,
                "rootHash": result.root_hash,
                "database": inst.kind.variant,
                "files": files,
                "metadata": inst.metadata,
                "replacedUpdatedAt": inst.replaced_updated_at,
                "report": result.report.as_json(),
            }
        )
        return
    for c in result.report.checks:
        common.print_checks([c])
    common.console.print(
        common.marked(
            "green",
            "installed",
            f" {files[0]} from {result.export_id} (UpdatedAt {inst.metadata['UpdatedAt']}, "
            f"NextUpdate {inst.metadata['NextUpdate']})",
        )
    )
