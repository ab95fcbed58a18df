"""Tenants are not the operator (issue 13 items 1-3, issue 15): over the API, nothing a tenant
sends names a server file, module, key or another tenant's export, every refusal is a 400 whose
details name the field, and the store is unchanged. On SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from export_center.exporter import run_export
from export_center.planner.profiles import parse_profile_spec
from export_center.policy.document import load_policy
from export_center.runtime.container import Services
from export_center.runtime.metrics import Metrics
from export_center.service.app import create_app
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from export_center.store.models import Base
from support.service import auth, fast_service, make_settings, put_advisories, tenant_token

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

PROFILES = "/api/export/profiles"
POLICIES = "/api/export/policies"
POLICY = b"""apiVersion: stella.policy/v1
name: gate
version: "1"
severityThresholds: {fail: HIGH, warn: MEDIUM}
"""
# Tables a refused request must leave alone (tokens record their last use; that is not state
# a request changes on purpose).
_LEFT_OUT = {"api_tokens", "idempotency_keys"}


@dataclass
class Scene:
    client: TestClient
    services: Services
    acme: dict[str, str]  # headers
    zeta: dict[str, str]
    acme_key: str
    zeta_key: str
    zeta_export: str  # a mirror export zeta published
    acme_export: str  # and one of acme


def _state(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    from sqlalchemy import select

    out: dict[str, list[tuple[Any, ...]]] = {}
    with services.store.engine.connect() as c:
        for name, table in sorted(Base.metadata.tables.items()):
            if name not in _LEFT_OUT:
                out[name] = sorted((tuple(r) for r in c.execute(select(table))), key=repr)
    return out


@pytest.fixture
def scene(db_url: str, tmp_path: Path) -> Iterator[Scene]:
    settings = make_settings(tmp_path / "data", db_url)
    keys = KeyStore(settings.key_dir)
    acme_key = keys.generate(KeyType.ED25519, tenants=["acme"]).keyid
    zeta_key = keys.generate(KeyType.ED25519, tenants=["zeta"]).keyid
    services = Services.open(fast_service(settings), metrics=Metrics())
    put_advisories(services.store, "acme", 3)
    put_advisories(services.store, "zeta", 3)
    exports = {}
    for tenant in ("acme", "zeta"):
        full = services.registry.create(
            tenant, "nightly-full", parse_profile_spec({"kind": "mirror", "variant": "full"})
        )
        exports[tenant] = run_export(settings, services.store, full, tmp_path / tenant)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield Scene(
            client=client,
            services=services,
            acme=auth(tenant_token(services, ["acme"])),
            zeta=auth(tenant_token(services, ["zeta"])),
            acme_key=acme_key,
            zeta_key=zeta_key,
            zeta_export=exports["zeta"].bundle.export_id,
            acme_export=exports["acme"].bundle.export_id,
        )
    services.close()


RAW = {"kind": "json", "variant": "raw"}
DELTA = {"kind": "mirror", "variant": "delta"}


def _attacks(s: Scene) -> list[tuple[str, dict[str, Any], str, str]]:
    """(what, spec, the field the answer names, words of its message)"""
    return [
        (
            "policy as a server file",
            {"kind": "json", "variant": "policy", "policy": {"document": "/etc/passwd"}},
            "spec.policy.document",
            "a server file is not a policy",
        ),
        (
            "delta base as a server file",
            {**DELTA, "options": {"base": {"bundle": "/srv/exports/other.tar.zst"}}},
            "spec.options.base.bundle",
            "export id",
        ),
        (
            "delta base as a server directory",
            {**DELTA, "options": {"base": {"dir": "/srv/exports"}}},
            "spec.options.base.dir",
            "export id",
        ),
        (
            "a PKCS#11 module to load",
            {**RAW, "signing": {"key": "pkcs11:token=t;object=k?module-path=/tmp/x.so"}},
            "spec.signing.key",
            "PKCS#11 URI",
        ),
        (
            "another tenant's key",
            {**RAW, "signing": {"key": s.zeta_key}},
            "spec.signing.key",
            "is assigned to tenant 'acme'",
        ),
        ("a key prefix", {**RAW, "signing": {"key": s.acme_key[:2]}}, "spec.signing.key", "64 hex"),
        (
            "another tenant's export as base",
            {**DELTA, "options": {"base": {"exportId": s.zeta_export}}},
            "spec.options.base.exportId",
            "no published export",
        ),
        (
            "a KMS key of the operator's HSM",
            {
                "kind": "mirror",
                "variant": "full",
                "options": {"encryption": {"kms": ["kms://pkcs11/ops/master"]}},
            },
            "spec.options.encryption.kms[0]",
            "not assigned to tenant 'acme'",
        ),
        (
            "another tenant's policy",
            {"kind": "json", "variant": "policy", "policy": {"name": "zeta-gate"}},
            "spec.policy.name",
            "no policy 'zeta-gate'",
        ),
        ("a typo", {"kind": "trivy", "variant": "db", "options": {"validty": "P7D"}}, "", ""),
        ("json:raw options", {**RAW, "options": {"blob": "x" * 100_000}}, "", ""),
        (
            "a bad duration",
            {"kind": "trivy", "variant": "db", "options": {"validity": "soon"}},
            "",
            "",
        ),
    ]


def test_attacks_are_refused_with_400_and_the_store_unchanged(scene: Scene) -> None:
    s = scene
    r = s.client.post(
        POLICIES, json={"name": "zeta-gate", "content": POLICY.decode()}, headers=s.zeta
    )
    assert r.status_code == 201, r.text
    before = _state(s.services)
    for what, spec, field, words in _attacks(s):
        for method, path, body in (
            ("create", PROFILES, {"name": "evil", "spec": spec}),
            ("revise", f"{PROFILES}/nightly-full/revisions", {"spec": spec}),
        ):
            r = s.client.post(path, json=body, headers=s.acme)
            assert r.status_code == 400, (what, method, r.text)
            answer = r.json()
            assert answer["code"] == "ERR_EXPORT_BAD_INPUT", (what, answer)
            fields = [d.get("field") for d in answer["details"]]
            assert all(f and f.startswith("spec.") for f in fields), (what, fields)
            if field:
                assert field in fields, (what, answer)
                message = next(d["message"] for d in answer["details"] if d["field"] == field)
                assert words in message, (what, message)
            assert "/etc/passwd" not in r.text and "/srv/exports" not in r.text
    assert _state(s.services) == before


def test_other_tenants_keys_and_exports_are_answered_like_missing_ones(scene: Scene) -> None:
    s = scene

    def refusal(spec: dict[str, Any]) -> str:
        r = s.client.post(PROFILES, json={"name": "probe", "spec": spec}, headers=s.acme)
        assert r.status_code == 400, r.text
        return str(r.json()["details"][0]["message"])

    # No existence oracle: another tenant's key reads exactly like a key that does not exist.
    theirs = refusal({**RAW, "signing": {"key": s.zeta_key}})
    nobody = refusal({**RAW, "signing": {"key": "0" * 64}})
    assert theirs.replace(s.zeta_key, "K") == nobody.replace("0" * 64, "K")
    theirs = refusal({**DELTA, "options": {"base": {"exportId": s.zeta_export}}})
    nobody = refusal({**DELTA, "options": {"base": {"exportId": "no-such-export-r1"}}})
    assert theirs.replace(s.zeta_export, "E") == nobody.replace("no-such-export-r1", "E")


def test_own_key_policy_and_base_are_accepted_and_pinned(scene: Scene) -> None:
    s = scene
    r = s.client.post(POLICIES, json={"name": "gate", "content": POLICY.decode()}, headers=s.acme)
    assert r.status_code == 201
    digest = load_policy(POLICY, "gate.yaml").digest
    assert r.json()["digest"] == digest
    spec = {
        "kind": "mirror",
        "variant": "delta",
        "signing": {"key": s.acme_key},
        "policy": {"name": "gate"},
        "options": {"base": {"exportId": s.acme_export}},
    }
    r = s.client.post(PROFILES, json={"name": "hourly-delta", "spec": spec}, headers=s.acme)
    assert r.status_code == 201, r.text
    stored = r.json()["spec"]
    assert stored["policy"] == {"name": "gate", "digest": digest, "policySnapshotMode": "required"}
    base = stored["options"]["base"]
    assert base["exportId"] == s.acme_export and base["manifestDigest"].startswith("sha256:")
    # A new version of the policy does not change the revision; naming it again does.
    newer = POLICY.replace(b'version: "1"', b'version: "2"')
    r = s.client.post(POLICIES, json={"name": "gate", "content": newer.decode()}, headers=s.acme)
    assert (r.status_code, r.json()["version"]) == (201, 2)
    got = s.client.get(f"{PROFILES}/hourly-delta", headers=s.acme).json()
    assert got["revision"] == 1 and got["spec"]["policy"]["digest"] == digest
    r = s.client.post(f"{PROFILES}/hourly-delta/revisions", json={"spec": spec}, headers=s.acme)
    assert r.status_code == 201 and r.json()["spec"]["policy"]["digest"] != digest


def test_policy_documents_over_the_api(scene: Scene) -> None:
    s = scene
    up = s.client.post(POLICIES, json={"name": "gate", "content": POLICY.decode()}, headers=s.acme)
    assert up.status_code == 201 and up.json()["version"] == 1
    assert up.headers["Location"] == f"{POLICIES}/gate?version=1"
    # The same document (another spelling) is the same version.
    same = POLICY.decode().replace("{fail: HIGH, warn: MEDIUM}", "\n  fail: HIGH\n  warn: MEDIUM")
    again = s.client.post(POLICIES, json={"name": "gate", "content": same}, headers=s.acme)
    assert (again.status_code, again.json()["version"]) == (200, 1)
    shown = s.client.get(f"{POLICIES}/gate", headers=s.acme).json()
    assert shown["content"] == POLICY.decode() and shown["document"]["name"] == "gate"
    assert shown["documentVersion"] == "1"
    listed = s.client.get(POLICIES, headers=s.acme).json()
    assert [p["name"] for p in listed["items"]] == ["gate"] and listed["total"] == 1
    versions = s.client.get(f"{POLICIES}/gate/versions", headers=s.acme).json()
    assert [v["version"] for v in versions] == [1]
    by_digest = s.client.get(f"{POLICIES}/gate", params={"digest": shown["digest"]}, headers=s.acme)
    assert by_digest.json()["version"] == 1
    # Another tenant sees nothing of it.
    assert s.client.get(f"{POLICIES}/gate", headers=s.zeta).status_code == 404
    assert s.client.get(POLICIES, headers=s.zeta).json()["total"] == 0


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            "apiVersion: stella.policy/v1\nname: x\nversion: 1\nseverityThresholds: {fial: HIGH}\n",
            "severityThresholds.fial",
        ),
        ("apiVersion: stella.policy/v2\nname: x\nversion: 1\n", "apiVersion"),
        ("a: &a [1]\nb: &b [*a, *a]\nc: [*b, *b]\n", "anchors and aliases are not accepted"),
        ("{not json", "not a JSON policy document"),
        ("- just\n- a list\n", "must be a mapping"),
        # Over the policy limit (1 MiB) is over the request limit too: the HTTP edge answers
        # 413 before the body is parsed (the CLI's upload checks the policy limit itself).
        ("x: " + "y" * (1024 * 1024 + 10), "over the limit"),
    ],
)
def test_bad_policy_documents_are_refused_and_nothing_stored(
    scene: Scene, content: str, words: str
) -> None:
    before = _state(scene.services)
    r = scene.client.post(POLICIES, json={"name": "bad", "content": content}, headers=scene.acme)
    assert r.status_code == (413 if len(content) > 1024 * 1024 else 400), r.text
    assert words in r.json()["message"]
    assert _state(scene.services) == before
