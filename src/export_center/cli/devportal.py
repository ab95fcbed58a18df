"""``stella devportal build|verify``: the developer portal as a signed offline bundle."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from export_center.archive.writer import source_date_epoch
from export_center.cli import common
from export_center.devportal import (
    BUNDLE_NAME,
    BuildOptions,
    BuildResult,
    build_bundle,
    load_profile,
    verify_bundle,
)
from export_center.devportal.manifest import DevportalManifest
from export_center.errors import BadInputError, NotFoundError
from export_center.signing.keystore import KeyStore
from export_center.verification import VerifyReport

app = typer.Typer(
    name="devportal",
    help="devportal:offline: the developer portal as a signed, offline-verifiable bundle.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", help=f"Directory to write {BUNDLE_NAME} to.")],
    input_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Input tree: portal/, specs/, sdks/<name>/, changelog/ (or use --profile)."
        ),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="A devportal:offline profile (JSON) naming the input tree in options.inputDir.",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Keyid (or unique prefix) to sign with; default: newest."),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--metadata", metavar="KEY=VALUE", help="Free-form manifest metadata (repeatable)."
        ),
    ] = None,
    generated_at: Annotated[
        str | None,
        typer.Option(
            "--generated-at",
            help="generatedAt of the manifest (RFC 3339 with zone); default SOURCE_DATE_EPOCH.",
        ),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Check the input tree, then write a reproducible, signed devportal-offline-bundle.tgz."""
    if output not in ("table", "json"):
        raise BadInputError(f"--format {output!r}: choose table or json")
    meta: dict[str, Any] = {}
    if profile is not None:
        if input_dir is not None:
            raise BadInputError("give either INPUT_DIR or --profile, not both")
        loaded = load_profile(profile)
        input_dir, meta, key = loaded.input_dir, loaded.metadata, key or loaded.key
    if input_dir is None:
        raise BadInputError("missing INPUT_DIR (or --profile)")
    meta.update(_parse_metadata(metadata or []))
    options = BuildOptions(
        source_date_epoch=source_date_epoch(os.environ),
        generated_at=_parse_time(generated_at) if generated_at else None,
        metadata=meta,
    )
    signer = KeyStore.from_settings(common.settings()).signer(key)
    result = build_bundle(input_dir, out, signer, options)
    for s in result.skipped:
        common.err_console.print(f"skipped: {s.path}: {s.reason}", highlight=False)
    if output == "json":
        common.print_json(_build_json(result))
        return
    typer.echo(f"bundle     {result.path}")
    typer.echo(f"sha256     {result.sha256}")
    typer.echo(f"bundleId   {result.bundle_id}")
    typer.echo(f"entries    {result.entry_count} files, {result.total_size_bytes} bytes")
    typer.echo(f"openapi    {', '.join(result.openapi_documents) or '(none)'}")
    typer.echo(f"signed by  {result.keyid}")
    typer.echo(f"root hash  {result.root_hash}")
    common.err_console.print(
        "verify: `stella devportal verify BUNDLE --trust-roots KEYS.pem`, or offline after "
        "extraction: `sh verify-offline.sh PUBLIC_KEY.pem` "
        f"(public key: `stella keys export-public {result.keyid[:16]}`)",
        highlight=False,
    )


@app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help=f"The {BUNDLE_NAME} to check.")],
    trust_roots: Annotated[
        Path,
        typer.Option("--trust-roots", help="PEM file with one or more trusted public keys."),
    ],
    output: common.FormatOpt = "table",
) -> None:
    """Verify a devportal bundle offline: archive, checksums, DSSE signature, manifest, files."""
    if output not in ("table", "json"):
        raise BadInputError(f"--format {output!r}: choose table or json")
    roots = common.read_trust_roots(trust_roots)
    try:
        fh = bundle.open("rb")
    except OSError as e:
        raise NotFoundError(f"{bundle}: cannot read: {e.strerror}") from e
    with fh:
        report = verify_bundle(fh, roots)
    if output == "json":
        common.print_json(_verify_json(report))
        return
    for check in report.checks:
        typer.echo(f"ok  {check.name:<10} {check.detail}")
    typer.echo(f"bundleId   {report.bundle_id}")
    typer.echo(f"generated  {report.generated_at}")
    typer.echo(f"root hash  {report.root_hash}")
    typer.echo("verified")


def _parse_metadata(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BadInputError(f"--metadata {item!r}: expected KEY=VALUE")
        if name in out:
            raise BadInputError(f"--metadata {name!r} given twice")
        out[name] = value
    return out


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise BadInputError(f"--generated-at {value!r}: not an RFC 3339 time: {e}") from e
    if moment.tzinfo is None:
        raise BadInputError(
            f"--generated-at {value!r}: needs a time zone", hint="e.g. 2026-01-01T00:00:00Z"
        )
    return moment


def _build_json(result: BuildResult) -> dict[str, object]:
    return {
        "path": str(result.path),
        "sha256": result.sha256,
        "size": result.size,
        "bundleId": result.bundle_id,
        "keyid": result.keyid,
        "rootHash": result.root_hash,
        "entryCount": result.entry_count,
        "totalSizeBytes": result.total_size_bytes,
        "openapiDocuments": list(result.openapi_documents),
        "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped],
    }


def _verify_json(report: VerifyReport[DevportalManifest]) -> dict[str, object]:
    return {
        "verified": True,
        "bundleId": report.bundle_id,
        "generatedAt": report.generated_at,
        "rootHash": report.root_hash,
        "entryCount": report.entry_count,
        "checks": [{"name": c.name, "detail": c.detail} for c in report.checks],
    }
