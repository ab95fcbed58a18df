"""``stella export profile|plan|run|verify``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from export_center.cli import common
from export_center.errors import BadInputError, ExitCode, ExportCenterError
from export_center.planner.plan import make_plan
from export_center.planner.profiles import ProfileSpec, parse_profile_spec
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView

if TYPE_CHECKING:
    from export_center.client import ApiClient

export_app = typer.Typer(help="Plan, run and verify exports.", no_args_is_help=True)
profile_app = typer.Typer(
    help="Manage export profiles (immutable revisions).", no_args_is_help=True
)
export_app.add_typer(profile_app, name="profile")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


def _registry() -> ProfileRegistry:
    return ProfileRegistry(common.open_store())


def _profile_json(p: ProfileRevisionView) -> dict[str, Any]:
    return {
        "tenant": p.tenant,
        "name": p.name,
        "revision": p.revision,
        "digest": p.digest,
        "archived": p.archived,
        "spec": p.spec.model_dump(mode="json", by_alias=True),
    }


def _spec_from_options(
    file: Path | None,
    kind: str | None,
    variant: str | None,
    sources: list[str] | None,
    ecosystems: list[str] | None,
    include: list[str] | None,
    compression: str | None,
    level: int | None,
    key: str | None,
) -> ProfileSpec:
    data: dict[str, Any] = {}
    if file is not None:
        try:
            text = file.read_bytes()
        except OSError as e:
            raise BadInputError(f"{file}: cannot read profile: {e.strerror}") from e
        try:
            loaded = (
                yaml.safe_load(text) if file.suffix in {".yaml", ".yml"} else orjson.loads(text)
            )
        except (yaml.YAMLError, orjson.JSONDecodeError) as e:
            raise BadInputError(f"{file}: malformed profile: {e}") from e
        if not isinstance(loaded, dict):
            raise BadInputError(f"{file}: a profile must be an object")
        data = loaded
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
            comp["algorithm"] = compression
        if level:
            comp["level"] = level
        data["compression"] = comp
    if key:
        data["signing"] = {"key": key}
    return parse_profile_spec(data, str(file) if file else "profile options")


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
KeyOpt = Annotated[str | None, typer.Option("--key", help="Signing keyid (default: newest).")]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="STELLA_SERVER",
        help="Use the API server at this URL (default: work in-process).",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="STELLA_TOKEN", help="API token for --server."),
]


@profile_app.command("create")
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
    tenant: common.TenantOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a profile (revision r1)."""
    spec = _spec_from_options(
        file, kind, variant, source, ecosystem, include, compression, level, key
    )
    if server:
        _remote_profile_create(server, token, tenant, name, spec)
        return
    p = _registry().create(common.tenant_or_default(tenant), name, spec)
    common.console.print(f"created profile {p.name} r{p.revision} ({p.digest})", highlight=False)


