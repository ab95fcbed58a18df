"""The kit's formats on their own: part sizes, the signed part manifest (canonical, strict, a
table that tiles the kit), the rules that make parts one kit, and the script's portability."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import rfc8785

from export_center.cli.kit import parse_size
from export_center.errors import BadInputError, VerificationError
from export_center.kit.manifest import (
    FileRef,
    PartManifest,
    PartRef,
    canonical,
    parse_part_manifest,
    this_tool,
)
from export_center.kit.texts import VERIFY_KIT_SCRIPT
from export_center.kit.verify import VerifiedPart, check_parts, missing_parts
from support.tools import need_tool

KIT_A = "kit-" + "a" * 32
KIT_B = "kit-" + "b" * 32
H = "0" * 64


def _part(kit: str, index: int, count: int = 3, size: int = 10) -> PartManifest:
    parts = tuple(
        PartRef(index=i, offset=(i - 1) * size, path=f"{kit}.tar.{i:03d}", sha256=H, size=size)
        for i in range(1, count + 1)
    )
    return PartManifest(
        schema_="https://stellaops.io/export-center/offline-kit-part/v1",
        kit_id=kit,
        kit_manifest="sha256:" + H,
        index=index,
        count=count,
        kit=FileRef(path=f"{kit}.tar", sha256=H, size=size * count),
        parts=parts,
        tool=this_tool(),
    )


def _verified(label: str, manifest: PartManifest) -> VerifiedPart:
    return VerifiedPart(Path(label), label, manifest, Path(label) / manifest.this.path, ())


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("650M", 650 << 20), ("4G", 4 << 30), ("700MiB", 700 << 20), ("8k", 8192)],
)
def test_part_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1.5G", "-3", "4X"])
def test_bad_part_sizes(text: str) -> None:
    with pytest.raises(BadInputError, match="expected bytes"):
        parse_size(text)


def test_part_manifest_round_trip_and_refusals() -> None:
    body = canonical(_part(KIT_A, 2))
    assert parse_part_manifest(body).this.path == f"{KIT_A}.tar.002"
    doc = json.loads(body)
    with pytest.raises(VerificationError, match="not RFC 8785 canonical"):
        parse_part_manifest(json.dumps(doc, indent=1).encode())
    with pytest.raises(VerificationError, match="Extra inputs are not permitted"):
        parse_part_manifest(rfc8785.dumps(doc | {"note": "x"}))
    gap = doc | {"parts": [doc["parts"][0], doc["parts"][2]], "count": 2}
    with pytest.raises(VerificationError, match="out of order"):
        parse_part_manifest(rfc8785.dumps(gap))
    short = doc | {"kit": doc["kit"] | {"size": 29}}
    with pytest.raises(VerificationError, match="do not add up"):
        parse_part_manifest(rfc8785.dumps(short))
    odd = doc | {"path": "x"}
    with pytest.raises(VerificationError):
        parse_part_manifest(rfc8785.dumps(odd))


def test_parts_must_form_one_kit() -> None:
    ours = [_verified(f"part-{i}", _part(KIT_A, i)) for i in (3, 1)]
    assert [p.manifest.index for p in check_parts(ours)] == [1, 3]
    assert missing_parts(check_parts(ours)) == [2]
    stranger = _verified("part-2", _part(KIT_B, 2))
    with pytest.raises(
        VerificationError, match=f"part-2: belongs to kit {KIT_B}, not to kit {KIT_A}"
    ):
        check_parts([*ours, stranger])
    # --kit-id decides even against a majority.
    with pytest.raises(
        VerificationError, match=f"part-3: belongs to kit {KIT_A}, not to kit {KIT_B}"
    ):
        check_parts([*ours, stranger], expect_kit=KIT_B)
    twice = _verified("copy-of-1", _part(KIT_A, 1))
    with pytest.raises(VerificationError, match=r"copy-of-1: part 1 given twice \(also part-1\)"):
        check_parts([*ours, twice])
    other_table = _verified("part-2", _part(KIT_A, 2, size=11))
    with pytest.raises(VerificationError, match="part-2: its table of parts differs"):
        check_parts([*ours, other_table])


def test_verify_kit_sh_is_posix(tmp_path: Path) -> None:
    checkbashisms = need_tool("checkbashisms", "devscripts")
    script = tmp_path / "verify-kit.sh"
    script.write_bytes(VERIFY_KIT_SCRIPT)
    done = subprocess.run(
        [checkbashisms, "--posix", "--extra", str(script)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
