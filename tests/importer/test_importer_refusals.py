"""Every refusal leaves the store untouched (every row of every table), quarantines the bundle with
its reason, and says why with the spec's exit code."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import zstandard

from export_center.bundle.writer import BundleResult
from export_center.importer import apply as apply_mod
from export_center.importer import generations
from export_center.importer.service import ImportRefused
from export_center.signing.keyfile import FileSigner
from support.mirror import (
    TENANT,
    Instance,
    advisory,
    age_identity,
    evidence,
    extract,
    new_signer,
    options,
    resign,
    retuf,
    snapshot,
)

FULL = {"kind": "mirror", "variant": "full"}


@dataclass
class Scene:
    a: Instance
    b: Instance
    signer: FileSigner
    full: BundleResult


@pytest.fixture
def scene(make_instance: Callable[..., Instance], signer: FileSigner) -> Scene:
    """A exports a full mirror; B has imported it (generation 1)."""
    a, b = make_instance("A"), make_instance("B")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(20)))
    full = a.export(a.profile("mirror-full", FULL), signer)
    b.import_(full.archive_path, options(signer))
    return Scene(a, b, signer, full)


def _delta(scene: Scene, base: BundleResult, name: str = "mirror-delta") -> BundleResult:
    body = {
        "kind": "mirror",
        "variant": "delta",
        "options": {"base": {"exportId": base.export_id}},
    }
    return scene.a.export(scene.a.profile(name, body), scene.signer)


def _refused(
    inst: Instance, bundle: str | Path, opts: object, code: int, match: str
) -> ImportRefused:
    before = snapshot(inst.store)
    quarantined = set((inst.data_dir / "quarantine").glob("*"))
    with pytest.raises(ImportRefused, match=match) as e:
        inst.import_(bundle, opts)  # type: ignore[arg-type]
    assert e.value.exit_code == code
    assert snapshot(inst.store) == before, "a refused bundle changed the store"
    new = set((inst.data_dir / "quarantine").glob("*")) - quarantined
    assert len(new) == 1 and e.value.quarantine in new
    reason = (e.value.quarantine / "reason.txt").read_text()
    assert "reason:" in reason and str(bundle) in reason
    return e.value


def test_delta_on_the_wrong_base(scene: Scene, make_instance: Callable[..., Instance]) -> None:
    scene.a.put("feed", advisory("NEW-1"))
    d1 = _delta(scene, scene.full)
    scene.a.put("feed", advisory("NEW-2"))
    d2 = _delta(scene, d1, "mirror-delta-2")
    err = _refused(
        scene.b, d2.archive_path, options(scene.signer), 6, "applies on .*but the installed"
    )
    assert d1.export_id in err.message
    _refused(make_instance("C"), d1.archive_path, options(scene.signer), 6, "nothing is installed")
    # In order, both apply.
    scene.b.import_(d1.archive_path, options(scene.signer))
    scene.b.import_(d2.archive_path, options(scene.signer))
    assert evidence(scene.b.store) == evidence(scene.a.store)


def test_replay_is_a_noop_and_an_older_generation_needs_force(scene: Scene) -> None:
    before = snapshot(scene.b.store)
    assert scene.b.import_(scene.full.archive_path, options(scene.signer)).status == "replay"
    assert snapshot(scene.b.store) == before
    scene.a.put("feed", advisory("ADV-1", version="2.0"), advisory("NEW-1"))
    newer = scene.a.export(scene.a.profile("mirror-full", FULL), scene.signer, scene.a.root / "o2")
    scene.b.import_(newer.archive_path, options(scene.signer))
    _refused(scene.b, scene.full.archive_path, options(scene.signer), 6, "older than the installed")
    with pytest.raises(Exception, match="--force needs --reason"):
        options(scene.signer, force=True)
    forced = scene.b.import_(
        scene.full.archive_path, options(scene.signer, force=True, reason="roll back bad feed")
    )
    g = forced.generation
    assert (g.generation, g.forced, g.reason) == (3, True, "roll back bad feed")
    assert [x.generation for x in generations.history(scene.b.store, TENANT)] == [1, 2, 3]


def test_modified_data_file(scene: Scene, tmp_path: Path) -> None:
    bundle = extract(scene.full.archive_path, tmp_path / "bundle")
    shard = bundle / "data/raw/advisories/feed.jsonl.zst"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01
    shard.write_bytes(bytes(data))
    _refused(scene.b, bundle, options(scene.signer), 2, "checksums: data/raw/advisories/feed")
    # Fixing checksums.txt does not help: the signed manifest still has the old digest.
    sums = bundle / "checksums.txt"
    old = hashlib.sha256(bytes(data)).hexdigest()
    lines = [
        f"{old}  {line.split('  ', 1)[1]}"
        if line.endswith("feed.jsonl.zst") and "raw" in line
        else line
        for line in sums.read_text().splitlines()
    ]
    sums.write_text("\n".join(lines) + "\n")
    _refused(scene.b, bundle, options(scene.signer), 2, "contents: .*does not match the signed")


def test_forged_signature(scene: Scene, tmp_path: Path) -> None:
    scene.a.put("feed", advisory("NEW-1"))
    d1 = _delta(scene, scene.full)
    bundle = extract(d1.archive_path, tmp_path / "bundle")
    # An attacker re-signs a modified manifest with a key the importer does not trust.
    resign(bundle, new_signer(), mutate=lambda m: m["delta"].update(resetBaseline=True))
    _refused(scene.b, bundle, options(scene.signer), 2, "manifest-signature")
    # Editing the signed manifest without re-signing is caught as well.
    bundle2 = extract(d1.archive_path, tmp_path / "bundle2")
    manifest = orjson.loads((bundle2 / "manifests/export.json").read_bytes())
    manifest["tenant"] = "other"
    (bundle2 / "manifests/export.json").write_bytes(orjson.dumps(manifest))
    _refused(scene.b, bundle2, options(scene.signer), 2, "checksums|manifest-signature")


def test_untrusted_tuf_root(
    scene: Scene, make_instance: Callable[..., Instance], tmp_path: Path
) -> None:
    # TUF metadata signed by a key that is not trusted (the manifest by a trusted one).
    bundle = extract(scene.full.archive_path, tmp_path / "bundle")
    retuf(bundle, new_signer())
    resign(bundle, scene.signer)
    fresh = make_instance("C")
    _refused(fresh, bundle, options(scene.signer), 2, "untrusted TUF root")
    # A root that does not chain from the installed one, although all keys are trusted PEM keys.
    other = new_signer()
    scene.a.put("feed", advisory("NEW-1"))
    rogue = scene.a.export(scene.a.profile("mirror-full", FULL), other, tmp_path / "rogue")
    _refused(scene.b, rogue.archive_path, options(scene.signer, other), 2, "not the trusted root")
    # Pinned out of band: --tuf-root wins over the bundle's own root.
    pinned = (extract(scene.full.archive_path, tmp_path / "orig") / "tuf/root.json").read_bytes()
    _refused(
        make_instance("D"),
        rogue.archive_path,
        options(scene.signer, other, tuf_root=pinned),
        2,
        "not the trusted root",
    )


def test_encrypted_bundle_without_the_key(scene: Scene) -> None:
    _, recipient = age_identity()
    scene.a.put("feed", advisory("NEW-1"))
    body = {
        "kind": "mirror",
        "variant": "full",
        "options": {"encryption": {"recipients": [recipient]}},
    }
    enc = scene.a.export(scene.a.profile("mirror-full", body), scene.signer, scene.a.root / "enc")
    _refused(scene.b, enc.archive_path, options(scene.signer), 4, "no key was given")


def _sidecar(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def _tar_zst(path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        build(tf)
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    _sidecar(path)
    return path


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_hostile_archives(scene: Scene, tmp_path: Path) -> None:
    opts = options(scene.signer)
    traversal = _tar_zst(
        tmp_path / "traversal.tar.zst",
        lambda tf: (_add(tf, "README.txt", b"hi"), _add(tf, "../../evil.txt", b"pwned")),
    )
    _refused(scene.b, traversal, opts, 2, r"safe-read: .*'\.\.' path component")
    assert not (tmp_path.parent / "evil.txt").exists()

    def links(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("data")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc"
        tf.addfile(info)
        hard = tarfile.TarInfo("checksums.txt")
        hard.type = tarfile.LNKTYPE
        hard.linkname = "/etc/passwd"
        tf.addfile(hard)

    _refused(scene.b, _tar_zst(tmp_path / "links.tar.zst", links), opts, 2, "safe-read: .*link")

    bomb = tmp_path / "bomb.tar.zst"
    size = 256 << 20
    with bomb.open("wb") as f:
        cctx = zstandard.ZstdCompressor(level=1)
        with cctx.stream_writer(f, closefd=False) as w:
            info = tarfile.TarInfo("data/raw/advisories/feed.jsonl.zst")
            info.size = size
            w.write(info.tobuf(format=tarfile.PAX_FORMAT))
            zeros = bytes(1 << 20)
            for _ in range(size >> 20):
                w.write(zeros)
            w.write(bytes(1024))
    _sidecar(bomb)
    assert bomb.stat().st_size < 1 << 20
    _refused(scene.b, bomb, opts, 2, "safe-read: .*compression bomb")


def test_a_failure_while_applying_rolls_everything_back(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene.a.put("feed", *(advisory(f"NEW-{i}") for i in range(5)))
    d1 = _delta(scene, scene.full)
    real_put = apply_mod._Applier.put
    calls = {"n": 0}

    def failing_put(self: apply_mod._Applier, rec: object, cur: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_put(self, rec, cur)  # type: ignore[arg-type]

    monkeypatch.setattr(apply_mod._Applier, "put", failing_put)
    before = snapshot(scene.b.store)
    with pytest.raises(OSError, match="No space left"):
        scene.b.import_(d1.archive_path, options(scene.signer))
    assert snapshot(scene.b.store) == before
    monkeypatch.undo()
    scene.b.import_(d1.archive_path, options(scene.signer))
    assert evidence(scene.b.store) == evidence(scene.a.store)


def test_wrong_tenant_and_missing_bundle(scene: Scene, tmp_path: Path) -> None:
    from export_center.errors import NotFoundError

    _refused(
        scene.b,
        scene.full.archive_path,
        options(scene.signer, tenant="someone-else"),
        2,  # a verification failure: the signed manifest names another tenant
        "the bundle is for tenant 'default', not 'someone-else'",
    )
    with pytest.raises(NotFoundError):
        scene.b.import_(tmp_path / "nope.tar.zst", options(scene.signer))
    shutil.rmtree(tmp_path / "nope", ignore_errors=True)
