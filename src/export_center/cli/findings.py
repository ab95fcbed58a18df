"""``stella findings``: evaluated findings for one SBOM, without making an export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from export_center.cli import common
from export_center.errors import BadInputError

app = typer.Typer(add_completion=False)


@app.command("findings")
def findings(
    target: Annotated[
        str, typer.Argument(help="An SBOM file (CycloneDX or SPDX JSON), or a stored subject.")
    ],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy document (YAML or JSON).")
    ] = None,
    tenant: common.TenantOpt = None,
    as_of: Annotated[
        int | None,
        typer.Option("--as-of", min=0, help="Evidence sequence (default: the newest)."),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Match an SBOM against the stored advisories, apply VEX and the policy, print findings."""
    from export_center.policy.document import default_policy, load_policy
    from export_center.policy.evaluate import render
    from export_center.policy.service import evaluate_store, parse_sbom_file

    if policy is not None:
        pol = load_policy(common.read_input(policy, "the policy"), str(policy))
    else:
        pol = default_policy()
    store = common.open_store()
    t = common.tenant_or_default(tenant)
    path = Path(target)
    if path.is_dir():
        raise BadInputError(
            f"{target}: a directory, not an SBOM file",
            hint="give a CycloneDX or SPDX JSON SBOM, or the subject of a stored SBOM",
        )
    if path.is_file():
        content = common.read_input(
            path, "the SBOM", max_bytes=common.settings().max_document_bytes
        )
        sboms = parse_sbom_file(content, str(path))
        ev = evaluate_store(store, t, pol, as_of_seq=as_of, sboms=sboms)
    else:
        ev = evaluate_store(store, t, pol, as_of_seq=as_of, subjects=[target])
    outputs = render(ev)
    snapshot = orjson.loads(outputs.snapshot)
    if output == "json":
        common.print_json(
            {
                "asOf": snapshot["asOf"],
                "findings": [orjson.loads(line) for line in outputs.evaluations.splitlines()],
                "policy": {k: snapshot["policy"][k] for k in ("digest", "name", "version")},
                "skipped": snapshot["skipped"],
                "summary": snapshot["summary"],
            }
        )
        return
    subjects = sorted({f.subject for f in ev.findings}, key=str.encode)
    title = f"Findings ({pol.document.name} v{pol.document.version})"
    table = Table(title=title + (f"\n{subjects[0]}" if len(subjects) == 1 else ""))
    table.add_column("component", overflow="fold")
    for col in ("vulnerability", "severity", "fixed in", "status", "verdict"):
        table.add_column(col, no_wrap=col != "fixed in")
    many = len(subjects) > 1
    for f in ev.findings:
        sev = f.severity.level + (f" {f.severity.score}" if f.severity.score is not None else "")
        table.add_row(
            f"{f.subject}: {f.purl}" if many else f.purl,
            f.vulnerability_id,
            sev,
            ", ".join(f.fixed_versions),
            f.effective_status,
            f.verdict,
        )
    common.console.print(table)
    summary = snapshot["summary"]
    v = summary["verdicts"]
    common.console.print(
        f"{summary['findings']} findings: {v['fail']} fail, {v['warn']} warn, {v['pass']} pass; "
        f"{len(ev.skipped)} skipped; evidence {ev.as_of.tenant}@{ev.as_of.seq}; "
        f"policy {pol.digest}",
        highlight=False,
    )
    for s in ev.skipped:
        what = s.skip.purl or s.skip.component_name
        adv = f" ({s.skip.advisory_id})" if s.skip.advisory_id else ""
        common.err_console.print(
            f"skipped: {what}{adv}: {s.skip.reason}", highlight=False, markup=False
        )
