"""The golden bundles: a fixed store, key and clock give exactly the committed bytes.

If this fails after an intended change of the bundle bytes (or a library upgrade you accept),
regenerate with ``.venv/bin/python tests/golden/golden_bundles.py``, read the diff this test
printed, and commit the new files with the reason in the message.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from golden import golden_bundles as golden
from support.tools import need_tool

pytestmark = pytest.mark.slow  # whole-corpus, many subprocesses or real tools


def _members(archive: bytes, name: str) -> dict[str, bytes]:
    raw = archive
    if name.endswith(".zst"):
        raw = (
            zstandard.ZstdDecompressor()
            .stream_reader(io.BytesIO(archive), read_across_frames=True)
            .read()
        )
    mode = "r:gz" if name.endswith(".gz") else "r:"
    with tarfile.open(fileobj=io.BytesIO(raw), mode=mode) as tf:
        return {
            m.name: (tf.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tf.getmembers()
        }


def _explain(expected: bytes, actual: bytes, name: str) -> str:
    if not name.endswith((".zst", ".gz")):
        return f"{name}: differs"
    old, new = _members(expected, name), _members(actual, name)
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    return (
        f"{name}: added {sorted(new.keys() - old.keys())}, removed "
        f"{sorted(old.keys() - new.keys())}, changed {changed}"
        + ("" if changed or old.keys() != new.keys() else " (only the compressed framing)")
    )


def test_golden_bundles_are_byte_identical(tmp_path: Path) -> None:
    need_tool("faketime")
    out = tmp_path / "out"
    written = golden.build(tmp_path / "work", out)
    expected = sorted(p.name for p in golden.EXPECTED.iterdir())
    assert written == expected, "a profile's archive name changed (export id or suffix)"
    problems = [
        _explain((golden.EXPECTED / n).read_bytes(), (out / n).read_bytes(), n)
        for n in written
        if (golden.EXPECTED / n).read_bytes() != (out / n).read_bytes()
    ]
    assert not problems, "bundle bytes changed:\n" + "\n".join(problems)


def test_golden_sidecars_check_with_sha256sum() -> None:
    """The committed files are what they claim: coreutils agrees with every .sha256 sidecar."""
    tool = need_tool("sha256sum", "coreutils")
    sidecars = sorted(golden.EXPECTED.glob("*.sha256"))
    assert len(sidecars) == len(golden.PROFILES)
    result = subprocess.run(
        [tool, "--strict", "-c", *[p.name for p in sidecars]],
        cwd=golden.EXPECTED,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == len(golden.PROFILES)


def test_committed_golden_bundles_still_verify(tmp_path: Path) -> None:
    """Bundles written by an earlier build keep verifying offline with today's verifier."""
    archives = sorted(p for p in golden.EXPECTED.iterdir() if p.name.endswith((".zst", ".gz")))
    assert len(archives) == len(golden.PROFILES)
    for archive in archives:
        result = subprocess.run(
            [
                golden._stella(),
                "export",
                "verify",
                str(archive),
                "--trust-roots",
                str(golden.HERE / "golden-test-key.pub.pem"),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "STELLA_DATA_DIR": str(tmp_path / "d")},
        )
        if archive.name.startswith("golden-mirror-r1"):
            # Its TUF timestamp (default expiry, pinned clock) ran out in 2025: verification
            # step 8 refuses it, and only that step (golden-mirror-longlived verifies whole).
            report = json.loads(result.stdout)
            failed = [c for c in report["checks"] if c["status"] != "pass"]
            assert result.returncode == 2, f"{archive.name}: {result.stdout}{result.stderr}"
            assert [c["name"] for c in failed] == ["tuf"] and "expired" in failed[0]["detail"]
            continue
        assert result.returncode == 0, f"{archive.name}: {result.stdout}{result.stderr}"
        assert '"ok": true' in result.stdout
