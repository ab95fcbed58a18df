"""The closed registry of profile adapters: every :class:`ProfileKind` maps to its adapter.

The mapping is a ``match`` over the enum ending in :func:`typing.assert_never`, so adding a
profile kind without deciding its adapter fails type checking (mypy), not a run.
"""

from __future__ import annotations

from typing import assert_never

from export_center.adapters.devportal import DevportalAdapter
from export_center.adapters.interface import Adapter
from export_center.adapters.json_policy import JsonPolicyAdapter
from export_center.adapters.json_raw import JsonRawAdapter
from export_center.adapters.mirror import MirrorAdapter
from export_center.adapters.trivy_db import TrivyDbAdapter
from export_center.adapters.trivy_java_db import TrivyJavaDbAdapter
from export_center.planner.profiles import ProfileKind

__all__ = ["EXPORTABLE", "adapter_for"]

#: The kinds a run can export: every kind (the match below proves each has an adapter).
EXPORTABLE: frozenset[ProfileKind] = frozenset(ProfileKind)


def adapter_for(kind: ProfileKind) -> Adapter:
    """The adapter of a profile kind."""
    match kind:
        case ProfileKind.JSON_RAW:
            return JsonRawAdapter()
        case ProfileKind.JSON_POLICY:
            return JsonPolicyAdapter()
        case ProfileKind.MIRROR_FULL:
            return MirrorAdapter(delta=False)
        case ProfileKind.MIRROR_DELTA:
            return MirrorAdapter(delta=True)
        case ProfileKind.TRIVY_DB:
            return TrivyDbAdapter()
        case ProfileKind.TRIVY_JAVA_DB:
            return TrivyJavaDbAdapter()
        case ProfileKind.DEVPORTAL_OFFLINE:
            # The documented devportal bundle inside the shared bundle shape.
            return DevportalAdapter()
        case _:
            assert_never(kind)
