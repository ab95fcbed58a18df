"""``stella airgap``: mirror bundles (verify, import, generations) and Trivy databases."""

from __future__ import annotations

import typer

from export_center.cli.airgap import mirror, trivy

app = typer.Typer(
    name="airgap",
    help="Verify and import mirror bundles on a disconnected instance.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("verify-bundle")(mirror.verify_bundle_cmd)
app.command("import")(mirror.import_cmd)
app.command("status")(mirror.status)
app.command("list")(mirror.list_cmd)
app.command("trivy-install")(trivy.trivy_install)
app.add_typer(mirror.quarantine_app, name="quarantine")
