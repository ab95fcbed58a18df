"""The run state machine (runs/states.py): every allowed transition, and refusals of the rest."""

from __future__ import annotations

import itertools

import pytest

from export_center.errors import ConflictError
from export_center.runs.states import (
    ACTIVE,
    STATUSES,
    TERMINAL,
    Transition,
    next_status,
    sources,
    target,
)

# docs/api.md, "Runs", written out by hand: (from, transition) -> to.
ALLOWED = {
    ("pending", Transition.STARTED): "running",
    ("running", Transition.STARTED): "running",  # takeover after a lapsed lease
    ("running", Transition.RETRYING): "pending",
    ("running", Transition.SUCCEEDED): "succeeded",
    ("running", Transition.FAILED): "failed",
    ("pending", Transition.CANCELLED): "cancelled",
    ("running", Transition.CANCELLED): "cancelled",
    ("succeeded", Transition.EXPIRED): "expired",
}


@pytest.mark.parametrize(("current", "transition"), sorted(ALLOWED))
def test_allowed_transitions(current: str, transition: Transition) -> None:
    assert next_status(current, transition, run_id="r1") == ALLOWED[current, transition]
    assert current in sources(transition)
    assert target(transition) == ALLOWED[current, transition]


@pytest.mark.parametrize(
    ("current", "transition"),
    [pair for pair in itertools.product(STATUSES, Transition) if pair not in ALLOWED],
)
def test_forbidden_transitions_are_conflicts(current: str, transition: Transition) -> None:
    with pytest.raises(ConflictError, match=f"^run r1 (already|is) {current}; only ") as err:
        next_status(current, transition, run_id="r1")
    assert err.value.code == "ERR_EXPORT_CONFLICT"
    assert current not in sources(transition)


def test_refusal_names_the_states_a_transition_leaves_from() -> None:
    # The REST API answers a cancel of a finished run with exactly this message.
    with pytest.raises(ConflictError) as err:
        next_status("succeeded", Transition.CANCELLED, run_id="abc")
    assert err.value.message == "run abc already succeeded; only pending or running runs cancel"
    with pytest.raises(ConflictError, match="run abc is pending; only running runs succeed"):
        next_status("pending", Transition.SUCCEEDED, run_id="abc")


def test_terminal_states_lead_nowhere_but_expiry() -> None:
    assert set(STATUSES) == TERMINAL | ACTIVE and not TERMINAL & ACTIVE
    for state in TERMINAL:
        leaving = {t for t in Transition if state in sources(t)}
        assert leaving == ({Transition.EXPIRED} if state == "succeeded" else set())
    # Every transition is also the type of the event it logs.
    assert {str(t) for t in Transition} <= {
        "started",
        "retrying",
        "succeeded",
        "failed",
        "cancelled",
        "expired",
    }
