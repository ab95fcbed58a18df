"""``stella kit build|verify|import``: Offline Kits, several bundles across the air gap at once."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from export_center.cli import common
from export_center.errors import BadInputError, NotFoundError
from export_center.signing.interface import PublicKey

app = typer.Typer(
    name="kit",
    help="Offline Kits: several signed bundles across the air gap, in media-sized parts.",
    no_args_is_help=True,
    add_completion=False,
)

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
DEFAULT_SUBDIR = Path("out") / "export" / "offline-kits"

TrustOpt = Annotated[
    Path | None,
    typer.Option(
        "--trust-roots", help="PEM file of trusted public keys (default: the local key store's)."
    ),
]


def parse_size(text: str) -> int:
    """``650M``, ``4G``, ``700MiB``, ``123456`` (binary units) as bytes.

    Raises:
        BadInputError: anything else.
    """
    m = _SIZE.match(text)
    if m is None:
        raise BadInputError(f"--part-size {text!r}: expected bytes, or a number with K, M, G, T")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def _trust_roots(path: Path | None) -> dict[str, PublicKey]:
    """``--trust-roots``, else every public key of the local key store."""
    from export_center.signing.interface import load_trust_roots
    from export_center.signing.keystore import KeyStore

    if path is not None:
        return common.read_trust_roots(path)
    keys = KeyStore.from_settings(common.settings())
    pem = b"".join(keys.export_public(k.keyid) for k in keys.list())
    if not pem:
        raise NotFoundError(
            "no trust roots: the key store is empty", hint="pass --trust-roots KEYS.pem"
        )
    return load_trust_roots(pem, where="the key store's public keys")


def _parts(paths: list[Path]) -> list[Path]:
    """Part directories: each PATH is a part, or a kit directory holding ``part-*``."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise NotFoundError(f"{p}: no such part or kit directory")
        if p.is_dir() and not (p / "part.json").exists():
            found = sorted(d for d in p.iterdir() if d.is_dir() and d.name.startswith("part-"))
            if not found:
                raise BadInputError(f"{p}: neither a kit part (part.json) nor a kit directory")
            out.extend(found)
        else:
            out.append(p)
    return out


@app.command("build")
def build(
    bundles: Annotated[
        list[Path], typer.Argument(help="Bundle archives (with their .sha256/.sig sidecars).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Kits directory (default: <data dir>/out/export/offline-kits)."),
    ] = None,
    part_size: Annotated[
        str | None,
        typer.Option("--part-size", help="Largest slice of the kit per part: 650M, 4G, ..."),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Keyid (or prefix) to sign with; default: newest.")
    ] = None,
    trust_roots: TrustOpt = None,
    output: common.FormatOpt = "table",
) -> None:
    """Verify bundles and stage them as one signed kit, split into parts that verify alone."""
    from export_center.archive.writer import source_date_epoch
    from export_center.kit import build_kit, inspect
    from export_center.signing.keystore import KeyStore

    cfg = common.settings()
    size = parse_size(part_size) if part_size else None
    roots = _trust_roots(trust_roots)
    sources = [inspect(b, roots) for b in bundles]
    signer = KeyStore.from_settings(cfg).signer(key)
    built = build_kit(
        sources,
        out or cfg.data_dir / DEFAULT_SUBDIR,
        signer,
        part_size=size,
        mtime=source_date_epoch(os.environ),
    )
    result: dict[str, Any] = {
        "kitId": built.kit_id,
        "directory": str(built.directory),
        "parts": [str(p) for p in built.parts],
        "kitSha256": built.kit_sha256,
        "kitBytes": built.kit_size,
        "largestPartBytes": built.largest_part_bytes,
        "signedBy": signer.keyid,
        "bundles": [
            {
                "order": b.order,
                "action": b.action,
                "profile": b.profile,
                "tenant": b.tenant,
                "exportId": b.export_id,
                "sha256": b.archive.sha256,
            }
            for b in built.manifest.bundles
        ],
    }
    if output == "json":
        common.print_json(result)
        return
    common.console.print(f"kit {built.kit_id} in {built.directory}", highlight=False)
    for b in built.manifest.bundles:
        common.console.print(
            f"  {b.order:>3}  {b.action:<13} {b.profile:<17} {b.tenant:<12} {b.export_id}",
            highlight=False,
        )
    common.console.print(
        f"  {len(built.parts)} part(s); kit archive {built.kit_size:,} bytes, sha256 "
        f"{built.kit_sha256}; largest part {built.largest_part_bytes:,} bytes",
        highlight=False,
    )
    common.err_console.print(
        "each part: `sh PART/verify-kit.sh PUBLIC_KEY.pem`; all: `stella kit verify KITDIR`",
        highlight=False,
    )


