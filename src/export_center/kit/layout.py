"""Names and formats of an Offline Kit (docs/kit.md): the kit archive and its parts.

A kit is one uncompressed, deterministic tar (its bundles are compressed already)::

    README.txt  checksums.txt  kit.json  kit.json.dsse  verify-kit.sh
    bundles/<NNN>/<archive>  bundles/<NNN>/<archive>.sha256  bundles/<NNN>/<archive>.sig

split into parts of at most ``--part-size`` bytes of kit data each, one directory per part::

    <kitId>/part-<III>-of-<NNN>/
        <kitId>.tar.<III>   part.json  part.json.dsse  checksums.txt  verify-kit.sh  README.txt
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BUNDLES_DIR",
    "CHECKSUMS",
    "KIT_DSSE",
    "KIT_MANIFEST",
    "KIT_PAYLOAD_TYPE",
    "KIT_ROOT_FILES",
    "KIT_SCHEMA",
    "PART_DSSE",
    "PART_MANIFEST",
    "PART_PAYLOAD_TYPE",
    "PART_SCHEMA",
    "README",
    "VERIFY_SCRIPT",
    "bundle_dir",
    "chunk_name",
    "kit_archive_name",
    "part_dir_name",
]

KIT_SCHEMA: Final = "https://stellaops.io/export-center/offline-kit/v1"
PART_SCHEMA: Final = "https://stellaops.io/export-center/offline-kit-part/v1"
KIT_PAYLOAD_TYPE: Final = "application/vnd.stellaops.offline-kit+json"
PART_PAYLOAD_TYPE: Final = "application/vnd.stellaops.offline-kit-part+json"

KIT_MANIFEST: Final = "kit.json"
KIT_DSSE: Final = "kit.json.dsse"
PART_MANIFEST: Final = "part.json"
PART_DSSE: Final = "part.json.dsse"
CHECKSUMS: Final = "checksums.txt"
README: Final = "README.txt"
VERIFY_SCRIPT: Final = "verify-kit.sh"
BUNDLES_DIR: Final = "bundles"
#: The files at the root of a kit archive (besides bundles/).
KIT_ROOT_FILES: Final = frozenset({KIT_MANIFEST, KIT_DSSE, CHECKSUMS, README, VERIFY_SCRIPT})


def bundle_dir(order: int) -> str:
    """``bundles/001``: the directory of the kit's bundle number ``order``."""
    return f"{BUNDLES_DIR}/{order:03d}"


def kit_archive_name(kit_id: str) -> str:
    return f"{kit_id}.tar"


def chunk_name(kit_id: str, index: int) -> str:
    """``<kitId>.tar.001``: part ``index``'s slice of the kit archive (``cat`` joins them)."""
    return f"{kit_id}.tar.{index:03d}"


def part_dir_name(index: int, count: int) -> str:
    return f"part-{index:03d}-of-{count:03d}"