@profile_app.command("revise")
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
    tenant: common.TenantOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Add a revision (options not given keep the current revision's values)."""
    t = common.tenant_or_default(tenant)
    remote = _client(server, token, tenant) if server else None
    reg = _registry() if remote is None else None
    current = (
        parse_profile_spec(remote.get_profile(name)["spec"], f"profile {name} on {server}")
        if remote is not None
        else _require(reg).get(t, name).spec
    )
    base = current.model_dump(mode="json", by_alias=True)
    if file is None:
        merged = _spec_from_options(
            None,
            kind or current.kind,
            variant or current.variant,
            source,
            ecosystem,
            include,
            compression,
            level,
            key,
        )
        data = {**base, **merged.model_dump(mode="json", by_alias=True, exclude_defaults=True)}
        spec = parse_profile_spec(data)
    else:
        spec = _spec_from_options(
            file, kind, variant, source, ecosystem, include, compression, level, key
        )
    if remote is not None:
        with remote:
            r = remote.revise_profile(name, spec.model_dump(mode="json", by_alias=True))
        common.console.print(
            f"profile {r['name']} is at r{r['revision']} ({r['digest']})", highlight=False
        )
        return
    p = _require(reg).revise(t, name, spec)
    common.console.print(f"profile {p.name} is at r{p.revision} ({p.digest})", highlight=False)


@profile_app.command("list")
def profile_list(
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """List the tenant's profiles (newest revision of each)."""
    if server:
        _remote_profile_list(server, token, tenant, output)
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


@profile_app.command("show")
def profile_show(
    name: Annotated[str, typer.Argument()],
    revision: Annotated[int | None, typer.Option("--revision")] = None,
    tenant: common.TenantOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print a profile revision as JSON."""
    if server:
        with _client(server, token, tenant) as client:
            common.print_json(client.get_profile(name, revision))
        return
    common.print_json(
        _profile_json(_registry().get(common.tenant_or_default(tenant), name, revision))
    )


@profile_app.command("archive")
def profile_archive(
    name: Annotated[str, typer.Argument()],
    tenant: common.TenantOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Archive a profile: no new revisions or runs; existing bundles stay valid."""
    if server:
        with _client(server, token, tenant) as client:
            client.archive_profile(name)
        common.console.print(f"archived profile {name}")
        return
    _registry().archive(common.tenant_or_default(tenant), name)
    common.console.print(f"archived profile {name}")


@export_app.command("plan")
def plan(
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    revision: Annotated[int | None, typer.Option("--revision")] = None,
    tenant: common.TenantOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Dry run: what a run would export now (as-of cursor, export id, counts)."""
    if server:
        with _client(server, token, tenant) as client:
            common.print_json(client.plan(profile, revision=revision))
        return
    store = common.open_store()
    p = ProfileRegistry(store).get(common.tenant_or_default(tenant), profile, revision)
    pl = make_plan(store, p)
    common.print_json(
        {
            "exportId": pl.export_id,
            "profile": {
                "name": pl.profile_name,
                "revision": pl.revision,
                "kind": pl.spec.profile_kind.value,
            },
            "asOf": {"sequence": pl.as_of_seq, "time": pl.as_of_rfc3339()},
            "selectors": pl.selectors.model_dump(mode="json", by_alias=True),
            "storeCounts": pl.counts,
        }
    )


@export_app.command("run")
def run(
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (with --server: download the bundle here)."),
    ] = None,
    revision: Annotated[int | None, typer.Option("--revision")] = None,
    as_of: Annotated[int | None, typer.Option("--as-of", help="Pin an earlier sequence.")] = None,
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --server: follow the run to its end.")
    ] = False,
) -> None:
    """Run an export in-process and publish the bundle into --out (or queue it on --server)."""
    from export_center.exporter import run_export

    if server:
        _remote_run(server, token, tenant, profile, revision, as_of, out, wait, output)
        return
    if out is None:
        raise BadInputError("--out is required to run in-process (or use --server)")

    cfg = common.settings()
    store = common.open_store()
    p = ProfileRegistry(store).get(common.tenant_or_default(tenant), profile, revision)
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=common.err_console,
        disable=not common.is_tty() or output == "json",
        transient=True,
    ) as bar:
        task = bar.add_task("export", total=None)

        def on_plan(pl: Any) -> None:
            bar.update(task, total=sum(pl.counts.values()))

        outcome = run_export(
            cfg,
            store,
            p,
            out,
            as_of_seq=as_of,
            progress=lambda n: bar.advance(task, n),
            on_plan=on_plan,
        )
    b = outcome.bundle
    result = {
        "exportId": b.export_id,
        "archive": str(b.archive_path),
        "sha256": b.archive_sha256,
        "bytes": b.archive_bytes,
        "rootHash": b.root_hash,
        "rerunHash": b.rerun_hash,
        "asOf": outcome.plan.as_of_seq,
        "counts": b.counts,
    }
    if output == "json":
        common.print_json(result)
        return
    common.console.print(f"published {b.archive_path} ({b.archive_bytes:,} bytes)", highlight=False)
    common.console.print(f"  sha256    {b.archive_sha256}", highlight=False)
    common.console.print(f"  root hash {b.root_hash}", highlight=False)
    common.console.print(f"  rerunHash {b.rerun_hash}", highlight=False)
    common.console.print(f"  counts    {b.counts}", highlight=False)


@export_app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="Archive (.tar.zst/.tar.gz) or extracted dir.")],
    trust_roots: Annotated[
        Path, typer.Option("--trust-roots", help="PEM file of trusted public keys.")
    ],
    output: common.FormatOpt = "table",
) -> None:
    """Verify a bundle offline: every check, in order, each reported by name."""
    from export_center.bundle.verify import verify_bundle

    if not bundle.exists():
        common.fail(f"{bundle}: no such bundle", ExitCode.NOT_FOUND)
    report = verify_bundle(bundle, common.read_trust_roots(trust_roots))
    if output == "json":
        common.print_json(report.as_json())
    else:
        common.print_checks(report.checks)
        if report.ok:
            common.console.print(
                f"[green]verified[/green] {report.export_id}; root hash {report.root_hash}"
            )
        else:
            failed = report.failed
            common.console.print(
                f"[red]verification failed[/red] at {failed.name if failed else '?'}"
            )
    raise typer.Exit(int(report.exit_code))


@export_app.command("push")
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
        art = write_oci_layout(bundle, Path(path), tag=tag or None)
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


# ---- server mode: `--server URL --token T` (the REST API instead of the local store) ---------


def _require(reg: ProfileRegistry | None) -> ProfileRegistry:
    assert reg is not None
    return reg


def _client(server: str | None, token: str | None, tenant: str | None) -> ApiClient:
    from export_center.client import ApiClient

    if not server:
        raise BadInputError("this needs --server URL (or STELLA_SERVER)")
    if not token:
        raise BadInputError("--server needs --token (or STELLA_TOKEN)")
    return ApiClient(server, token=token, tenant=tenant)


def _remote_profile_create(
    server: str, token: str | None, tenant: str | None, name: str, spec: ProfileSpec
) -> None:
    with _client(server, token, tenant) as client:
        p = client.create_profile(name, spec.model_dump(mode="json", by_alias=True))
    common.console.print(
        f"created profile {p['name']} r{p['revision']} ({p['digest']})", highlight=False
    )


def _remote_profile_list(server: str, token: str | None, tenant: str | None, output: str) -> None:
    with _client(server, token, tenant) as client:
        items = client.list_profiles()
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


def _run_error(run: dict[str, Any]) -> ExportCenterError:
    """The error a failed (or cancelled) remote run stands for, with its exit code."""
    from export_center import errors

    error = run.get("error") or {}
    code = str(error.get("code") or "")
    message = f"run {run['id']} {run['status']}" + (
        f": {code}: {error.get('message')}" if code else ""
    )
    if run["status"] == "cancelled":
        return errors.CancelledError(message)
    # Codes outside the tree (ERR_EXPORT_IO, ERR_EXPORT_WORKER_LOST, ...) are unexpected (1).
    cls = errors.error_class(code) or ExportCenterError
    if cls is errors.VerificationError:
        return errors.VerificationError("export", message)
    return cls.reported(message)


def _follow(client: ApiClient, run_id: str, *, quiet: bool) -> dict[str, Any]:
    """Show the run's progress from its event stream until it ends; returns the final run."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=common.err_console,
        disable=quiet or not common.is_tty(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"run {run_id[:8]} pending", total=None)
        for event in client.events(run_id):
            data = event.data.get("data") or {}
            if event.type == "progress":
                bar.update(
                    task,
                    total=data.get("itemsTotal") or None,
                    completed=data.get("itemsCompleted", 0),
                    description=f"run {run_id[:8]} exporting",
                )
            elif event.type in {"started", "retrying", "artifact_ready"}:
                bar.update(task, description=f"run {run_id[:8]} {event.type.replace('_', ' ')}")
            if not quiet and not common.is_tty():
                common.err_console.print(f"{event.id}: {event.type} {data}", highlight=False)
    return client.get_run(run_id)


def _download_bar(client: ApiClient, run_id: str, out: Path, *, quiet: bool) -> Path:
    from rich.progress import DownloadColumn, TransferSpeedColumn

    with Progress(
        TextColumn("downloading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=common.err_console,
        disable=quiet or not common.is_tty(),
        transient=True,
    ) as bar:
        task = bar.add_task("download", total=None)
        return client.download(
            run_id, out, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )


def _print_run(run: dict[str, Any], output: str, path: Path | None = None) -> None:
    if output == "json":
        common.print_json(run | ({"downloaded": str(path)} if path else {}))
        return
    progress = run.get("progress") or {}
    common.console.print(
        f"run {run['id']} {run['status']} ({progress.get('itemsCompleted', 0)}/"
        f"{progress.get('itemsTotal', 0)} items)",
        highlight=False,
    )
    artifact = run.get("artifact")
    if artifact:
        common.console.print(f"  bundle    {artifact['name']} ({artifact['bytes']:,} bytes)")
        common.console.print(f"  sha256    {artifact['sha256']}", highlight=False)
        common.console.print(f"  root hash {artifact['rootHash']}", highlight=False)
    if path:
        common.console.print(f"  saved as  {path}", highlight=False)


def _remote_run(
    server: str,
    token: str | None,
    tenant: str | None,
    profile: str,
    revision: int | None,
    as_of: int | None,
    out: Path | None,
    wait: bool,
    output: str,
) -> None:
    with _client(server, token, tenant) as client:
        accepted = client.create_run(profile, revision=revision, as_of=as_of)
        run_id = accepted["id"]
        if not (wait or out):
            if output == "json":
                common.print_json(accepted)
            else:
                common.console.print(f"queued run {run_id}", highlight=False)
            return
        run = _follow(client, run_id, quiet=output == "json")
        if run["status"] != "succeeded":
            raise _run_error(run)
        path = _download_bar(client, run_id, out, quiet=output == "json") if out else None
    _print_run(run, output, path)


def _local_follow(run_id: str, tenant: str | None) -> dict[str, Any]:
    """watch without --server: follow the run in the local store (e.g. `stella serve` there)."""
    import time

    from export_center.runs.repository import RunRepository
    from export_center.service.schemas import RunPublic

    repo = RunRepository(common.open_store())
    t = common.tenant_or_default(tenant)
    last = 0
    while True:
        run = repo.get(t, run_id)
        for e in repo.events_after(run_id, last):
            last = e.seq
            common.err_console.print(f"{e.seq}: {e.type} {dict(e.data)}", highlight=False)
        if run.terminal:
            return RunPublic.of("/api/export", run).model_dump(mode="json", by_alias=True)
        time.sleep(0.5)


@export_app.command("watch")
def watch(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Follow a run live (progress bar fed by the server's event stream) until it ends."""
    if server:
        with _client(server, token, tenant) as client:
            run = _follow(client, run_id, quiet=output == "json")
    else:
        run = _local_follow(run_id, tenant)
    _print_run(run, output)
    if run["status"] != "succeeded":
        raise _run_error(run)


@export_app.command("download")
def download(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to save the bundle in.")],
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a run's bundle: resumes an interrupted download, checks the SHA-256."""
    with _client(server, token, tenant) as client:
        path = _download_bar(client, run_id, out, quiet=output == "json")
        run = client.get_run(run_id)
    _print_run(run, output, path)
