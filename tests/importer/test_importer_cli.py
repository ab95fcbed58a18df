"""`stella export run` on one instance, `stella airgap ...` on another: the commands and their exit
codes (0 ok, 2 verification failed, 3 not found, 4 bad input, 6 conflict)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from support.mirror import TENANT, Instance, advisory, age_identity, evidence, extract, stella


def _run(a: Instance, profile: str, out: Path) -> Path:
    res = stella("export", "run", profile, "--out", str(out), "--format", "json", env=a.env())
    assert res.returncode == 0, res.stderr
    return Path(json.loads(res.stdout)["archive"])


@pytest.mark.slow
def test_airgap_commands_and_exit_codes(
    make_instance: Callable[..., Instance], tmp_path: Path
) -> None:
    a, b = make_instance("A"), make_instance("B")
    keys = KeyStore.from_settings(a.settings)
    info = keys.generate(KeyType.ED25519, tenants=["default"])
    airgap = b.data_dir / "airgap"
    airgap.mkdir(parents=True)
    (airgap / "trust-roots.pem").write_bytes(keys.export_public(info.keyid))  # the default path
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(8)))
    made = stella(
        "export",
        "profile",
        "create",
        "mirror-full",
        "--kind",
        "mirror",
        "--variant",
        "full",
        env=a.env(),
    )
    assert made.returncode == 0, made.stderr
    first = _run(a, "mirror-full", tmp_path / "out1")

    checked = stella("airgap", "verify-bundle", str(first), env=b.env())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "tuf" in checked.stdout and "importable as generation 1" in checked.stdout

    imported = stella("airgap", "import", str(first), "--by", "alice", env=b.env())
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "as generation 1" in imported.stdout
    replay = stella("airgap", "import", str(first), env=b.env())
    assert replay.returncode == 0 and "replay" in replay.stdout

    a.put("feed", advisory("ADV-1", version="2.0"))
    second = _run(a, "mirror-full", tmp_path / "out2")
    assert stella("airgap", "import", str(second), env=b.env()).returncode == 0
    older = stella("airgap", "import", str(first), env=b.env())
    assert older.returncode == 6 and "older than the installed" in older.stderr
    state = stella("airgap", "verify-bundle", str(first), env=b.env())
    assert state.returncode == 6 and "not importable" in state.stdout

    status = json.loads(stella("airgap", "status", "--format", "json", env=b.env()).stdout)
    [current] = status["streams"]
    assert (current["tenant"], current["generation"], current["kind"]) == (TENANT, 2, "full")
    listed = json.loads(stella("airgap", "list", "--format", "json", env=b.env()).stdout)
    first_gen = listed["generations"][0]
    assert (first_gen["generation"], first_gen["importedBy"]) == (1, "alice")
    b.store.engine.dispose()
    assert evidence(b.store) == evidence(a.store)

    missing = stella("airgap", "import", str(tmp_path / "nope.tar.zst"), env=b.env())
    assert missing.returncode == 3
    bundle = extract(second, tmp_path / "tampered")
    (bundle / "README.txt").write_text("changed\n")
    tampered = stella("airgap", "verify-bundle", str(bundle), env=b.env())
    assert tampered.returncode == 2 and "FAIL" in tampered.stdout
    refused = stella("airgap", "import", str(bundle), env=b.env())
    assert refused.returncode == 2 and "refusal recorded in" in refused.stderr

    identity, recipient = age_identity()
    body = tmp_path / "enc.yaml"
    body.write_text(
        f"kind: mirror\nvariant: full\noptions:\n  encryption:\n    recipients: [{recipient}]\n"
    )
    assert (
        stella(
            "export", "profile", "create", "mirror-enc", "--file", str(body), env=a.env()
        ).returncode
        == 0
    )
    a.put("feed", advisory("NEW-1"))
    enc = _run(a, "mirror-enc", tmp_path / "out3")
    no_key = stella("airgap", "import", str(enc), env=b.env())
    assert no_key.returncode == 4 and "no key was given" in no_key.stderr
    skipped = stella("airgap", "verify-bundle", str(enc), env=b.env())
    assert skipped.returncode == 0 and "SKIP decrypt" in skipped.stdout
    ident_file = tmp_path / "identity.txt"
    ident_file.write_text(f"# created for the test\n{identity}\n")
    with_key = stella("airgap", "import", str(enc), "--identity", str(ident_file), env=b.env())
    # Another profile is another mirror stream: it replaces mirror-full only when told so.
    assert with_key.returncode == 6, with_key.stdout + with_key.stderr
    assert "belongs to mirror stream 'mirror-full'" in with_key.stderr
    with_key = stella(
        "airgap",
        "import",
        str(enc),
        "--identity",
        str(ident_file),
        "--replace-stream",
        "mirror-full",
        "--reason",
        "encrypted from now on",
        env=b.env(),
    )
    assert with_key.returncode == 0, with_key.stdout + with_key.stderr
    assert "stream mirror-full replaced" in with_key.stdout
    b.store.engine.dispose()
    assert evidence(b.store) == evidence(a.store)
