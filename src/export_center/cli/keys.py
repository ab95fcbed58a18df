"""``stella keys``: the operator's key store (``<data dir>/keys``) and who may use each key.

Keys belong to tenants: ``generate --tenant T`` (default: the default tenant) and ``assign``
decide which tenants' profiles may sign with a key; a profile names one of its tenant's keys by
full keyid, or gets the tenant's newest. HSM keys are registered from the operator's PKCS#11
module (``register-pkcs11``, module and PIN from ``STELLA_PKCS11_MODULE`` / ``_PIN``), and KMS
keys for mirror encryption are assigned the same way (``assign-kms``). See docs/runbook.md.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from export_center.cli import common
from export_center.errors import BadInputError
from export_center.signing.interface import KeyType, load_public_key
from export_center.signing.keystore import KeyInfo, KeyStore

KeyDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-dir",
        callback=common.existing_dir,
        help="Key store directory (default: <data dir>/keys).",
    ),
]


TenantArg = Annotated[
    str | None,
    typer.Option("--tenant", help="Tenant whose profiles may sign with the key."),
]
RequiredTenant = Annotated[str, typer.Option("--tenant", help="The tenant.")]

app = typer.Typer(
    name="keys",
    help="Signing keys: generate, assign to tenants, list, export.",
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
    tenant: TenantArg = None,
    output: common.FormatOpt = "table",
) -> None:
    """Generate a key pair for a tenant (default: the default one); print keyid and paths."""
    owner = _tenant(tenant)
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
    info = store.generate(key_type, passphrase=passphrase, tenants=[owner])
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
    typer.echo(f"tenants      {', '.join(info.tenants)}")
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
def list_keys(
    key_dir: KeyDirOpt = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only the keys of this tenant.")
    ] = None,
    output: common.FormatOpt = "table",
) -> None:
    """List the keys of the store, oldest first, with the tenants that may use each."""
    store = KeyStore(key_dir or common.settings().key_dir)
    keys = store.tenant_keys(tenant) if tenant is not None else store.list()
    if output == "json":
        common.print_json([_as_json(k) for k in keys])
        return
    if not keys:
        common.console.print(f"no keys in {store.directory}", highlight=False)
        return
    defaults = {t: k.keyid for k in keys for t in k.tenants}  # the newest key of each tenant
    table = Table(
        title=f"Keys in {store.directory}", caption="* a tenant's newest key: its default signer"
    )
    # A 16-digit prefix names a key in the operator's commands; profiles use the full keyid
    # (--format json has it).
    for col in ("seq", "keyid", "type", "tenants", "where", "created"):
        table.add_column(
            col,
            justify="right" if col == "seq" else "left",
            no_wrap=col in ("seq", "keyid", "type", "tenants"),
            min_width=16 if col == "keyid" else None,
        )
    for k in keys:
        owners = ", ".join(f"{t}{' *' if defaults[t] == k.keyid else ''}" for t in k.tenants)
        where = "file" + (" (encrypted)" if k.encrypted else "")
        table.add_row(
            str(k.seq),
            k.keyid[:16],
            k.key_type.value,
            owners or "(none)",
            where if k.backend == "file" else f"pkcs11 {k.token}/{k.object}",
            k.created,
        )
    common.console.print(table)


@app.command("assign")
def assign(
    keyid: Annotated[str, typer.Argument(help="Keyid or a unique prefix of it.")],
    tenant: RequiredTenant,
    key_dir: KeyDirOpt = None,
) -> None:
    """Let TENANT's profiles sign with the key (its newest key is its default)."""
    from export_center.store.repository import check_tenant

    info = KeyStore(key_dir or common.settings().key_dir).assign(keyid, check_tenant(tenant))
    common.console.print(
        f"key {info.keyid} is assigned to {', '.join(info.tenants)}", highlight=False
    )


@app.command("unassign")
def unassign(
    keyid: Annotated[str, typer.Argument(help="Keyid or a unique prefix of it.")],
    tenant: RequiredTenant,
    key_dir: KeyDirOpt = None,
) -> None:
    """Take the key away from TENANT (bundles it signed stay valid)."""
    info = KeyStore(key_dir or common.settings().key_dir).unassign(keyid, tenant)
    owners = ", ".join(info.tenants) or "no tenant"
    common.console.print(f"key {info.keyid} is assigned to {owners}", highlight=False)


