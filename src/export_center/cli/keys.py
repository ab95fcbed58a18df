"""``stella keys generate|list|export-public``: the file key store (``<data dir>/keys``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from export_center.cli import common
from export_center.errors import BadInputError
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyInfo, KeyStore

KeyDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-dir",
        callback=common.existing_dir,
        help="Key store directory (default: <data dir>/keys).",
    ),
]


app = typer.Typer(
    name="keys",
    help="Signing keys: generate, list, export public keys.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("generate")
def generate(
    key_type: Annotated[
        KeyType,
        typer.Option("--type", help="Key type; ed25519 signs deterministically."),
    ] = KeyType.ED25519,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also copy the PEM files here (the key pair always goes into the key store).",
        ),
    ] = None,
    passphrase_env: Annotated[
        str | None,
        typer.Option(
            "--passphrase-env",
            metavar="VAR",
            help="Encrypt the private key with the passphrase in this environment variable.",
        ),
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """Generate a key pair; print its keyid and file paths."""
    if out is not None:  # before the key is made: a refused copy must not leave a new key
        common.check_output_dir(out, "the key files")
    passphrase: str | None = None
    if passphrase_env is not None:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise BadInputError(
                f"--passphrase-env {passphrase_env}: the variable is unset or empty",
                hint=f"export {passphrase_env}=... first",
            )
    store = KeyStore(common.settings().key_dir)
    info = store.generate(key_type, passphrase=passphrase)
    copies: list[Path] = []
    if out is not None:
        common.output_dir(out, "the key files")
        for src in (info.private_path, info.public_path):
            dest = out / src.name
            shutil.copyfile(src, dest)
            dest.chmod(src.stat().st_mode & 0o777)
            copies.append(dest)
    if output == "json":
        common.print_json(_as_json(info))
        return
    typer.echo(f"keyid        {info.keyid}")
    typer.echo(f"type         {info.key_type.value}")
    typer.echo(f"private key  {info.private_path}")
    typer.echo(f"public key   {info.public_path}")
    for copy in copies:
        typer.echo(f"copied to    {copy}")
    if not info.encrypted:
        common.err_console.print(
            "note: the private key is not encrypted (use --passphrase-env VAR to encrypt it)",
            highlight=False,
        )


@app.command("list")
def list_keys(key_dir: KeyDirOpt = None, output: common.FormatOpt = "table") -> None:
    """List the keys of the store, oldest first; the last one is the default signer."""
    store = KeyStore(key_dir or common.settings().key_dir)
    keys = store.list()
    if output == "json":
        common.print_json([_as_json(k) for k in keys])
        return
    if not keys:
        common.console.print(f"no keys in {store.directory}", highlight=False)
        return
    table = Table(title=f"Keys in {store.directory}", caption="* newest: the default signer")
    # A 16-digit prefix is enough to name a key in every command; --format json has it all.
    for col in ("seq", "keyid", "type", "created", "encrypted"):
        table.add_column(col, justify="right" if col == "seq" else "left", no_wrap=True)
    for k in keys:
        table.add_row(
            f"{k.seq}{' *' if k is keys[-1] else ''}",
            k.keyid[:16],
            k.key_type.value,
            k.created,
            "yes" if k.encrypted else "no",
        )
    common.console.print(table)


@app.command("export-public")
def export_public(
    keyid: Annotated[str, typer.Argument(help="Keyid or a unique prefix of it.")],
    key_dir: KeyDirOpt = None,
) -> None:
    """Print the public key (PEM) of KEYID, e.g. to build a trust-roots file."""
    store = KeyStore(key_dir or common.settings().key_dir)
    typer.echo(store.export_public(keyid).decode("ascii"), nl=False)


def _as_json(info: KeyInfo) -> dict[str, object]:
    return {
        "keyid": info.keyid,
        "type": info.key_type.value,
        "seq": info.seq,
        "created": info.created,
        "encrypted": info.encrypted,
        "privateKey": str(info.private_path),
        "publicKey": str(info.public_path),
    }
