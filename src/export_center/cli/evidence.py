"""``stella evidence stats|show``."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.table import Table

from export_center.cli import common

app = typer.Typer(
    name="evidence",
    help="Look at what the evidence store holds.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("stats")
def stats(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant (default: all).")
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Current record counts per tenant, source and type."""
    store = common.open_store()
    rows = store.stats(tenant)
    if output == "json":
        common.print_json(
            {
                "tenants": {
                    t: {"sequence": store.current_sequence(t)}
                    for t in sorted({r.tenant for r in rows})
                },
                "rows": [
                    {
                        "tenant": r.tenant,
                        "source": r.source,
                        "type": r.doc_type,
                        "records": r.records,
                        "withdrawn": r.withdrawn,
                        "bytes": r.bytes,
                    }
                    for r in rows
                ],
            }
        )
        return
    table = Table(title="Evidence store")
    for col in ("tenant", "source", "type", "records", "withdrawn", "bytes"):
        table.add_column(
            col, justify="right" if col in {"records", "withdrawn", "bytes"} else "left"
        )
    for r in rows:
        table.add_row(
            r.tenant, r.source, r.doc_type, str(r.records), str(r.withdrawn), f"{r.bytes:,}"
        )
    common.console.print(table)
    for t in sorted({r.tenant for r in rows}):
        common.console.print(f"tenant {t}: change sequence {store.current_sequence(t)}")


@app.command("show")
def show(
    record_id: Annotated[str, typer.Argument(help="Observation id or upstream id.")],
    tenant: common.TenantOpt = None,
    raw: Annotated[bool, typer.Option("--raw", help="Print the raw bytes as stored.")] = False,
) -> None:
    """Show one record: its metadata and normalized view (or its raw bytes)."""
    store = common.open_store()
    t = common.tenant_or_default(tenant)
    rec = store.get_raw(t, record_id)
    if raw:
        typer.echo(rec.content.decode("utf-8", errors="replace"), nl=False)
        return
    normalized = store.get_normalized(t, rec.id)
    common.print_json(
        {
            "observationId": rec.observation_id,
            "source": rec.source,
            "upstreamId": rec.upstream_id,
            "revision": rec.revision,
            "type": rec.doc_type,
            "format": rec.format,
            "mediaType": rec.media_type,
            "digest": rec.digest,
            "bytes": rec.size,
            "withdrawn": rec.withdrawn,
            "sequence": rec.seq,
            "supersedes": rec.supersedes,
            "normalized": orjson.loads(normalized) if normalized else None,
        }
    )
