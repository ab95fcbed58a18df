"""Keys belong to tenants: the operator assigns them (``stella keys generate --tenant``,
``assign``), a profile uses only its tenant's keys by full keyid, and a tenant's default key is
its newest. KMS key ids are assigned the same way."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from export_center.cli import main
from export_center.errors import BadInputError, ExitCode, NotFoundError
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore


def test_tenant_keys_newest_and_exact_keyids(store: KeyStore) -> None:
    a1 = store.generate(KeyType.ED25519, tenants=["acme"])
    a2 = store.generate(KeyType.ECDSA_P256, tenants=["acme"])
    z = store.generate(KeyType.ED25519, tenants=["zeta"])
    assert [k.keyid for k in store.tenant_keys("acme")] == [a1.keyid, a2.keyid]
    assert store.tenant_key("acme").keyid == a2.keyid  # the newest is the default
    assert store.tenant_key("acme", a1.keyid).keyid == a1.keyid
    # Another tenant's key, a prefix and an unknown keyid are refused alike.
    messages = []
    for ref, shown in ((z.keyid, z.keyid), (a1.keyid[:8], a1.keyid[:8]), ("f" * 64, "f" * 64)):
        with pytest.raises(NotFoundError) as err:
            store.tenant_key("acme", ref)
        messages.append(err.value.message.replace(shown, "K"))
    assert len(set(messages)) == 1, messages
    with pytest.raises(NotFoundError, match="tenant 'nobody' has no signing key") as err:
        store.tenant_key("nobody")
    assert "stella keys assign" in (err.value.hint or "")


def test_assign_and_unassign(store: KeyStore) -> None:
    key = store.generate(KeyType.ED25519, tenants=["acme"])
    assert store.assign(key.keyid[:10], "zeta").tenants == ("acme", "zeta")
    assert store.tenant_key("zeta").keyid == key.keyid
    assert store.unassign(key.keyid, "acme").tenants == ("zeta",)
    with pytest.raises(NotFoundError):
        store.tenant_key("acme")
    with pytest.raises(BadInputError, match="invalid tenant"):
        store.assign(key.keyid, "Not A Tenant!")
    with pytest.raises(BadInputError, match="invalid tenant"):
        store.generate(KeyType.ED25519, tenants=["../x"])


def test_a_version_1_index_reads_as_unassigned_keys(tmp_path: Path) -> None:
    old = KeyStore(tmp_path)
    key = old.generate(KeyType.ED25519)
    # What an earlier version wrote: no tenants, no backend.
    index = tmp_path / "index.json"
    entry = {"keyid": key.keyid, "type": "ed25519", "seq": 1, "created": key.created}
    index.write_text(
        json.dumps({"version": 1, "nextSeq": 2, "keys": [{**entry, "encrypted": False}]})
    )
    store = KeyStore(tmp_path)
    (info,) = store.list()
    assert (info.tenants, info.backend) == ((), "file")
    with pytest.raises(NotFoundError):
        store.tenant_key("default")
    store.assign(key.keyid, "default")
    on_disk = json.loads(index.read_text())
    assert on_disk["version"] == 2 and on_disk["keys"][0]["tenants"] == ["default"]
    assert store.signer().keyid == key.keyid  # the operator's own commands still work


def test_kms_keys_are_assigned_per_tenant(store: KeyStore) -> None:
    kid = "kms://pkcs11/hsm/mirror-kek"
    store.assign_kms(kid, "acme")
    store.assign_kms(kid, "zeta")
    assert store.tenant_kms("acme") == {kid} and store.tenant_kms("zeta") == {kid}
    store.unassign_kms(kid, "acme")
    assert store.tenant_kms("acme") == frozenset()
    with pytest.raises(BadInputError, match="not a KMS key id"):
        store.assign_kms("/etc/kek", "acme")
    with pytest.raises(NotFoundError):
        store.unassign_kms("kms://pkcs11/hsm/other", "acme")


# ---- the CLI ----------------------------------------------------------------------------------


def _run(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    monkeypatch.setenv("STELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STELLA_CONFIG", "")
    monkeypatch.delenv("STELLA_PKCS11_MODULE", raising=False)
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    code = main.run_app(main.app)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_keys_cli_assigns_to_tenants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        ["keys", "generate", "--tenant", "acme", "--format", "json"], tmp_path, monkeypatch, capsys
    )
    assert code == 0
    made = json.loads(out)
    assert made["tenants"] == ["acme"] and made["backend"] == "file"
    code, out, _ = _run(["keys", "generate", "--format", "json"], tmp_path, monkeypatch, capsys)
    assert json.loads(out)["tenants"] == ["default"]  # STELLA_DEFAULT_TENANT's
    code, out, _ = _run(
        ["keys", "assign", made["keyid"][:12], "--tenant", "zeta"], tmp_path, monkeypatch, capsys
    )
    assert code == 0 and "acme, zeta" in out
    code, out, _ = _run(
        ["keys", "list", "--tenant", "zeta", "--format", "json"], tmp_path, monkeypatch, capsys
    )
    assert [k["keyid"] for k in json.loads(out)] == [made["keyid"]]
    code, out, _ = _run(
        ["keys", "unassign", made["keyid"], "--tenant", "zeta"], tmp_path, monkeypatch, capsys
    )
    assert code == 0
    code, out, _ = _run(
        ["keys", "list", "--tenant", "zeta", "--format", "json"], tmp_path, monkeypatch, capsys
    )
    assert json.loads(out) == []
    code, out, _ = _run(
        ["keys", "assign-kms", "kms://pkcs11/hsm/kek", "--tenant", "acme"],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert code == 0
    code, out, _ = _run(["keys", "list-kms", "--format", "json"], tmp_path, monkeypatch, capsys)
    assert [(k["id"], k["tenants"]) for k in json.loads(out)] == [
        ("kms://pkcs11/hsm/kek", ["acme"])
    ]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["keys", "generate", "--tenant", "BAD!"], ExitCode.BAD_INPUT, "invalid tenant 'BAD!'"),
        (["keys", "assign", "abcdef", "--tenant", "acme"], ExitCode.NOT_FOUND, "no key 'abcdef'"),
        (["keys", "assign", "xyz", "--tenant", "acme"], ExitCode.BAD_INPUT, "expected hex digits"),
        (
            ["keys", "assign-kms", "file:///k", "--tenant", "acme"],
            ExitCode.BAD_INPUT,
            "not a KMS key id",
        ),
        (
            ["keys", "register-pkcs11", "--token", "t", "--object", "o", "--tenant", "acme"],
            ExitCode.BAD_INPUT,
            "no PKCS#11 module configured",
        ),
    ],
)
def test_keys_cli_refusals_are_one_line(
    args: list[str],
    code: int,
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    got, _, err = _run(args, tmp_path, monkeypatch, capsys)
    assert got == code, err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "data" / "keys" / "index.json").exists()
