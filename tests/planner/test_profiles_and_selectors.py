"""Profiles are validated and immutable per revision; selectors choose what a plan exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_center.adapters.interface import ExportContext
from export_center.adapters.json_raw import JsonRawAdapter
from export_center.bundle.staging import Staging
from export_center.errors import BadInputError, ConflictError, NotFoundError
from export_center.ingest.pipeline import ingest_paths
from export_center.planner.plan import make_plan
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.store.repository import EvidenceStore


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> EvidenceStore:
    db = tmp_path_factory.mktemp("planner") / "s.db"
    store = EvidenceStore.open(f"sqlite:///{db}")
    for source, folder in [
        ("rustsec", corpora / "rustsec-advisory-db-osv" / "crates"),
        ("santa", corpora / "google-osv-scanner"),
        ("vexhub", corpora / "aquasecurity-vexhub" / "pkg" / "golang" / "github.com" / "rancher"),
    ]:
        ingest_paths(store, [folder], source=source, tenant="default", max_bytes=1 << 26)
    return store


def _export_counts(
    store: EvidenceStore, tmp_path: Path, name: str, **spec: object
) -> dict[str, int]:
    reg = ProfileRegistry(store)
    prof = reg.create(
        "default", name, parse_profile_spec({"kind": "json", "variant": "raw", **spec})
    )
    ctx = ExportContext(make_plan(store, prof), store, Staging(tmp_path / name))
    JsonRawAdapter().build(ctx)
    return ctx.counts


def test_revisions_are_immutable(store: EvidenceStore) -> None:
    reg = ProfileRegistry(store)
    r1 = reg.create("default", "rev-test", parse_profile_spec({"kind": "json", "variant": "raw"}))
    r2 = reg.revise(
        "default",
        "rev-test",
        parse_profile_spec({"kind": "json", "variant": "raw", "compression": {"level": 19}}),
    )
    assert (r1.revision, r2.revision) == (1, 2)
    assert reg.get("default", "rev-test", 1).spec.compression.level == 10
    assert reg.get("default", "rev-test").spec.compression.level == 19
    # The same body again does not make a new revision.
    again = reg.revise("default", "rev-test", r2.spec)
    assert again.revision == 2
    with pytest.raises(ConflictError, match="already exists"):
        reg.create("default", "rev-test", r1.spec)
    with pytest.raises(NotFoundError):
        reg.get("other-tenant", "rev-test")
    reg.archive("default", "rev-test")
    with pytest.raises(ConflictError, match="archived"):
        reg.revise("default", "rev-test", r1.spec)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "json", "variant": "db"}, "variant 'db' is not one of"),
        ({"kind": "json", "variant": "raw", "compression": {"level": 23}}, "compression.level"),
        ({"kind": "json", "variant": "raw", "bogus": 1}, "bogus"),
        (
            {
                "kind": "json",
                "variant": "raw",
                "selectors": {"modifiedSince": "2024-01-01T00:00:00"},
            },
            "time zone",
        ),
    ],
)
def test_invalid_profiles_are_refused_naming_the_field(
    body: dict[str, object], message: str
) -> None:
    with pytest.raises(BadInputError, match=message):
        parse_profile_spec(body)


def test_invalid_names_and_foreign_tenant_selectors(store: EvidenceStore) -> None:
    reg = ProfileRegistry(store)
    with pytest.raises(BadInputError, match="invalid profile name"):
        reg.create("default", "Bad_Name", parse_profile_spec({"kind": "json", "variant": "raw"}))
    # Another tenant in the selectors is refused when the revision is written, not at run.
    spec = parse_profile_spec({"kind": "json", "variant": "raw", "selectors": {"tenants": ["x"]}})
    with pytest.raises(BadInputError, match=r"selectors\.tenants: may only name") as err:
        reg.create("default", "cross-tenant", spec)
    assert err.value.details[0]["field"] == "selectors.tenants"  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError):
        reg.get("default", "cross-tenant")
    own = parse_profile_spec(
        {"kind": "json", "variant": "raw", "selectors": {"tenants": ["default"]}}
    )
    assert make_plan(store, reg.create("default", "own-tenant", own)).tenant == "default"


def test_selectors(store: EvidenceStore, tmp_path: Path) -> None:
    everything = _export_counts(store, tmp_path, "sel-all")
    assert everything["advisories"] == 1206 + 170
    assert everything["vex"] > 0
    only_rust = _export_counts(store, tmp_path, "sel-src", selectors={"sources": ["rustsec"]})
    assert only_rust == {"advisories": 1206, "vex": 0, "sboms": 0}
    npm = _export_counts(
        store, tmp_path, "sel-eco", selectors={"ecosystems": ["npm"]}, include=["advisories"]
    )
    assert npm == {"advisories": 170}
    one = _export_counts(
        store,
        tmp_path,
        "sel-ids",
        include=["advisories"],
        selectors={"includeIds": ["RUSTSEC-2016-0001", "CVE-2019-11358"]},
    )
    # RUSTSEC-2016-0001 by its id, and every GHSA whose alias is CVE-2019-11358 (jquery).
    assert one["advisories"] >= 2
    excluded = _export_counts(
        store,
        tmp_path,
        "sel-excl",
        include=["advisories"],
        selectors={"sources": ["rustsec"], "excludeIds": ["RUSTSEC-2016-0001"]},
    )
    assert excluded == {"advisories": 1205}
    recent = _export_counts(
        store,
        tmp_path,
        "sel-time",
        include=["advisories"],
        selectors={"sources": ["rustsec"], "modifiedSince": "2025-01-01T00:00:00Z"},
    )
    assert 0 < recent["advisories"] < 1206
    products = _export_counts(
        store, tmp_path, "sel-prod", include=["vex"], selectors={"products": ["pkg:nothing/"]}
    )
    assert products == {"vex": 0}
