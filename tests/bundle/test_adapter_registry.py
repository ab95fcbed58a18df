"""The closed adapter registry: every profile kind is decided, and devportal:offline is still
refused by runs (a later issue gives it a run adapter)."""

from __future__ import annotations

import pytest

from export_center.adapters.registry import EXPORTABLE, adapter_for
from export_center.errors import BadInputError
from export_center.exporter import run_export
from export_center.planner.profiles import ProfileKind
from support.bundle import Env

REFUSAL = (
    "profile devportal:offline cannot be exported yet (supported: json:policy, json:raw, "
    "mirror:delta, mirror:full, trivy:db, trivy:java-db)"
)


@pytest.mark.parametrize("kind", sorted(EXPORTABLE))
def test_every_exportable_kind_has_an_adapter(kind: ProfileKind) -> None:
    assert callable(adapter_for(kind).build)


def test_devportal_offline_runs_are_refused(env: Env) -> None:
    assert ProfileKind.DEVPORTAL_OFFLINE not in EXPORTABLE
    with pytest.raises(BadInputError) as e:
        adapter_for(ProfileKind.DEVPORTAL_OFFLINE)
    assert e.value.message == REFUSAL
    prof = env.profile("portal", variant="offline", kind="devportal")
    with pytest.raises(BadInputError) as e:
        run_export(env.settings, env.store, prof, env.out)
    assert e.value.message == REFUSAL
    assert not list(env.out.glob("*.tar*"))
