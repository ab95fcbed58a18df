"""The closed adapter registry: every profile kind has an adapter, devportal:offline included."""

from __future__ import annotations

import pytest

from export_center.adapters.devportal import DevportalAdapter
from export_center.adapters.interface import SealingAdapter
from export_center.adapters.registry import EXPORTABLE, adapter_for
from export_center.planner.profiles import ProfileKind


@pytest.mark.parametrize("kind", sorted(ProfileKind))
def test_every_kind_has_an_adapter(kind: ProfileKind) -> None:
    assert kind in EXPORTABLE
    assert callable(adapter_for(kind).build)


def test_devportal_offline_signs_in_the_seal_phase() -> None:
    # Its manifest.dsse.json is signed by the run's key, which only seal() receives.
    adapter = adapter_for(ProfileKind.DEVPORTAL_OFFLINE)
    assert isinstance(adapter, DevportalAdapter)
    assert isinstance(adapter, SealingAdapter)
