"""Offline Kits: several verified bundles carried across an air gap at once, in import order,
as media-sized parts that each verify on their own (docs/kit.md).

Pipeline: :func:`inspect` (verify and describe each bundle) → :func:`build_kit` (order, sign
``kit.json``, write the deterministic kit archive, cut it into signed parts); on the other
side :func:`verify_part` for each medium as it arrives, :func:`open_kit` for the whole kit and
:func:`import_kit` to apply it. The CLI is ``stella kit build|verify|import``.
"""

from export_center.kit.apply import (
    BundleOutcome,
    KitImportError,
    KitImportReport,
    import_kit,
    open_kit,
)
from export_center.kit.build import MIN_PART_SIZE, BuiltKit, KitSource, build_kit, inspect
from export_center.kit.verify import VerifiedKit, VerifiedPart, check_parts, verify_part

__all__ = [
    "MIN_PART_SIZE",
    "BuiltKit",
    "BundleOutcome",
    "KitImportError",
    "KitImportReport",
    "KitSource",
    "VerifiedKit",
    "VerifiedPart",
    "build_kit",
    "check_parts",
    "import_kit",
    "inspect",
    "open_kit",
    "verify_part",
]
