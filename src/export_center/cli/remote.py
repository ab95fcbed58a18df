"""What ``--server URL --token T`` does: the options, the client, a run's progress and download.

The HTTP client itself is ``export_center/client.py``; the commands decide what to ask it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from export_center.cli import common
from export_center.errors import BadInputError

if TYPE_CHECKING:
    from pathlib import Path

    from export_center.client import ApiClient

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


def client(server: str | None, token: str | None, tenant: str | None) -> ApiClient:
    """The API client for ``--server`` (use it as a context manager).

    Raises:
        BadInputError: no server, a server that is not an http(s) URL, or no token.
        OfflineViolationError: ``--offline`` is set.
    """
    from urllib.parse import urlsplit

    from export_center.client import ApiClient

    if not server:
        raise BadInputError("this needs --server URL (or STELLA_SERVER)")
    try:
        parts = urlsplit(server)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as e:
        raise BadInputError(f"--server {server!r}: not a URL: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(
            f"--server {server!r}: not an http(s) URL",
            hint="e.g. --server https://export.example.com or http://127.0.0.1:8080",
        )
    if not token:
        raise BadInputError("--server needs --token (or STELLA_TOKEN)")
    return ApiClient(server, token=token, tenant=tenant)


def follow(api: ApiClient, run_id: str, *, quiet: bool) -> dict[str, Any]:
    """Show the run's progress from its event stream until it ends; returns the final run."""
    with Progress(
        TextColumn("{task.description}", markup=False),  # the run id comes from the server
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=common.err_console,
        disable=quiet or not common.is_tty(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"run {run_id[:8]} pending", total=None)
        for event in api.events(run_id):
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
    return api.get_run(run_id)


def download(api: ApiClient, run_id: str, out: Path, *, quiet: bool) -> Path:
    """Download the run's bundle into ``out`` with a progress bar, and its ``.sha256`` and
    ``.sig`` sidecars next to it (a sidecar the server lacks is reported, not fatal: ``stella
    export verify`` then says which check it could not run); returns the archive."""
    archive = _download_archive(api, run_id, out, quiet=quiet)
    digest = str((api.get_run(run_id).get("artifact") or {}).get("sha256", ""))
    for side in api.download_sidecars(run_id, archive, digest):
        if side.path is None:
            common.err_console.print(f"warning: not saved: {side.reason}", highlight=False)
        elif not quiet:
            common.err_console.print(f"saved {side.path}", highlight=False)
    return archive


def _download_archive(api: ApiClient, run_id: str, out: Path, *, quiet: bool) -> Path:
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
        return api.download(
            run_id, out, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
