"""One validated model per profile kind: what a run would refuse is refused when the revision is
written, with the field path (issue 15), and nothing in a profile names a server resource
(issue 13: files, modules, key prefixes)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from export_center.cli import main
from export_center.errors import BadInputError, ExitCode, RequestValidationFailed
from export_center.planner.plan import make_plan
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.store.repository import EvidenceStore
from support.mirror import snapshot

AGE_OK = "age1xr6umth9p8d7fmxwynh3y6v067l0vymtrc4n7u820xassh82z57qhgsmqp"
AGE_BAD_CHECKSUM = AGE_OK[:-1] + "q"
KEYID = "ab" * 32

RAW = {"kind": "json", "variant": "raw"}
POLICY = {"kind": "json", "variant": "policy"}
TRIVY = {"kind": "trivy", "variant": "db"}
JAVA = {"kind": "trivy", "variant": "java-db"}
FULL = {"kind": "mirror", "variant": "full"}
DELTA = {"kind": "mirror", "variant": "delta"}
PORTAL = {"kind": "devportal", "variant": "offline"}

# (body, field path, words of the message)
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    # typos, at every level
    ({**TRIVY, "options": {"validty": "P7D"}}, "options.validty", "did you mean 'validity'"),
    ({**DELTA, "options": {"bsae": {"latest": True}}}, "options.bsae", "did you mean 'base'"),
    ({**RAW, "selecters": {}}, "selecters", "did you mean 'selectors'"),
    ({**FULL, "options": {"tuf": {"expries": {}}}}, "options.tuf.expries", "unknown field"),
    ({**RAW, "compression": {"algoritm": "gzip"}}, "compression.algoritm", "unknown field"),
    # json:raw and json:policy take no options at all
    ({**RAW, "options": {"anything": 1}}, "options.anything", "unknown field"),
    ({**RAW, "options": {"blob": "x" * (2 << 20)}}, "options.blob", "unknown field"),
    ({**POLICY, "policy": {"policySnapshotMode": "none"}, "options": {"x": []}}, "options.x", ""),
    # durations, recipients, bases
    ({**TRIVY, "options": {"validity": "7 days"}}, "options.validity", "ISO 8601 duration"),
    ({**JAVA, "options": {"validity": 0}}, "options.validity", "more than zero"),
    ({**TRIVY, "options": {"validity": "P99999999999D"}}, "options.validity", "ten years"),
    (
        {**TRIVY, "options": {"dataSources": {"x": {"id": "Bad Id", "name": "n"}}}},
        "options.dataSources.x.id",
        "pattern",
    ),
    (
        {**JAVA, "options": {"dataSources": {"x": {"id": "x", "name": "n"}}}},
        "options.dataSources",
        "unknown field",
    ),
    (
        {**FULL, "options": {"encryption": {"recipients": [AGE_OK, AGE_BAD_CHECKSUM]}}},
        "options.encryption.recipients[1]",
        "not a valid age X25519 recipient",
    ),
    ({**FULL, "options": {"encryption": {}}}, "options.encryption", "at least one"),
    (
        {**FULL, "options": {"encryption": {"kms": ["file:///etc/key"]}}},
        "options.encryption.kms[0]",
        "not a KMS key id",
    ),
    ({**FULL, "options": {"tuf": {"expires": {"timestamp": 0}}}}, "options.tuf.expires", ""),
    ({**DELTA, "options": {}}, "options", "needs options.base"),
    ({**DELTA}, "options", "Field required"),
    ({**DELTA, "options": {"base": {}}}, "options.base", "exactly one of exportId or latest"),
    (
        {**DELTA, "options": {"base": {"exportId": "x-r1-s1-abc", "latest": True}}},
        "options.base",
        "exactly one",
    ),
    ({**DELTA, "options": {"base": {"exportId": "../../etc"}}}, "options.base", "not an export id"),
    ({**FULL, "options": {"base": {"latest": True}}}, "options.base", "unknown field"),
    ({**FULL, "options": {"resetBaseline": True}}, "options.resetBaseline", "unknown field"),
    # server resources named by a tenant
    (
        {**POLICY, "policy": {"document": "/etc/shadow", "policySnapshotMode": "required"}},
        "policy.document",
        "a server file is not a policy",
    ),
    (
        {**DELTA, "options": {"base": {"bundle": "/srv/exports/x.tar.zst"}}},
        "options.base.bundle",
        "export id of an earlier mirror export",
    ),
    (
        {**DELTA, "options": {"base": {"dir": "/srv/exports"}}},
        "options.base.dir",
        "export id of an earlier mirror export",
    ),
    (
        {**RAW, "signing": {"key": "pkcs11:token=t;object=k?module-path=/tmp/evil.so"}},
        "signing.key",
        "PKCS#11 URI is not a key reference",
    ),
    ({**RAW, "signing": {"key": "ab"}}, "signing.key", "full 64 hex digits"),
    ({**RAW, "signing": {"key": KEYID[:63]}}, "signing.key", "full 64 hex digits"),
    ({**RAW, "signing": {"key": "/srv/keys/a.pem"}}, "signing.key", "full 64 hex digits"),
    ({**PORTAL, "options": {"inputDir": "/etc"}}, "options.inputDir", "relative path"),
    ({**PORTAL, "options": {"inputDir": "a/../../b"}}, "options.inputDir", "without '..'"),
    ({**RAW, "distribution": "oci"}, "distribution", ""),
    # policies
    (dict(POLICY), "policy", "json:policy needs a policy"),
    ({**POLICY, "policy": {"policySnapshotMode": "optional"}}, "policy", "needs a policy name"),
    ({**POLICY, "policy": {"name": "gate", "policySnapshotMode": "none"}}, "policy", "is none"),
    ({**POLICY, "policy": {"digest": "sha256:" + "0" * 64}}, "policy", "digest goes with name"),
    ({**POLICY, "policy": {"name": "Bad Name"}}, "policy.name", "not a policy name"),
    ({**RAW, "policy": {"name": "gate"}}, "policy", "json:raw profiles take no policy"),
    ({**TRIVY, "policy": {"policySnapshotMode": "required"}}, "policy", "take no policy"),
    # fields that a kind would silently ignore
    ({**RAW, "include": ["findings"]}, "include", "json:policy profiles only"),
    ({**TRIVY, "include": ["vex"]}, "include", "choose their content themselves"),
    ({**RAW, "include": []}, "include", "at least one"),
    ({**RAW, "compression": {"algorithm": "gzip", "level": 12}}, "compression", "gzip (1-9)"),
    ({**RAW, "schedule": "every night"}, "schedule", "not a cron expression"),
    ({**RAW, "retention": {"days": 0}}, "retention.days", ""),
    # kind and variant
    ({"kind": "json", "variant": "db"}, "variant", "not one of policy, raw for kind json"),
    ({"kind": "zip", "variant": "raw"}, "kind", "not one of"),
    ({"variant": "raw"}, "kind", "missing"),
    ([], "(profile)", "must be an object"),
]


@pytest.mark.parametrize(
    ("body", "field", "words"), REFUSED, ids=[f"{i}-{r[1]}" for i, r in enumerate(REFUSED)]
)
def test_refused_with_the_field_path(body: Any, field: str, words: str) -> None:
    with pytest.raises(RequestValidationFailed) as err:
        parse_profile_spec(body)
    fields = [d["field"] for d in err.value.details]
    assert field in fields, err.value.details
    detail = next(d for d in err.value.details if d["field"] == field)
    assert words in detail["message"], detail
    # One line: what, where, why; never the 2 MB value itself.
    assert "\n" not in err.value.message and len(err.value.message) < 2000


@pytest.mark.parametrize(
    "body",
    [
        RAW,
        {**RAW, "signing": {"key": KEYID.upper()}},
        {**POLICY, "policy": {"name": "gate"}},
        {**POLICY, "policy": {"policySnapshotMode": "none"}},
        {
            **TRIVY,
            "options": {"validity": "PT36H", "dataSources": {"feed": {"id": "f", "name": "F"}}},
        },
        {**JAVA, "options": {"validity": 48}},
        {**FULL, "options": {"encryption": {"recipients": [AGE_OK]}, "includeWithdrawn": False}},
        {**FULL, "policy": {"name": "gate", "policySnapshotMode": "optional"}},
        {**DELTA, "options": {"base": {"latest": True}}},
        {**DELTA, "options": {"resetBaseline": True}},
        {**DELTA, "options": {"base": {"exportId": "nightly-r1-s5-0123456789abcdef"}}},
        {**PORTAL, "options": {"inputDir": "portal/tree", "metadata": {"product": "x"}}},
        {**RAW, "compression": {"algorithm": "gzip"}, "schedule": "0 2 * * *"},
    ],
)
def test_valid_bodies_of_every_kind(body: dict[str, Any]) -> None:
    spec = parse_profile_spec(body)
    # The stored form parses back to the same revision (it is what reruns read).
    again = parse_profile_spec(orjson.loads(spec.canonical()))
    assert again.digest() == spec.digest()
    assert spec.signing.key in (None, KEYID)  # keyids are normalized to lowercase


def test_defaults_are_explicit_in_the_revision() -> None:
    spec = orjson.loads(parse_profile_spec(TRIVY).canonical())
    assert spec["options"] == {"validity": "P7D", "dataSources": {}}
    assert spec["policy"] == {"name": None, "digest": None, "policySnapshotMode": "none"}
    named = orjson.loads(parse_profile_spec({**POLICY, "policy": {"name": "g"}}).canonical())
    assert named["policy"]["policySnapshotMode"] == "required"
    gzip = orjson.loads(
        parse_profile_spec({**RAW, "compression": {"algorithm": "gzip"}}).canonical()
    )
    assert gzip["compression"] == {"algorithm": "gzip", "level": 9}


# ---- the CLI: exit 4, the field path, nothing stored ---------------------------------------


def _stella(args: list[str], data: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("STELLA_DATA_DIR", str(data))
    monkeypatch.setenv("STELLA_CONFIG", "")
    monkeypatch.setattr(sys, "argv", ["stella", *args])
    return main.run_app(main.app)


@pytest.mark.parametrize(
    ("args", "body", "expected"),
    [
        (
            ["--kind", "trivy", "--variant", "db"],
            {"options": {"validty": "P7D"}},
            "options.validty",
        ),
        (["--kind", "mirror", "--variant", "delta"], {"options": {"bsae": {}}}, "options.bsae"),
        (["--kind", "json", "--variant", "policy"], {}, "policy: json:policy needs a policy"),
        (["--kind", "json", "--variant", "raw", "--key", "abcd"], {}, "signing.key"),
        (
            ["--kind", "json", "--variant", "policy", "--policy", "nope"],
            {},
            "policy.name: no policy",
        ),
        (["--kind", "json", "--variant", "raw", "--key", KEYID], {}, "signing.key: no key"),
    ],
)
def test_cli_create_refuses_with_exit_4_and_stores_nothing(
    args: list[str],
    body: dict[str, Any],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    store = EvidenceStore.open(f"sqlite:///{data / 'stella.db'}")
    before = snapshot(store)
    file = tmp_path / "body.json"
    file.write_bytes(orjson.dumps(body))
    code = _stella(
        ["export", "profile", "create", "p-one", "--file", str(file), *args], data, monkeypatch
    )
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_INPUT, err
    assert expected in err and "Traceback" not in err
    assert re.match(r"^error: ", err)
    assert snapshot(store) == before


# ---- revisions stored by earlier versions ------------------------------------------------------


def test_an_old_revision_naming_a_server_file_is_readable_and_cannot_run(tmp_path: Path) -> None:
    store = EvidenceStore.open(f"sqlite:///{tmp_path / 's.db'}")
    registry = ProfileRegistry(store)
    created = registry.create(
        "default",
        "old-policy",
        parse_profile_spec({**POLICY, "policy": {"policySnapshotMode": "none"}}),
    )
    # What an earlier version stored: the policy as a path on the server, a key prefix, a
    # mirror base as a directory.
    old = orjson.loads(created.spec.canonical())
    old["policy"] = {"document": "/etc/shadow", "policySnapshotMode": "required"}
    old["signing"] = {"key": "ab"}
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE profile_revisions SET spec = :s"), {"s": orjson.dumps(old).decode()}
        )
    view = registry.get("default", "old-policy")
    assert view.problem is not None
    assert "policy.document" in view.problem and "signing.key" in view.problem
    # The view shows no refused value; listing still works.
    assert view.spec.signing.key is None and view.spec.policy.name is None
    assert [p.name for p in registry.list("default")[0]] == ["old-policy"]
    # The API shows why (ProfilePublic.problem), next to what is left of the spec.
    from export_center.service.schemas import ProfilePublic

    public = ProfilePublic.of(view).model_dump(by_alias=True)
    assert public["problem"] == view.problem and "document" not in public["spec"]["policy"]
    with pytest.raises(BadInputError, match="old-policy r1 cannot run") as err:
        make_plan(store, view)
    assert "/etc/shadow" not in err.value.message  # no server path is echoed back
