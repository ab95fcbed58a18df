"""Mirror profile options: the ``options`` of a mirror:full / mirror:delta profile.

The models live with the other profile kinds' in :mod:`export_center.planner.options`, so a
revision is validated completely when it is written (unknown keys refused, age recipients
parsed, a delta's base named); they are re-exported here for the mirror modules.

Example (YAML)::

    options:
      base: {exportId: nightly-full-r1-s1200-0f3a...}   # mirror:delta only (or latest: true)
      resetBaseline: false
      includeWithdrawn: true
      tuf: {expires: {timestamp: 14, snapshot: 30, targets: 90, root: 365}}
      encryption:
        recipients: [age1...]
        kms: [kms://pkcs11/stella/mirror-kek]      # assigned to the tenant by the operator
"""

from __future__ import annotations

from export_center.planner.options import (
    DEFAULT_EXPIRES_DAYS,
    TUF_ROLES,
    BaseRef,
    EncryptionOptions,
    MirrorDeltaOptions,
    MirrorFullOptions,
    MirrorOptions,
    TufOptions,
    TufRole,
)

__all__ = [
    "DEFAULT_EXPIRES_DAYS",
    "TUF_ROLES",
    "BaseRef",
    "EncryptionOptions",
    "MirrorDeltaOptions",
    "MirrorFullOptions",
    "MirrorOptions",
    "TufOptions",
    "TufRole",
]
