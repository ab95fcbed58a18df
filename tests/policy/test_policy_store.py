"""Tenant policy documents in the store (SQLite and PostgreSQL) and ``stella policy``: versions
are immutable, addressed by name and digest, and a profile revision pins one."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from pathlib import Path

import pytest
import rfc8785
import yaml

from export_center.cli import main
from export_center.errors import BadInputError, ExitCode, NotFoundError
from export_center.policy.repository import PolicyStore
from export_center.store.repository import EvidenceStore
from support.mirror import snapshot

DOC = b"""# our gate
apiVersion: stella.policy/v1
name: gate
version: "1"
severityThresholds:
  fail: HIGH
"""


def _digest_by_hand(content: bytes) -> str:
    """The digest as the docs define it, computed without the policy model: RFC 8785 JSON of the
    validated document, defaults spelled out as docs/policy.md lists them."""
    doc = yaml.safe_load(content)
    full = {
        "apiVersion": doc["apiVersion"],
        "name": doc["name"],
        "version": str(doc["version"]),
        "description": None,
        "vexProviders": {
            "trustOrder": [],
            "defaultWeight": 0,
            "ignoreUnknown": False,
            "statusPrecedence": ["affected", "under_investigation", "fixed", "not_affected"],
        },
        "vexAffects": ["not_affected", "fixed"],
        "severityThresholds": {"fail": "HIGH", "warn": "MEDIUM", "unknown": "warn"}
        | doc.get("severityThresholds", {}),
        "ignore": [],
    }
    return "sha256:" + hashlib.sha256(rfc8785.dumps(full)).hexdigest()


def test_versions_digests_and_tenants(db_url: str) -> None:
    store = EvidenceStore.open(db_url)
    policies = PolicyStore(store)
    v1, created = policies.upload("acme", "gate", DOC)
    assert created and v1.version == 1 and v1.content == DOC  # comments kept
    assert v1.digest == _digest_by_hand(DOC)
    assert v1.policy().digest == v1.digest
    # Another spelling of the same document is the same version.
    as_json = json.dumps(yaml.safe_load(DOC)).encode()
    same, created = policies.upload("acme", "gate", as_json)
    assert (same.version, created, same.media_type) == (1, False, "application/yaml")
    v2, created = policies.upload("acme", "gate", DOC.replace(b"HIGH", b"CRITICAL"))
    assert created and v2.version == 2 and v2.digest != v1.digest
    assert policies.get("acme", "gate").version == 2
    assert policies.get("acme", "gate", digest=v1.digest).version == 1
    assert policies.get("acme", "gate", version=1).digest == v1.digest
    assert [p.version for p in policies.versions("acme", "gate")] == [1, 2]
    items, total = policies.list("acme")
    assert [(p.name, p.version) for p in items] == [("gate", 2)] and total == 1
    # Tenants never see each other's policies.
    with pytest.raises(NotFoundError, match="no policy 'gate' for tenant 'zeta'"):
        policies.get("zeta", "gate")
    assert policies.list("zeta") == ([], 0)
    before = snapshot(store)
    for name, content, words in (
        ("Bad Name", DOC, "invalid policy name"),
        ("gate", DOC.replace(b"fail: HIGH", b"fial: HIGH"), "severityThresholds.fial"),
        ("gate", b"a: &x [1]\nb: *x\n", "anchors and aliases are not accepted"),
        ("gate", b"\xff\xfe", "not UTF-8"),
        ("gate", b"x" * (1024 * 1024 + 1), "at most"),
    ):
        with pytest.raises(BadInputError, match=words):
            policies.upload("acme", name, content)
    assert snapshot(store) == before


def test_concurrent_uploads_lose_no_version(db_url: str) -> None:
    # More uploaders than any small retry budget, released together: each must get its own
    # version (an optimistic "newest + 1, retry on conflict" loop with 5 rounds failed here).
    n = 16
    store = EvidenceStore.open(db_url)
    policies = PolicyStore(store)
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def upload(i: int) -> None:
        try:
            start.wait()
            policies.upload("acme", "gate", DOC.replace(b'"1"', f'"{i}"'.encode()))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    versions = policies.versions("acme", "gate")
    assert [p.version for p in versions] == list(range(1, n + 1))
    assert sorted(p.document["version"] for p in versions) == sorted(str(i) for i in range(n))


def test_concurrent_uploads_of_one_document_make_one_version(db_url: str) -> None:
    n = 8
    store = EvidenceStore.open(db_url)
    policies = PolicyStore(store)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def upload() -> None:
        try:
            start.wait()
            stored, created = policies.upload("acme", "gate", DOC)
            results.append((stored.version, created))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=upload) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == [(1, False)] * (n - 1) + [(1, True)]
    assert [p.version for p in policies.versions("acme", "gate")] == [1]


# ---- stella policy, and profiles naming a policy --------------------------------------------


def _stella(
    args: list[str], data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setenv("STELLA_DATA_DIR", str(data))
    monkeypatch.setenv("STELLA_CONFIG", "")
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    code = main.run_app(main.app)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_policy_cli_and_profiles_pinning_a_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    file = tmp_path / "gate.yaml"
    file.write_bytes(DOC)

    def stella(*args: str) -> tuple[int, str, str]:
        return _stella(list(args), data, monkeypatch, capsys)

    code, out, err = stella("policy", "upload", "gate", str(file))
    assert code == 0, err
    assert f"stored policy gate version 1 ({_digest_by_hand(DOC)})" in out
    code, out, _ = stella("policy", "upload", "gate", str(file))
    assert "unchanged" in out and "version 1" in out
    code, out, _ = stella("policy", "list", "--format", "json")
    listed = json.loads(out)
    assert [(p["name"], p["version"]) for p in listed["items"]] == [("gate", 1)]
    code, out, _ = stella("policy", "show", "gate")
    assert json.loads(out)["content"] == DOC.decode()

    code, out, err = stella(
        "export",
        "profile",
        "create",
        "gated",
        "--kind",
        "json",
        "--variant",
        "policy",
        "--policy",
        "gate",
    )
    assert code == 0, err
    code, out, _ = stella("export", "profile", "show", "gated")
    pinned = json.loads(out)["spec"]["policy"]
    assert pinned == {
        "name": "gate",
        "digest": _digest_by_hand(DOC),
        "policySnapshotMode": "required",
    }

    newer = DOC.replace(b"HIGH", b"CRITICAL")
    file.write_bytes(newer)
    assert stella("policy", "upload", "gate", str(file))[0] == 0
    # The revision keeps v1; revising with --policy pins the newest version.
    code, out, _ = stella("export", "profile", "show", "gated")
    assert json.loads(out)["spec"]["policy"]["digest"] == _digest_by_hand(DOC)
    code, out, err = stella("export", "profile", "revise", "gated", "--policy", "gate")
    assert code == 0 and "r2" in out, err
    code, out, _ = stella("export", "profile", "show", "gated")
    assert json.loads(out)["spec"]["policy"]["digest"] == _digest_by_hand(newer)
    code, out, _ = stella("policy", "show", "gate", "--versions")
    assert [v["version"] for v in json.loads(out)] == [1, 2]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (
            ["policy", "upload", "gate", "/nonexistent/gate.yaml"],
            ExitCode.NOT_FOUND,
            "no such policy file",
        ),
        (
            ["policy", "upload", "Bad!", "/nonexistent/gate.yaml"],
            ExitCode.BAD_INPUT,
            "invalid policy name",
        ),
        (["policy", "show", "missing"], ExitCode.NOT_FOUND, "no policy 'missing'"),
        (
            ["export", "profile", "create", "gated", "--kind", "json", "--variant", "policy"],
            ExitCode.BAD_INPUT,
            "json:policy needs a policy",
        ),
    ],
)
def test_policy_cli_refusals(
    args: list[str],
    code: int,
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    got, _, err = _stella(args, tmp_path / "data", monkeypatch, capsys)
    assert got == code, err
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # the line, and perhaps its hint
