"""``stella policy upload|list|show``: the tenant's stored policy documents.

json:policy and mirror profiles name a stored policy (``stella export profile create ...
--policy NAME``); the revision pins the digest of the newest version at that time. A policy is
never a server file a profile names (docs/security.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from export_center.cli import common, remote
from export_center.errors import BadInputError, NotFoundError

if TYPE_CHECKING:
    from export_center.policy.repository import PolicyStore, StoredPolicy

app = typer.Typer(
    name="policy",
    help="Policy documents of a tenant: upload, list, show.",
    no_args_is_help=True,
    add_completion=False,
)


def _store() -> PolicyStore:
    from export_center.policy.repository import PolicyStore

    return PolicyStore(common.open_store())


def _summary(p: StoredPolicy) -> dict[str, Any]:
    doc = p.document
    return {
        "tenant": p.tenant,
        "name": p.name,
        "version": p.version,
        "digest": p.digest,
        "mediaType": p.media_type,
        "documentName": str(doc.get("name", "")),
        "documentVersion": str(doc.get("version", "")),
        "createdAt": p.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _public(p: StoredPolicy) -> dict[str, Any]:
    return {**_summary(p), "document": p.document, "content": p.content.decode("utf-8")}


def _check_format(output: str) -> None:
    if output not in ("table", "json"):
        raise BadInputError(f"--format {output!r}: choose table or json")


@app.command("upload")
def upload(
    name: Annotated[str, typer.Argument(help="Policy name (a-z, 0-9, '.', '_', '-').")],
    file: Annotated[Path, typer.Argument(help="Policy document (YAML or JSON).")],
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Store FILE as the next version of policy NAME (the same document again adds none)."""
    from export_center.policy.repository import MAX_POLICY_BYTES, check_policy_name, parse_upload

    _check_format(output)
    check_policy_name(name)
    try:
        size = file.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise BadInputError(
                f"{file}: {size} bytes; a policy document is at most {MAX_POLICY_BYTES}"
            )
        content = file.read_bytes()
    except FileNotFoundError as e:
        raise NotFoundError(f"{file}: no such policy file") from e
    except OSError as e:
        raise BadInputError(f"{file}: cannot read: {e.strerror}") from e
    if server:
        parse_upload(content, str(file))  # the same checks, with the file's name in errors
        with remote.client(server, token, tenant) as api:
            r = api.upload_policy(name, content.decode("utf-8"))
        created = None
    else:
        stored, created = _store().upload(common.tenant_or_default(tenant), name, content)
        r = _public(stored)
    if output == "json":
        common.print_json(r)
        return
    what = {True: "stored", False: "unchanged (same digest as)", None: "stored"}[created]
    common.console.print(
        f"{what} policy {r['name']} version {r['version']} ({r['digest']})", highlight=False
    )


@app.command("list")
def list_policies(
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """List the tenant's policies (the newest version of each)."""
    _check_format(output)
    if server:
        with remote.client(server, token, tenant) as api:
            items = api.list_policies()
    else:
        stored, _ = _store().list(common.tenant_or_default(tenant), limit=10**6)
        items = [_summary(p) for p in stored]
    if output == "json":
        common.print_json({"items": items, "total": len(items)})
        return
    table = Table(title=f"{len(items)} policies")
    for col in ("name", "version", "document", "digest", "created"):
        table.add_column(col)
    for p in items:
        table.add_row(
            p["name"],
            f"v{p['version']}",
            f"{p['documentName']} {p['documentVersion']}",
            p["digest"][:23],
            p["createdAt"],
        )
    common.console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument()],
    version: Annotated[int | None, typer.Option("--version", help="This version.")] = None,
    digest: Annotated[str | None, typer.Option("--digest", help="The version with it.")] = None,
    versions: Annotated[
        bool, typer.Option("--versions", help="List every version instead.")
    ] = False,
    tenant: common.TenantOpt = None,
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Print a policy version (the newest by default) as JSON, or its versions."""
    if server:
        with remote.client(server, token, tenant) as api:
            if versions:
                common.print_json(api.policy_versions(name))
            else:
                common.print_json(api.get_policy(name, version=version, digest=digest))
        return
    t = common.tenant_or_default(tenant)
    if versions:
        common.print_json([_summary(p) for p in _store().versions(t, name)])
        return
    common.print_json(_public(_store().get(t, name, version=version, digest=digest)))