@app.command("verify")
def verify(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Part directories, or kit directories holding part-*/ directories."),
    ],
    trust_roots: TrustOpt = None,
    kit_id: Annotated[
        str | None, typer.Option("--kit-id", help="Refuse parts of any other kit.")
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Verify each part on its own; when all parts are there, the joined kit and its bundles."""
    from export_center.kit import check_parts, open_kit, verify_part
    from export_center.kit.verify import missing_parts

    roots = _trust_roots(trust_roots)
    dirs = _parts(paths)
    parts = check_parts([verify_part(d, roots) for d in dirs], kit_id)
    missing = missing_parts(parts)
    lines = [f"ok  {p.label}: part {p.manifest.index} of {p.manifest.count}" for p in parts]
    kit_checks: list[dict[str, str]] = []
    if not missing:
        work = Path(tempfile.mkdtemp(prefix="stella-kit-verify-"))
        try:
            kit = open_kit(parts, roots, work, expect_kit=kit_id)
            kit_checks = [{"name": c.name, "detail": c.detail} for c in kit.checks]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    kit_name = parts[0].manifest.kit_id
    if output == "json":
        common.print_json(
            {
                "kitId": kit_name,
                "parts": [
                    {"index": p.manifest.index, "directory": str(p.directory)} for p in parts
                ],
                "missing": missing,
                "complete": not missing,
                "kitChecks": kit_checks,
            }
        )
        return
    for line in lines:
        common.console.print(line, highlight=False)
    if missing:
        common.console.print(
            f"kit {kit_name}: parts {', '.join(map(str, missing))} not given yet; the parts "
            "given are intact and signed; the whole kit is checked once all are here",
            highlight=False,
        )
        return
    for c in kit_checks:
        common.console.print(f"ok  {c['name']:<14} {c['detail']}", highlight=False)
    common.console.print(common.marked("green", "verified", f" kit {kit_name}"))


@app.command("import")
def import_(
    paths: Annotated[
        list[Path],
        typer.Argument(help="All part directories, or the kit directory holding them."),
    ],
    trust_roots: TrustOpt = None,
    trivy_cache_dir: Annotated[
        Path | None,
        typer.Option("--trivy-cache-dir", help="Trivy cache to install the kit's databases into."),
    ] = None,
    deliver_dir: Annotated[
        Path | None,
        typer.Option("--deliver-dir", help="Where to copy bundles that are carried, not imported."),
    ] = None,
    kit_id: Annotated[
        str | None, typer.Option("--kit-id", help="Refuse parts of any other kit.")
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Verify the whole kit first, then import mirrors and install Trivy DBs in the kit's order."""
    from export_center.kit import KitImportError, import_kit

    cfg = common.settings()
    roots = _trust_roots(trust_roots)
    try:
        report = import_kit(
            _parts(paths),
            roots,
            store=common.open_store(),
            data_dir=cfg.data_dir,
            trivy_cache=trivy_cache_dir,
            deliver_dir=deliver_dir,
            imported_by=cfg.user or getpass.getuser(),
            expect_kit=kit_id,
        )
    except KitImportError as e:
        _print_import(e.report.kit_id, e.report.outcomes, output)
        raise
    _print_import(report.kit_id, report.outcomes, output)


def _print_import(kit_id: str, outcomes: list[Any], output: str) -> None:
    if output == "json":
        common.print_json(
            {
                "kitId": kit_id,
                "bundles": [
                    {
                        "order": o.order,
                        "profile": o.profile,
                        "tenant": o.tenant,
                        "exportId": o.export_id,
                        "action": o.action,
                        "status": o.status,
                        "detail": o.detail,
                    }
                    for o in outcomes
                ],
            }
        )
        return
    common.console.print(f"kit {kit_id}", highlight=False)
    for o in outcomes:
        common.console.print(
            f"  {o.order:>3}  {o.status:<11} {o.profile:<17} {o.tenant:<12} {o.export_id}: "
            f"{o.detail}",
            highlight=False,
        )
