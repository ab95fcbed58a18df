"""``stella export profile create|revise|list|show|archive``: immutable profile revisions.

The planner (pydantic models, the SQL store) is imported by the commands, not at the top:
every ``stella export ...`` imports this module, ``export verify`` and ``export push`` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.table import Table

from export_center.cli import common, remote
from export_center.errors import BadInputError
from export_center.safe_yaml import load_yaml

if TYPE_CHECKING:
    from export_center.planner.profiles import ProfileSpec
    from export_center.planner.registry import ProfileRegistry, ProfileRevisionView

app = typer.Typer(
    name="profile",
    help="Manage export profiles (immutable revisions).",
    no_args_is_help=True,
    add_completion=False,
)


def _registry() -> ProfileRegistry:
    """The profile registry of the local store, checking what a revision names against the
    tenant's keys, policies and published exports (as the service does)."""
    from export_center.adapters.registry import EXPORTABLE
    from export_center.exporter import ProfileReferences
    from export_center.planner.registry import ProfileRegistry

    store = common.open_store()
    return ProfileRegistry(
        store, references=ProfileReferences(common.settings(), store), exportable=EXPORTABLE
    )


def _profile_json(p: ProfileRevisionView) -> dict[str, Any]:
    return {
        "tenant": p.tenant,
        "name": p.name,
        "revision": p.revision,
        "digest": p.digest,
        "archived": p.archived,
        "spec": p.spec.model_dump(mode="json", by_alias=True),
        "problem": p.problem,
    }


def _read_body(file: Path) -> dict[str, Any]:
    text = common.read_input(file, "the profile")
    if file.suffix in {".yaml", ".yml"}:
        loaded = load_yaml(text, str(file))
    else:
        try:
            loaded = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise BadInputError(
                f"{file}: malformed JSON profile at line {e.lineno} column {e.colno}: {e.msg}"
            ) from e
    if not isinstance(loaded, dict):
        raise BadInputError(f"{file}: a profile must be an object")
    return loaded


def _spec_from_options(
    base: dict[str, Any],
    where: str,
    kind: str | None,
    variant: str | None,
    sources: list[str] | None,
    ecosystems: list[str] | None,
    include: list[str] | None,
    compression: str | None,
    level: int | None,
    key: str | None,
    policy: str | None,
) -> ProfileSpec:
    """``base`` (a file's body, or the current revision's) with the options applied, parsed
    with the model of its kind.

    Raises:
        RequestValidationFailed: naming each invalid field.
    """
    from export_center.planner.profiles import parse_profile_spec

    data = dict(base)
    if kind:
        data["kind"] = kind
    if variant:
        data["variant"] = variant
    selectors = dict(data.get("selectors") or {})
    if sources:
        selectors["sources"] = sources
    if ecosystems:
        selectors["ecosystems"] = ecosystems
    if selectors:
        data["selectors"] = selectors
    if include:
        data["include"] = include
    if compression or level:
        comp = dict(data.get("compression") or {})
        if compression:
            if not level and compression != comp.get("algorithm"):
                comp.pop("level", None)  # the old algorithm's level: the new one's default
            comp["algorithm"] = compression
        if level:
            comp["level"] = level
        data["compression"] = comp
    if key:
        data["signing"] = {"key": key}
    if policy:
        # A new name (or the same one again) is pinned to its newest version.
        mode = dict(data.get("policy") or {}).get("policySnapshotMode")
        keep = mode in ("required", "optional")
        data["policy"] = {"name": policy} | ({"policySnapshotMode": mode} if keep else {})
    return parse_profile_spec(data, where)


FileOpt = Annotated[Path | None, typer.Option("--file", help="Profile body (JSON or YAML).")]
KindOpt = Annotated[str | None, typer.Option("--kind", help="json | trivy | mirror | devportal")]
VariantOpt = Annotated[str | None, typer.Option("--variant", help="raw | policy | db | ...")]
SourceOpt = Annotated[list[str] | None, typer.Option("--source", help="Selector: source name.")]
EcoOpt = Annotated[list[str] | None, typer.Option("--ecosystem", help="Selector: purl type.")]
IncludeOpt = Annotated[
    list[str] | None, typer.Option("--include", help="advisories | vex | sboms | findings")
]
CompOpt = Annotated[str | None, typer.Option("--compression", help="zstd | gzip | none")]
LevelOpt = Annotated[int | None, typer.Option("--level", help="Compression level (zstd 1-22).")]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="Full keyid of one of the tenant's keys (default: its newest)."),
]
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--policy", help="Stored policy (stella policy upload); its newest version is pinned."
    ),
]


