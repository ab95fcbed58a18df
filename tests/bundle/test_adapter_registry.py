"""The closed adapter registry: every profile kind is decided, and devportal:offline is still
refused by runs (a later issue gives it a run adapter)."""

from __future__ import annotations

import pytest

from export_center.adapters.registry import EXPORTABLE, adapter_for
from export_center.errors import BadInputError
from export_center.exporter import run_export
from export_center.planner.profiles import ProfileKind, parse_profile_spec
from export_center.planner.registry import ProfileRegistry
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
    # A registry that knows what runs can export refuses the revision when it is written ...
    spec = parse_profile_spec(
        {"kind": "devportal", "variant": "offline", "options": {"inputDir": "portal"}}
    )
    registry = ProfileRegistry(env.store, exportable=EXPORTABLE)
    with pytest.raises(BadInputError, match="kind: profile devportal:offline cannot be exported"):
        registry.create("default", "portal", spec)
    # ... and a revision that exists anyway is refused by the run.
    prof = env.profile("portal", variant="offline", kind="devportal", options={"inputDir": "p"})
    with pytest.raises(BadInputError) as e:
        run_export(env.settings, env.store, prof, env.out)
    assert e.value.message == REFUSAL
    assert not list(env.out.glob("*.tar*"))
