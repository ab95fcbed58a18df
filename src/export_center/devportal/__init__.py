"""devportal:offline: the developer portal as a signed bundle a POSIX shell can verify offline.

Pipeline: :mod:`.inputs` (walk and hash the tree) → :mod:`.assets` (nothing loaded from the
network) and :mod:`.specs` (valid OpenAPI) → :mod:`.manifest` (RFC 8785) → DSSE → the archive
writer (deterministic ``.tgz``); :mod:`.verify` checks a bundle against trust roots, reading it
with the archive reader. The public surface is what this module exports; the CLI is
``stella devportal build|verify``.
"""

from export_center.devportal.builder import BuildOptions, BuildResult, build_bundle
from export_center.devportal.errors import (
    AssetFinding,
    DevportalInputError,
    ExternalAssetError,
    InvalidSpecError,
)
from export_center.devportal.layout import BUNDLE_NAME
from export_center.devportal.manifest import PAYLOAD_TYPE, DevportalManifest
from export_center.devportal.profile import DevportalOptions, load_profile
from export_center.devportal.verify import verify_bundle

__all__ = [
    "BUNDLE_NAME",
    "PAYLOAD_TYPE",
    "AssetFinding",
    "BuildOptions",
    "BuildResult",
    "DevportalInputError",
    "DevportalManifest",
    "DevportalOptions",
    "ExternalAssetError",
    "InvalidSpecError",
    "build_bundle",
    "load_profile",
    "verify_bundle",
]