@app.command("create")
def profile_create(
    name: Annotated[str, typer.Argument(help="Profile name (a-z, 0-9, '-').")],
    file: FileOpt = None,
    kind: KindOpt = None,
    variant: VariantOpt = None,
    source: SourceOpt = None,
    ecosystem: EcoOpt = None,
    include: IncludeOpt = None,
    compression: CompOpt = None,
    level: LevelOpt = None,
    key: KeyOpt = None,
    policy: PolicyOpt = None,
    tenant: common.TenantOpt = None,
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Create a profile (revision r1)."""
    spec = _spec_from_options(
        _read_body(file) if file is not None else {},
        str(file) if file else "profile options",
        kind,
        variant,
        source,
        ecosystem,
        include,
        compression,
        level,
        key,
        policy,
    )
    if server:
        with remote.client(server, token, tenant) as api:
            r = api.create_profile(name, spec.model_dump(mode="json", by_alias=True))
        common.console.print(
            f"created profile {r['name']} r{r['revision']} ({r['digest']})", highlight=False
        )
        return
    p = _registry().create(common.tenant_or_default(tenant), name, spec)
    common.console.print(f"created profile {p.name} r{p.revision} ({p.digest})", highlight=False)


@app.command("revise")
def profile_revise(
    name: Annotated[str, typer.Argument()],
    file: FileOpt = None,
    kind: KindOpt = None,
    variant: VariantOpt = None,
    source: SourceOpt = None,
    ecosystem: EcoOpt = None,
    include: IncludeOpt = None,
    compression: CompOpt = None,
    level: LevelOpt = None,
    key: KeyOpt = None,
    policy: PolicyOpt = None,
    tenant: common.TenantOpt = None,
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Add a revision; options not given keep the current revision's values.

    --policy NAME pins the newest version of NAME again.
    """
    t = common.tenant_or_default(tenant)
    api = remote.client(server, token, tenant) if server else None
    reg = _registry() if api is None else None
    if file is not None:
        base, where = _read_body(file), str(file)
    elif api is not None:
        base, where = dict(api.get_profile(name)["spec"]), f"profile {name} on {server}"
    else:
        assert reg is not None
        base, where = reg.get(t, name).spec.model_dump(mode="json", by_alias=True), name
    spec = _spec_from_options(
        base,
        where,
        kind,
        variant,
        source,
        ecosystem,
        include,
        compression,
        level,
        key,
        policy,
    )
    if api is not None:
        with api:
            r = api.revise_profile(name, spec.model_dump(mode="json", by_alias=True))
        common.console.print(
            f"profile {r['name']} is at r{r['revision']} ({r['digest']})", highlight=False
        )
        return
    assert reg is not None
    p = reg.revise(t, name, spec)
    common.console.print(f"profile {p.name} is at r{p.revision} ({p.digest})", highlight=False)


@app.command("list")
def profile_list(
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """List the tenant's profiles (newest revision of each)."""
    if server:
        _list_on_server(server, token, tenant, output)
        return
    items, total = _registry().list(common.tenant_or_default(tenant))
    if output == "json":
        common.print_json({"items": [_profile_json(p) for p in items], "total": total})
        return
    table = Table(title=f"{total} profiles")
    for col in ("name", "revision", "kind", "compression", "digest"):
        table.add_column(col)
    for p in items:
        table.add_row(
            p.name,
            f"r{p.revision}",
            p.spec.profile_kind.value,
            f"{p.spec.compression.algorithm}:{p.spec.compression.level}",
            p.digest[:23],
        )
    common.console.print(table)


def _list_on_server(server: str, token: str | None, tenant: str | None, output: str) -> None:
    with remote.client(server, token, tenant) as api:
        items = api.list_profiles()
    if output == "json":
        common.print_json({"items": items, "total": len(items)})
        return
    table = Table(title=f"{len(items)} profiles")
    for col in ("name", "revision", "kind", "compression", "digest"):
        table.add_column(col)
    for p in items:
        spec = p["spec"]
        table.add_row(
            p["name"],
            f"r{p['revision']}",
            f"{spec['kind']}:{spec['variant']}",
            f"{spec['compression']['algorithm']}:{spec['compression']['level']}",
            p["digest"][:23],
        )
    common.console.print(table)


@app.command("show")
def profile_show(
    name: Annotated[str, typer.Argument()],
    revision: Annotated[int | None, typer.Option("--revision")] = None,
    tenant: common.TenantOpt = None,
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Print a profile revision as JSON."""
    if server:
        with remote.client(server, token, tenant) as api:
            common.print_json(api.get_profile(name, revision))
        return
    common.print_json(
        _profile_json(_registry().get(common.tenant_or_default(tenant), name, revision))
    )


@app.command("archive")
def profile_archive(
    name: Annotated[str, typer.Argument()],
    tenant: common.TenantOpt = None,
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Archive a profile: no new revisions or runs; existing bundles stay valid."""
    if server:
        with remote.client(server, token, tenant) as api:
            api.archive_profile(name)
        common.console.print(f"archived profile {name}")
        return
    _registry().archive(common.tenant_or_default(tenant), name)
    common.console.print(f"archived profile {name}")
