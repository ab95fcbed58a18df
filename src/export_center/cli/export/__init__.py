"""``stella export``: profiles, plan/run/watch/download, verify and push, one module each."""

from __future__ import annotations

import typer

from export_center.cli.export import profiles, push, runs, verify

app = typer.Typer(
    name="export",
    help="Plan, run and verify exports.",
    no_args_is_help=True,
    add_completion=False,
)
# In the order `stella export --help` lists them (the `profile` group comes last).
app.command("plan")(runs.plan)
app.command("run")(runs.run)
app.command("verify")(verify.verify)
app.command("push")(push.push)
app.command("watch")(runs.watch)
app.command("download")(runs.download)
app.add_typer(profiles.app, name="profile")
