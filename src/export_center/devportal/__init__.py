"""devportal:offline: the developer portal as a signed bundle a POSIX shell can verify offline.

Pipeline: :mod:`.inputs` (walk and hash the tree) → :mod:`.assets` (nothing loaded from the
network) and :mod:`.specs` (valid OpenAPI) → :mod:`.manifest` (RFC 8785) → DSSE → :mod:`.tarball`
(deterministic ``.tgz``); :mod:`.verify` checks a bundle against trust roots. The public
surface is what this module exports; the CLI is ``stella devportal build|verify``.
"""

from export_center.devportal.builder import (
    BuildOptions,
    BuildResult,
    build_bundle,
    source_date_epoch,
)
from export_center.devportal.errors import (
    AssetFinding,
    DevportalInputError,
    ExternalAssetError,
    InvalidSpecError,
)
from export_center.devportal.layout import BUNDLE_NAME
from export_center.devportal.manifest import PAYLOAD_TYPE, DevportalManifest
from export_center.devportal.profile import DevportalOptions, load_profile
from export_center.devportal.verify import CheckResult, VerifyReport, verify_bundle

__all__ = [
    "BUNDLE_NAME",
    "PAYLOAD_TYPE",
    "AssetFinding",
    "BuildOptions",
    "BuildResult",
    "CheckResult",
    "DevportalInputError",
    "DevportalManifest",
    "DevportalOptions",
    "ExternalAssetError",
    "InvalidSpecError",
    "VerifyReport",
    "build_bundle",
    "load_profile",
    "source_date_epoch",
    "verify_bundle",
]
