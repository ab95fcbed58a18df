"""``stella export plan|run|watch|download``: runs in-process, or on ``--server``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from export_center.cli import common, remote
from export_center.errors import BadInputError, ExportCenterError


def plan(
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    revision: Annotated[int | None, typer.Option("--revision")] = None,
    tenant: common.TenantOpt = None,
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Dry run: what a run would export now (as-of cursor, export id, counts)."""
    from export_center.exporter import runnable_profile
    from export_center.planner.plan import make_plan
    from export_center.planner.registry import ProfileRegistry

    if server:
        with remote.client(server, token, tenant) as api:
            common.print_json(api.plan(profile, revision=revision))
        return
    store = common.open_store()
    p = runnable_profile(
        ProfileRegistry(store), common.tenant_or_default(tenant), profile, revision
    )
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


def run(
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (with --server: download the bundle here)."),
    ] = None,
    revision: Annotated[int | None, typer.Option("--revision")] = None,
    as_of: Annotated[
        int | None, typer.Option("--as-of", min=0, help="Pin an earlier sequence.")
    ] = None,
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --server: follow the run to its end.")
    ] = False,
) -> None:
    """Run an export in-process and publish the bundle into --out (or queue it on --server)."""
    from export_center.exporter import run_export, runnable_profile
    from export_center.planner.registry import ProfileRegistry

    if out is not None:
        common.check_output_dir(out, "the bundle")
    if server:
        _run_on_server(server, token, tenant, profile, revision, as_of, out, wait, output)
        return
    if out is None:
        raise BadInputError("--out is required to run in-process (or use --server)")

    cfg = common.settings()
    store = common.open_store()
    p = runnable_profile(
        ProfileRegistry(store), common.tenant_or_default(tenant), profile, revision
    )
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
            openapi=_openapi_document(),
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


def _openapi_document() -> Callable[[], bytes] | None:
    """What makes the API's OpenAPI document (devportal:offline runs), when the 'service'
    extra is installed; without it such a run says what to install."""
    try:
        from export_center.service.app import openapi_document
    except ModuleNotFoundError:
        return None
    return openapi_document


def _run_on_server(
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
    with remote.client(server, token, tenant) as api:
        accepted = api.create_run(profile, revision=revision, as_of=as_of)
        run_id = accepted["id"]
        if not (wait or out):
            if output == "json":
                common.print_json(accepted)
            else:
                common.console.print(f"queued run {run_id}", highlight=False)
            return
        record = remote.follow(api, run_id, quiet=output == "json")
        if record["status"] != "succeeded":
            raise _run_error(record)
        path = remote.download(api, run_id, out, quiet=output == "json") if out else None
    _print_run(record, output, path)


def watch(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Follow a run live (progress bar fed by the server's event stream) until it ends."""
    if server:
        with remote.client(server, token, tenant) as api:
            record = remote.follow(api, run_id, quiet=output == "json")
    else:
        record = _follow_locally(run_id, tenant)
    _print_run(record, output)
    if record["status"] != "succeeded":
        raise _run_error(record)


def _follow_locally(run_id: str, tenant: str | None) -> dict[str, Any]:
    """watch without --server: follow the run in the local store (e.g. `stella serve` there)."""
    import time

    from export_center.runs.repository import RunRepository
    from export_center.service.schemas import RunPublic

    repo = RunRepository(common.open_store())
    t = common.tenant_or_default(tenant)
    last = 0
    while True:
        record = repo.get(t, run_id)
        for e in repo.events_after(run_id, last):
            last = e.seq
            common.err_console.print(f"{e.seq}: {e.type} {dict(e.data)}", highlight=False)
        if record.terminal:
            # The API's shape, so that both ways of watching print (and fail) alike.
            return RunPublic.of("/api/export", record).model_dump(mode="json", by_alias=True)
        time.sleep(0.5)


def download(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to save the bundle in.")],
    tenant: common.TenantOpt = None,
    output: common.FormatOpt = "table",
    server: remote.ServerOpt = None,
    token: remote.TokenOpt = None,
) -> None:
    """Download a run's bundle: resumes an interrupted download, checks the SHA-256."""
    common.check_output_dir(out, "the bundle")
    with remote.client(server, token, tenant) as api:
        path = remote.download(api, run_id, out, quiet=output == "json")
        record = api.get_run(run_id)
    _print_run(record, output, path)


def _run_error(record: dict[str, Any]) -> ExportCenterError:
    """The error a failed (or cancelled) run stands for, with its exit code."""
    from export_center import errors

    error = record.get("error") or {}
    code = str(error.get("code") or "")
    message = f"run {record['id']} {record['status']}" + (
        f": {code}: {error.get('message')}" if code else ""
    )
    if record["status"] == "cancelled":
        return errors.CancelledError(message)
    # Codes outside the tree (ERR_EXPORT_IO, ERR_EXPORT_WORKER_LOST, ...) are unexpected (1).
    cls = errors.error_class(code) or ExportCenterError
    if cls is errors.VerificationError:
        return errors.VerificationError("export", message)
    return cls.reported(message)


def _print_run(record: dict[str, Any], output: str, path: Path | None = None) -> None:
    """A run record in the API's shape: one status line and its bundle (or JSON)."""
    if output == "json":
        common.print_json(record | ({"downloaded": str(path)} if path else {}))
        return
    progress = record.get("progress") or {}
    common.console.print(
        f"run {record['id']} {record['status']} ({progress.get('itemsCompleted', 0)}/"
        f"{progress.get('itemsTotal', 0)} items)",
        highlight=False,
    )
    artifact = record.get("artifact")
    if artifact:
        common.console.print(f"  bundle    {artifact['name']} ({artifact['bytes']:,} bytes)")
        common.console.print(f"  sha256    {artifact['sha256']}", highlight=False)
        common.console.print(f"  root hash {artifact['rootHash']}", highlight=False)
    if path:
        common.console.print(f"  saved as  {path}", highlight=False)
