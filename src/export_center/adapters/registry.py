"""The closed registry of profile adapters (ProfileKind -> factory)."""

from __future__ import annotations

from collections.abc import Callable

from export_center.adapters.interface import Adapter
from export_center.errors import BadInputError
from export_center.planner.profiles import ProfileKind


def _json_raw() -> Adapter:
    from export_center.adapters.json_raw import JsonRawAdapter

    return JsonRawAdapter()


def _json_policy() -> Adapter:
    from export_center.adapters.json_policy import JsonPolicyAdapter

    return JsonPolicyAdapter()


def _mirror_full() -> Adapter:
    from export_center.mirror.adapter import MirrorAdapter

    return MirrorAdapter(delta=False)


def _mirror_delta() -> Adapter:
    from export_center.mirror.adapter import MirrorAdapter

    return MirrorAdapter(delta=True)


def _trivy_db() -> Adapter:
    from export_center.adapters.trivy_db import TrivyDbAdapter

    return TrivyDbAdapter()


def _trivy_java_db() -> Adapter:
    from export_center.adapters.trivy_java_db import TrivyJavaDbAdapter

    return TrivyJavaDbAdapter()


_FACTORIES: dict[ProfileKind, Callable[[], Adapter]] = {
    ProfileKind.JSON_RAW: _json_raw,
    ProfileKind.JSON_POLICY: _json_policy,
    ProfileKind.MIRROR_FULL: _mirror_full,
    ProfileKind.MIRROR_DELTA: _mirror_delta,
    ProfileKind.TRIVY_DB: _trivy_db,
    ProfileKind.TRIVY_JAVA_DB: _trivy_java_db,
}


def adapter_for(kind: ProfileKind) -> Adapter:
    """The adapter of a profile kind.

    Raises:
        BadInputError: this build has no adapter for the kind yet.
    """
    factory = _FACTORIES.get(kind)
    if factory is None:
        supported = ", ".join(sorted(k.value for k in _FACTORIES))
        raise BadInputError(f"profile {kind.value} cannot be exported yet (supported: {supported})")
    return factory()
