"""devportal:offline as a run: the documented devportal bundle inside the shared bundle shape.

The run's export bundle verifies like every other; its one content file,
``portal/devportal-offline-bundle.tgz``, is byte for byte what ``stella devportal build``
writes for the same tree, carries the export API's own OpenAPI document, and verifies with
the devportal verifier. Runs never read a directory a profile names.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import orjson
import pytest

from export_center.adapters.devportal import PORTAL_BUNDLE
from export_center.bundle.verify import verify_bundle
from export_center.devportal import BuildOptions, build_bundle
from export_center.devportal import verify_bundle as verify_devportal
from export_center.devportal.service_spec import INDEX_PATH, SPEC_PATH
from export_center.errors import BadInputError, ConfigError
from export_center.exporter import run_export
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView
from export_center.runs.artifacts import read_bundle_files
from export_center.service.app import openapi_document
from export_center.settings import Settings, load_settings
from export_center.signing.interface import KeyType, PublicKey, load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.store.repository import EvidenceStore
from support.devportal import DEMO, copy_tree, unpack


class World:
    def __init__(self, tmp: Path, devportal_dir: Path | None = None) -> None:
        env = {"STELLA_DATA_DIR": str(tmp / "data")}
        if devportal_dir is not None:
            env["STELLA_DEVPORTAL_DIR"] = str(devportal_dir)
        self.settings: Settings = load_settings(env=env)
        self.store = EvidenceStore.open(self.settings.database_url)
        keys = KeyStore.from_settings(self.settings)
        info = keys.generate(KeyType.ED25519, tenants=["default"])
        self.pem = tmp / "trusted.pem"
        self.pem.write_bytes(keys.export_public(info.keyid))
        self.tmp = tmp

    def profile(self, name: str = "portal", **options: object) -> ProfileRevisionView:
        spec = parse_profile_spec(
            {"kind": "devportal", "variant": "offline", "compression": {"algorithm": "gzip"}}
            | ({"options": options} if options else {})
        )
        return ProfileRegistry(self.store).create("default", name, spec)


def _trust(world: World) -> dict[str, PublicKey]:
    return load_trust_roots(world.pem.read_bytes())


def _portal(archive: Path) -> bytes:
    return read_bundle_files(archive, [PORTAL_BUNDLE])[PORTAL_BUNDLE]


def test_run_packages_the_service_openapi_document(tmp_path: Path) -> None:
    world = World(tmp_path)
    outcome = run_export(
        world.settings, world.store, world.profile(), tmp_path / "out", openapi=openapi_document
    )
    archive = outcome.bundle.archive_path
    report = verify_bundle(archive, _trust(world))
    assert report.ok, report.checks
    manifest = report.manifest
    assert manifest is not None
    assert [c.path for c in manifest.contents] == ["README.txt", PORTAL_BUNDLE]
    assert manifest.profile.kind == "devportal"
    assert manifest.counts == {"devportal.portal": 1, "devportal.specs": 1}

    tgz = _portal(archive)
    files = unpack(tgz)
    # The service's own document, exactly; and a generated page that links to it.
    assert files[SPEC_PATH] == openapi_document()
    assert orjson.loads(files[SPEC_PATH])["info"]["title"] == "Stella Export Center API"
    page = files[INDEX_PATH].decode()
    assert "/api/export/runs/{run_id}/download" in page
    assert f'href="../{SPEC_PATH}"' in page
    inner = verify_devportal(io.BytesIO(tgz), _trust(world))
    meta = orjson.loads(files["manifest.json"])["metadata"]
    assert meta == {
        "exportId": outcome.plan.export_id,
        "tenant": "default",
        "profile": "portal",
        "revision": 1,
    }
    assert inner.bundle_id is not None
    # The provenance records which devportal bundle the run made.
    prov = read_bundle_files(archive, ["manifests/provenance.json"])["manifests/provenance.json"]
    params = orjson.loads(prov)["predicate"]["buildDefinition"]["externalParameters"]
    assert params["devportal"]["bundleId"] == inner.bundle_id
    assert params["devportal"]["rootHash"] == inner.root_hash


def test_rerun_gives_the_same_bytes_and_devportal_build_agrees(tmp_path: Path) -> None:
    tree = copy_tree(DEMO, tmp_path / "operator-tree")
    world = World(tmp_path, devportal_dir=tree)
    profile = world.profile(metadata={"product": "demo"})
    one = run_export(world.settings, world.store, profile, tmp_path / "a", openapi=openapi_document)
    two = run_export(world.settings, world.store, profile, tmp_path / "b", openapi=openapi_document)
    assert one.bundle.archive_path.read_bytes() == two.bundle.archive_path.read_bytes()

    tgz = _portal(one.bundle.archive_path)
    files = unpack(tgz)
    # The operator's tree has a portal: no page is generated, the spec is added beside theirs.
    assert INDEX_PATH not in files or files[INDEX_PATH] == (tree / INDEX_PATH).read_bytes()
    assert any(p.startswith("specs/") and p != SPEC_PATH for p in files)
    assert files[SPEC_PATH] == openapi_document()

    # `stella devportal build` over the same tree (plus the spec) writes the same archive.
    same = copy_tree(DEMO, tmp_path / "by-hand")
    (same / SPEC_PATH).write_bytes(openapi_document())
    signer = KeyStore.from_settings(world.settings).signer(None)
    built = build_bundle(
        same,
        tmp_path / "built",
        signer,
        BuildOptions(
            generated_at=one.plan.as_of_time,
            metadata={
                "exportId": one.plan.export_id,
                "tenant": "default",
                "profile": "portal",
                "revision": 1,
                "product": "demo",
            },
        ),
    )
    assert built.path.read_bytes() == tgz


def test_runs_never_read_a_directory_the_profile_names(tmp_path: Path) -> None:
    world = World(tmp_path)
    # Written without the registry's reference checks (which refuse it, tests/service), as a
    # revision stored by an older version would be: the run still refuses it.
    profile = world.profile(inputDir="demo/devportal")
    with pytest.raises(BadInputError, match=r"options\.inputDir names a directory"):
        run_export(world.settings, world.store, profile, tmp_path / "out", openapi=openapi_document)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_nothing_to_bundle_and_no_openapi_maker_are_refused(tmp_path: Path) -> None:
    world = World(tmp_path)
    no_spec = world.profile("portal-nospec", serviceSpec=False)
    with pytest.raises(ConfigError, match="nothing to bundle"):
        run_export(world.settings, world.store, no_spec, tmp_path / "out")
    with pytest.raises(ConfigError, match="cannot make the service's OpenAPI document"):
        run_export(world.settings, world.store, world.profile(), tmp_path / "out")
    out = tmp_path / "out"
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


def test_a_clash_with_the_operator_tree_names_the_file(tmp_path: Path) -> None:
    tree = copy_tree(DEMO, tmp_path / "operator-tree")
    shutil.copy(tree / "specs" / next(p.name for p in (tree / "specs").iterdir()), tree / SPEC_PATH)
    world = World(tmp_path, devportal_dir=tree)
    with pytest.raises(BadInputError, match=f"{SPEC_PATH}: the input tree has this file"):
        run_export(
            world.settings, world.store, world.profile(), tmp_path / "out", openapi=openapi_document
        )
