"""Property (issue 15): a random profile document is either refused when it is written, with a
field path, or accepted and runnable: the run succeeds and the bundle verifies. Never accepted
and then failing at run."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export_center.adapters.registry import EXPORTABLE
from export_center.bundle.verify import verify_bundle
from export_center.errors import RequestValidationFailed
from export_center.exporter import ProfileReferences, run_export
from export_center.ingest.pipeline import ingest_paths
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.policy.repository import PolicyStore
from export_center.service.app import openapi_document
from export_center.settings import Settings, load_settings
from export_center.signing.interface import KeyType, PublicKey, load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore

pytestmark = pytest.mark.slow  # every accepted example is a real export

DEMO = Path(__file__).resolve().parents[2] / "demo" / "evidence"
POLICY = b'apiVersion: stella.policy/v1\nname: gate\nversion: "1"\n'
AGE = "age1xr6umth9p8d7fmxwynh3y6v067l0vymtrc4n7u820xassh82z57qhgsmqp"
# The top-level fields of a profile: a refusal names one of them (or the profile itself).
TOP = {
    "(profile)", "kind", "variant", "selectors", "include", "compression", "signing",
    "distribution", "retention", "schedule", "policy", "options",
}  # fmt: skip


@dataclass
class World:
    settings: Settings
    store: EvidenceStore
    registry: ProfileRegistry
    roots: dict[str, PublicKey]
    own_key: str
    other_key: str
    own_export: str
    other_export: str
    gate_digest: str
    out: Path
    names: Iterator[int]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("property")
    settings = load_settings(env={"STELLA_DATA_DIR": str(root / "data")})
    store = EvidenceStore.open(settings.database_url)
    for sub, source in (("advisories", "demo-osv"), ("vex", "demo-vex"), ("sboms", "demo-sbom")):
        for tenant in ("default", "other"):
            ingest_paths(store, [DEMO / sub], source=source, tenant=tenant, max_bytes=1 << 20)
    keys = KeyStore.from_settings(settings)
    own = keys.generate(KeyType.ED25519, tenants=["default"])
    other = keys.generate(KeyType.ED25519, tenants=["other"])
    gate, _ = PolicyStore(store).upload("default", "gate", POLICY)
    registry = ProfileRegistry(
        store, references=ProfileReferences(settings, store), exportable=EXPORTABLE
    )
    exports = {}
    for tenant in ("default", "other"):
        full = registry.create(
            tenant, "base-full", parse_profile_spec({"kind": "mirror", "variant": "full"})
        )
        exports[tenant] = run_export(settings, store, full, root / "base" / tenant).bundle
    return World(
        settings=settings,
        store=store,
        registry=registry,
        roots=load_trust_roots(keys.export_public(own.keyid)),
        own_key=own.keyid,
        other_key=other.keyid,
        own_export=exports["default"].export_id,
        other_export=exports["other"].export_id,
        gate_digest=gate.digest,
        out=root / "out",
        names=itertools.count(1),
    )


def _maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def documents(w: World) -> st.SearchStrategy[dict[str, Any]]:
    kinds = st.sampled_from(
        [
            ("json", "raw"),
            ("json", "policy"),
            ("trivy", "db"),
            ("trivy", "java-db"),
            ("mirror", "full"),
            ("mirror", "delta"),
            ("devportal", "offline"),
            ("json", "db"),
            ("zip", "raw"),
        ]
    )
    selectors = _maybe(
        sources=st.lists(st.sampled_from(["demo-osv", "demo-vex", "nope"]), max_size=2),
        ecosystems=st.lists(st.sampled_from(["pypi", "npm", "golang"]), max_size=2),
        tenants=st.sampled_from([[], ["default"], ["other"], ["default", "other"]]),
        modifiedSince=st.sampled_from(["2020-01-01T00:00:00Z", "2020-01-01T00:00:00", "yesterday"]),
        includeIds=st.lists(st.sampled_from(["DEMO-2026-0001", "CVE-2026-90001"]), max_size=2),
        sbomSubjects=st.lists(st.sampled_from(["pkg:pypi/demo-app"]), max_size=1),
        tennants=st.just(["default"]),
    )
    noisy_options = _maybe(
        validity=st.sampled_from(["P7D", "PT36H", 24, 0, "7 days", "P99999999999D"]),
        validty=st.just("P7D"),
        dataSources=st.sampled_from(
            [{"demo-osv": {"id": "demo", "name": "Demo"}}, {"demo-osv": {"id": "Bad Id"}}]
        ),
        includeWithdrawn=st.booleans(),
        tuf=st.sampled_from(
            [{"expires": {"timestamp": 3}}, {"expires": {"timestamp": 0}}, {"expries": {}}]
        ),
        encryption=st.sampled_from(
            [
                {"recipients": [AGE]},
                {"recipients": [AGE[:-1] + "q"]},
                {"kms": ["kms://pkcs11/ops/master"]},
                {},
            ]
        ),
        base=st.sampled_from(
            [
                {"exportId": w.own_export},
                {"exportId": w.other_export},
                {"latest": True},
                {"bundle": "/srv/exports/x.tar.zst"},
                {"dir": "/srv/exports"},
                {},
            ]
        ),
        resetBaseline=st.booleans(),
        inputDir=st.sampled_from(["portal", "/etc"]),
        bsae=st.just({"latest": True}),
    )
    # Options a kind takes (so that enough documents are accepted and run), and noise.
    mirror = _maybe(
        includeWithdrawn=st.booleans(),
        tuf=st.just({"expires": {"timestamp": 3, "root": 400}}),
        encryption=st.just({"recipients": [AGE]}),
    )
    good_options: dict[tuple[str, str], st.SearchStrategy[dict[str, Any]]] = {
        ("trivy", "db"): _maybe(validity=st.sampled_from(["P7D", "PT36H", 48])),
        ("trivy", "java-db"): _maybe(validity=st.sampled_from(["P1D", 12])),
        ("mirror", "full"): mirror,
        ("mirror", "delta"): st.builds(
            lambda base, rest: {**base, **rest},
            st.sampled_from(
                [
                    {"base": {"exportId": w.own_export}},
                    {"base": {"latest": True}},
                    {"resetBaseline": True},
                    {"base": {"latest": True}, "resetBaseline": True},
                ]
            ),
            mirror,
        ),
    }
    good_policy = {
        ("json", "policy"): st.sampled_from(
            [
                {"name": "gate"},
                {"policySnapshotMode": "none"},
                {"name": "gate", "digest": w.gate_digest},
            ]
        ),
        ("mirror", "full"): st.sampled_from(
            [{}, {"name": "gate", "policySnapshotMode": "optional"}]
        ),
    }

    def document(kv: tuple[str, str]) -> st.SearchStrategy[dict[str, Any]]:
        good = good_options.get(kv, st.just({}))
        options = st.one_of(good, good, st.just({}), noisy_options)
        policy = st.one_of(
            good_policy.get(kv, st.just({})),
            _maybe(
                name=st.sampled_from(["gate", "missing", "Bad Name"]),
                policySnapshotMode=st.sampled_from(["required", "optional", "none", "always"]),
                digest=st.sampled_from([w.gate_digest, "sha256:" + "0" * 64, "md5:x"]),
                document=st.just("/etc/passwd"),
            ),
        )
        return st.builds(
            lambda rest, opts, pol: {
                "kind": kv[0],
                "variant": kv[1],
                **rest,
                **({"options": opts} if opts else {}),
                **({"policy": pol} if pol else {}),
            },
            _maybe(
                selectors=selectors,
                include=st.lists(
                    st.sampled_from(["advisories", "vex", "sboms", "findings", "nope"]),
                    min_size=1,
                    max_size=3,
                ),
                compression=_maybe(
                    algorithm=st.sampled_from(["zstd", "gzip", "none", "xz"]),
                    level=st.integers(-1, 25),
                ),
                signing=_maybe(
                    key=st.sampled_from(
                        [
                            w.own_key,
                            w.own_key.upper(),
                            w.other_key,
                            w.own_key[:2],
                            "0" * 64,
                            "pkcs11:token=t;object=k?module-path=/tmp/x.so",
                            42,
                        ]
                    )
                ),
                distribution=st.sampled_from(["filesystem", "http", "oci"]),
                retention=_maybe(days=st.integers(-1, 400), count=st.integers(0, 3)),
                schedule=st.sampled_from(["0 2 * * *", "61 * * * *", "nightly"]),
            ),
            options,
            policy,
        )

    return kinds.flatmap(document)


def test_random_profiles_are_refused_with_a_path_or_run(world: World) -> None:
    accepted: list[str] = []

    @given(doc=documents(world))
    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def check(doc: dict[str, Any]) -> None:
        name = f"prop-{next(world.names)}"
        try:
            spec = parse_profile_spec(doc)
            profile = world.registry.create("default", name, spec)
        except RequestValidationFailed as e:
            assert e.details, e.message
            for detail in e.details:
                field = detail["field"]
                assert field.split(".")[0].split("[")[0] in TOP, (doc, detail)
                assert detail["message"], (doc, detail)
            assert "\n" not in e.message
            return
        outcome = run_export(
            world.settings, world.store, profile, world.out / name, openapi=openapi_document
        )
        report = verify_bundle(outcome.bundle.archive_path, world.roots, tenant="default")
        assert report.ok, (doc, report.as_json())
        accepted.append(profile.spec.profile_kind.value)

    check()
    # The property would hold vacuously if everything were refused: runs of several kinds did.
    assert len(set(accepted)) >= 6, accepted
