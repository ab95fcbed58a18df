"""File names at the root of a devportal:offline bundle (docs/devportal.md, "The bundle")."""

from __future__ import annotations

__all__ = [
    "BUNDLE_NAME",
    "CHECKSUMS",
    "INSTRUCTIONS_NAME",
    "MANIFEST",
    "MANIFEST_DSSE",
    "ROOT_FILES",
    "VERIFY_SCRIPT_NAME",
]

BUNDLE_NAME = "devportal-offline-bundle.tgz"
MANIFEST = "manifest.json"
MANIFEST_DSSE = "manifest.dsse.json"
CHECKSUMS = "checksums.txt"
INSTRUCTIONS_NAME = "instructions-portable.txt"
VERIFY_SCRIPT_NAME = "verify-offline.sh"
#: The files at the bundle root besides the content directories.
ROOT_FILES = frozenset({MANIFEST, MANIFEST_DSSE, CHECKSUMS, INSTRUCTIONS_NAME, VERIFY_SCRIPT_NAME})