@app.command("register-pkcs11")
def register_pkcs11(
    token_label: Annotated[str, typer.Option("--token", help="Token label on the HSM.")],
    object_label: Annotated[str, typer.Option("--object", help="Key pair label on the token.")],
    tenant: RequiredTenant,
    output: common.FormatOpt = "table",
) -> None:
    """Register a key pair of the operator's HSM for TENANT; profiles then name it by keyid.

    The module and PIN come from STELLA_PKCS11_MODULE and STELLA_PKCS11_PIN.
    """
    from export_center.errors import ConfigError
    from export_center.signing.registry import create_signer
    from export_center.store.repository import check_tenant

    check_tenant(tenant)
    settings = common.settings()
    if not settings.pkcs11_module:
        raise ConfigError(
            "no PKCS#11 module configured",
            hint="set STELLA_PKCS11_MODULE to the vendor's PKCS#11 library (.so)",
        )
    pin = settings.pkcs11_pin
    config = {"module": settings.pkcs11_module, "token": token_label, "key_label": object_label}
    signer = create_signer("pkcs11", config | ({"pin": pin.get_secret_value()} if pin else {}))
    info = KeyStore(settings.key_dir).register_pkcs11(
        token_label, object_label, load_public_key(signer.public_key_pem()), tenants=[tenant]
    )
    if output == "json":
        common.print_json(_as_json(info))
        return
    typer.echo(f"keyid        {info.keyid}")
    typer.echo(f"type         {info.key_type.value}")
    typer.echo(f"token        {info.token} / {info.object}")
    typer.echo(f"tenants      {', '.join(info.tenants)}")
    typer.echo(f"public key   {info.public_path}")


@app.command("assign-kms")
def assign_kms(
    key_id: Annotated[str, typer.Argument(help="KMS key id, kms://pkcs11/<token>/<key>.")],
    tenant: RequiredTenant,
) -> None:
    """Let TENANT's mirror profiles encrypt to this KMS key (options.encryption.kms)."""
    from export_center.store.repository import check_tenant

    info = KeyStore(common.settings().key_dir).assign_kms(key_id, check_tenant(tenant))
    common.console.print(
        f"KMS key {info.id} is assigned to {', '.join(info.tenants)}", highlight=False
    )


@app.command("unassign-kms")
def unassign_kms(
    key_id: Annotated[str, typer.Argument(help="KMS key id.")],
    tenant: RequiredTenant,
) -> None:
    """Take the KMS key away from TENANT."""
    info = KeyStore(common.settings().key_dir).unassign_kms(key_id, tenant)
    owners = ", ".join(info.tenants) or "no tenant"
    common.console.print(f"KMS key {info.id} is assigned to {owners}", highlight=False)


@app.command("list-kms")
def list_kms(output: common.FormatOpt = "table") -> None:
    """List the KMS key ids and the tenants that may encrypt to each."""
    kms = KeyStore(common.settings().key_dir).kms_keys()
    if output == "json":
        common.print_json(
            [{"id": k.id, "tenants": list(k.tenants), "created": k.created} for k in kms]
        )
        return
    table = Table(title=f"{len(kms)} KMS keys")
    for col in ("id", "tenants", "created"):
        table.add_column(col)
    for k in kms:
        table.add_row(k.id, ", ".join(k.tenants) or "(none)", k.created)
    common.console.print(table)


@app.command("export-public")
def export_public(
    keyid: Annotated[str, typer.Argument(help="Keyid or a unique prefix of it.")],
    key_dir: KeyDirOpt = None,
) -> None:
    """Print the public key (PEM) of KEYID, e.g. to build a trust-roots file."""
    store = KeyStore(key_dir or common.settings().key_dir)
    typer.echo(store.export_public(keyid).decode("ascii"), nl=False)


def _tenant(tenant: str | None) -> str:
    from export_center.store.repository import check_tenant

    return check_tenant(common.tenant_or_default(tenant))


def _as_json(info: KeyInfo) -> dict[str, object]:
    return {
        "keyid": info.keyid,
        "type": info.key_type.value,
        "seq": info.seq,
        "created": info.created,
        "encrypted": info.encrypted,
        "backend": info.backend,
        "tenants": list(info.tenants),
        "privateKey": str(info.private_path) if info.backend == "file" else None,
        "publicKey": str(info.public_path),
        **({"token": info.token, "object": info.object} if info.backend == "pkcs11" else {}),
    }
