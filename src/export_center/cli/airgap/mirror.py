"""``stella airgap verify-bundle|import|status|list``: mirror bundles on the disconnected side.

Trust anchors come from the command line or, by default, from ``<data dir>/airgap/``:
``trust-roots.pem`` (PEM public keys that sign bundles) and, optionally, ``root.json`` (the
TUF root received out of band; without it the first import trusts a root whose keys are all
trusted PEM keys, and later imports chain from the installed one).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from export_center.cli import common
from export_center.errors import BadInputError, ExitCode, NotFoundError

BundleArg = Annotated[
    str,
    typer.Argument(
        help="Archive, bundle directory, OCI layout (oci:DIR[:TAG]) or oci://HOST/REPO:TAG."
    ),
]
TrustOpt = Annotated[
    Path | None,
    typer.Option(
        "--trust-roots", help="PEM public keys (default: <data dir>/airgap/trust-roots.pem)."
    ),
]
TufRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--tuf-root",
        help="Trusted TUF root.json (default: <data dir>/airgap/root.json, else installed).",
    ),
]
IdentityOpt = Annotated[
    list[Path] | None,
    typer.Option("--identity", help="age identity file(s) to open encrypted bundles."),
]
KmsOpt = Annotated[
    bool,
    typer.Option("--kms", help="Try KMS recipients (kms://pkcs11/...; STELLA_PKCS11_* env)."),
]


def _airgap_dir() -> Path:
    return common.settings().data_dir / "airgap"


def _options(
    trust_roots: Path | None,
    tuf_root: Path | None,
    identity: list[Path] | None,
    kms: bool,
    *,
    tenant: str | None = None,
    force: bool = False,
    reason: str | None = None,
    by: str | None = None,
    replace_stream: str | None = None,
) -> Any:
    from export_center.importer.quarantine import QuarantineLimits
    from export_center.importer.service import ImportOptions
    from export_center.mirror.crypto import KeyMaterial, load_age_identities
    from export_center.mirror.kms import Pkcs11Access

    roots = common.read_trust_roots(trust_roots)
    root_bytes = None
    root_path = tuf_root or (_airgap_dir() / "root.json")
    if tuf_root is not None or root_path.is_file():
        root_bytes = common.read_input(root_path, "the TUF root")
    identities: tuple[str, ...] = ()
    for ident in identity or ():
        try:
            text = common.read_input(ident, "the identity").decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInputError(f"{ident}: cannot read the identity: not UTF-8 text") from e
        identities += load_age_identities(text, str(ident))
    settings = common.settings()
    kms_access = Pkcs11Access.from_settings(settings)
    return ImportOptions(
        trust_roots=roots,
        tuf_root=root_bytes,
        keys=KeyMaterial(age_identities=identities, use_kms=kms, kms_access=kms_access),
        force=force,
        reason=reason,
        imported_by=by or settings.user or _login(),
        tenant=tenant,
        registry_credentials=settings.registry_credentials,
        replace_stream=replace_stream,
        quarantine=QuarantineLimits(settings.quarantine_max_entries, settings.quarantine_max_bytes),
    )


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): still record something
        return "unknown"


def _print_report(report: Any) -> None:
    common.print_checks(report.checks)


def verify_bundle_cmd(
    bundle: BundleArg,
    trust_roots: TrustOpt = None,
    tuf_root: TufRootOpt = None,
    identity: IdentityOpt = None,
    kms: KmsOpt = False,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Refuse (exit 2) a bundle of any other tenant."),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Verify a mirror bundle offline (every check, in order); say what an import would do."""
    import shutil
    import tempfile

    from export_center.errors import BadInputError, ConflictError
    from export_center.importer.service import import_state, verify_source

    opts = _options(trust_roots, tuf_root, identity, kms, tenant=tenant)
    cfg = common.settings()
    store = common.open_store()
    work_root = cfg.data_dir / "airgap" / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="verify-", dir=work_root))
    try:
        _, mv = verify_source(
            store,
            bundle,
            cfg.data_dir,
            opts,
            require_plaintext=False,
            now=datetime.now(UTC).replace(microsecond=0),
            work=work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = mv.report
    state: str | None = None
    code = report.exit_code
    if report.ok and mv.manifest is not None and mv.manifest_digest:
        try:
            what, stream, latest = import_state(store, mv.tenant, mv.manifest, mv.manifest_digest)
            nxt = (latest.generation if latest else 0) + 1
            state = (
                f"replay of installed generation {latest.generation} of stream {stream}: an "
                "import changes nothing"
                if what == "replay" and latest
                else f"importable as generation {nxt} of stream {stream} of tenant {mv.tenant}"
            )
        except (ConflictError, BadInputError) as e:
            state = f"not importable: {e.message}"
            code = e.exit_code
    if output == "json":
        common.print_json({**report.as_json(), "state": state})
    else:
        _print_report(report)
        if report.ok:
            common.console.print(
                common.marked(
                    "green", "verified", f" {report.export_id}; root hash {report.root_hash}"
                )
            )
        if state:
            common.console.print(f"state: {state}", highlight=False)
    if not report.ok:
        common.print_verification_failure(bundle, report.checks)
    elif code == ExitCode.QUOTA_OR_CONFLICT:
        common.print_error(f"{bundle}: verified, but {state}")
    raise typer.Exit(int(code))


def import_cmd(
    bundle: BundleArg,
    trust_roots: TrustOpt = None,
    tuf_root: TufRootOpt = None,
    identity: IdentityOpt = None,
    kms: KmsOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Install an older generation (needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why it is forced.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who imports (default: $USER).")] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Refuse (exit 2) a bundle of any other tenant."),
    ] = None,
    replace_stream: Annotated[
        str | None,
        typer.Option(
            "--replace-stream",
            help="Let this full bundle's stream take over the installed stream STREAM "
            "(its documents become this stream's; needs --reason).",
            metavar="STREAM",
        ),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Verify a mirror bundle and apply it to the local store as its stream's next generation."""
    from export_center.cli.airgap._telemetry import record
    from export_center.importer.service import ImportRefused, import_bundle

    opts = _options(
        trust_roots,
        tuf_root,
        identity,
        kms,
        tenant=tenant,
        force=force,
        reason=reason,
        by=by,
        replace_stream=replace_stream,
    )
    cfg = common.settings()
    store = common.open_store()
    try:
        out = import_bundle(store, bundle, cfg.data_dir, opts)
    except ImportRefused as e:
        record("mirror", "refused", exit_code=e.exit_code)
        # The checks that ran on stdout, the refusal once on stderr (run_app prints it).
        if e.report is not None and output != "json":
            common.print_checks(c for c in e.report.checks if c.status != "not run")
        if output == "json":
            common.print_json(
                {
                    "status": "refused",
                    "reason": e.message,
                    "quarantine": str(e.quarantine) if e.quarantine else None,
                    "quarantineNote": e.quarantined.note if e.quarantined else None,
                    "report": e.report.as_json() if e.report else None,
                }
            )
        raise
    record("mirror", out.status)
    g = out.generation
    if output == "json":
        common.print_json(
            {
                "status": out.status,
                "generation": g.as_json(),
                "report": out.report.as_json(),
                "applied": (
                    {
                        "added": out.stats.added,
                        "updated": out.stats.updated,
                        "removed": out.stats.removed,
                        "unchanged": out.stats.unchanged,
                    }
                    if out.stats
                    else None
                ),
            }
        )
        return
    _print_report(out.report)
    if out.status == "replay":
        common.console.print(
            f"replay: {g.export_id} is already installed as generation {g.generation} of "
            f"stream {g.stream} of {g.tenant}; nothing changed",
            highlight=False,
        )
        return
    s = out.stats
    assert s is not None
    common.console.print(
        common.marked(
            "green",
            "imported",
            f" {g.export_id} ({g.kind}) as generation {g.generation} of stream {g.stream} of "
            f"{g.tenant}: +{s.added} ~{s.updated} -{s.removed} (unchanged {s.unchanged}); "
            f"store sequence {g.store_seq}"
            + (f"; stream {g.replaced_stream} replaced" if g.replaced_stream else ""),
        )
    )


def _generation_table(rows: list[Any], title: str) -> Table:
    table = Table(title=title)
    for col in (
        "tenant",
        "stream",
        "gen",
        "export id",
        "kind",
        "as of",
        "imported",
        "by",
        "+/~/-",
        "root hash",
    ):
        table.add_column(col)
    for g in rows:
        table.add_row(
            g.tenant,
            g.stream,
            str(g.generation),
            g.export_id,
            g.kind
            + (" (forced)" if g.forced else "")
            + (f" (replaced {g.replaced_stream})" if g.replaced_stream else ""),
            str(g.source_seq),
            f"{g.imported_at:%Y-%m-%d %H:%M:%SZ}",
            g.imported_by,
            f"{g.added}/{g.updated}/{g.removed}",
            g.root_hash[:23],
        )
    return table


def status(tenant: common.TenantOpt = None, output: common.FormatOpt = "table") -> None:
    """The installed generation of each mirror stream of each tenant (or of --tenant)."""
    from export_center.importer import generations

    store = common.open_store()
    rows = generations.current(store)
    if tenant is not None:
        rows = [g for g in rows if g.tenant == tenant]
        if not rows:
            raise NotFoundError(f"tenant {tenant!r} has no imported generation")
    if output == "json":
        common.print_json(
            {
                "streams": [
                    {**g.as_json(), "storeCurrentSequence": store.current_sequence(g.tenant)}
                    for g in rows
                ]
            }
        )
        return
    if not rows:
        common.console.print("nothing imported yet")
        return
    common.console.print(_generation_table(rows, "installed generations"))


def list_cmd(tenant: common.TenantOpt = None, output: common.FormatOpt = "table") -> None:
    """Every imported generation, oldest first."""
    from export_center.importer import generations

    rows = generations.history(common.open_store(), tenant)
    if output == "json":
        common.print_json({"generations": [g.as_json() for g in rows]})
        return
    common.console.print(_generation_table(rows, f"{len(rows)} generations"))


quarantine_app = typer.Typer(
    name="quarantine",
    help="Refused bundles kept for the operator: list and purge.",
    no_args_is_help=True,
    add_completion=False,
)


@quarantine_app.command("list")
def quarantine_list(output: common.FormatOpt = "table") -> None:
    """Every quarantine entry, oldest first, with its reason and size."""
    from export_center.importer.quarantine import list_entries

    cfg = common.settings()
    entries = list_entries(cfg.data_dir)
    used = sum(e.bytes for e in entries)
    if output == "json":
        common.print_json(
            {
                "entries": [e.as_json() for e in entries],
                "bytes": used,
                "maxEntries": cfg.quarantine_max_entries,
                "maxBytes": cfg.quarantine_max_bytes,
            }
        )
        return
    table = Table(
        title=f"{len(entries)} of {cfg.quarantine_max_entries} quarantine entries, "
        f"{used} of {cfg.quarantine_max_bytes} bytes"
    )
    for col in ("entry", "refused", "bytes", "bundle", "reason"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e.name, e.refused_at, str(e.bytes), "kept" if e.kept else "not kept", e.reason[:120]
        )
    common.console.print(table)


@quarantine_app.command("purge")
def quarantine_purge(
    entries: Annotated[
        list[str] | None, typer.Argument(help="Entry names (from `quarantine list`).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every entry.")] = False,
    older_than_days: Annotated[
        int | None,
        typer.Option("--older-than-days", help="Entries refused more than N days ago."),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Remove quarantine entries: named ones, --all, or --older-than-days N."""
    from datetime import timedelta

    from export_center.importer.quarantine import purge

    if not entries and not all_ and older_than_days is None:
        raise BadInputError("name entries to purge, or --all, or --older-than-days N")
    if older_than_days is not None and older_than_days < 0:
        raise BadInputError(f"--older-than-days must not be negative, not {older_than_days}")
    cutoff = (
        datetime.now(UTC) - timedelta(days=older_than_days) if older_than_days is not None else None
    )
    removed = purge(common.settings().data_dir, entries or (), everything=all_, older_than=cutoff)
    if output == "json":
        common.print_json({"purged": [e.as_json() for e in removed]})
        return
    freed = sum(e.bytes for e in removed)
    common.console.print(f"purged {len(removed)} entries ({freed} bytes)", highlight=False)
