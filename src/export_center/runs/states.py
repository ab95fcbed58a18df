"""The run state machine of docs/api.md, "Runs", as a pure transition table.

States: ``pending`` → ``running`` → ``succeeded`` | ``failed`` | ``cancelled``; a ``succeeded``
run becomes ``expired`` when retention removes its artifact. A transition is named after the
event it appends to the run's log (``started``, ``retrying``, ...), so a run's log lists the
transitions it went through.

The table says which states a transition leaves from and where it leads; the repository turns
that into conditional UPDATEs (``WHERE status IN sources``), so that of two concurrent writers
only one moves the run, and asks :func:`next_status` why a refused request was refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

from export_center.errors import ConflictError

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled", "expired"]
STATUSES: Final[tuple[RunStatus, ...]] = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
)
TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled", "expired"})
#: Runs that hold a place in the queue (and count against the concurrent-runs quota).
ACTIVE: Final = frozenset({"pending", "running"})


class Transition(StrEnum):
    """A change of state, by the name of the event it logs."""

    # A worker claims a due pending run, or takes over a running one whose lease lapsed.
    STARTED = "started"
    # A transient failure (back-off) or a worker handing the run back: due again later.
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # A pending run at once; a running one through its worker (or recovery) after the request.
    CANCELLED = "cancelled"
    # Retention removed the artifact.
    EXPIRED = "expired"


_TABLE: Final[Mapping[Transition, tuple[frozenset[RunStatus], RunStatus]]] = MappingProxyType(
    {
        Transition.STARTED: (frozenset({"pending", "running"}), "running"),
        Transition.RETRYING: (frozenset({"running"}), "pending"),
        Transition.SUCCEEDED: (frozenset({"running"}), "succeeded"),
        Transition.FAILED: (frozenset({"running"}), "failed"),
        Transition.CANCELLED: (frozenset({"pending", "running"}), "cancelled"),
        Transition.EXPIRED: (frozenset({"succeeded"}), "expired"),
    }
)
_VERBS: Final[Mapping[Transition, str]] = MappingProxyType(
    {
        Transition.STARTED: "start",
        Transition.RETRYING: "retry",
        Transition.SUCCEEDED: "succeed",
        Transition.FAILED: "fail",
        Transition.CANCELLED: "cancel",
        Transition.EXPIRED: "expire",
    }
)

#: Event types of the run log. ``queued`` (creation), ``progress`` and ``artifact_ready``
#: (which precedes ``succeeded``) are not transitions; the others are.
EVENT_TYPES: Final = (
    "queued",
    "started",
    "progress",
    "retrying",
    "artifact_ready",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
)
#: Events after which a run's log only ever grows by ``expired``: event streams end there.
FINAL_EVENTS: Final = frozenset({"succeeded", "failed", "cancelled", "expired"})


def sources(transition: Transition) -> frozenset[RunStatus]:
    """The states ``transition`` may leave from."""
    return _TABLE[transition][0]


def target(transition: Transition) -> RunStatus:
    """The state ``transition`` leads to."""
    return _TABLE[transition][1]


def next_status(current: str, transition: Transition, *, run_id: str) -> RunStatus:
    """The state a run in ``current`` reaches by ``transition``.

    Raises:
        ConflictError: ``transition`` is not allowed from ``current`` (the message names the
            states it is allowed from).
    """
    allowed, to = _TABLE[transition]
    if current in allowed:
        return to
    where = " or ".join(s for s in STATUSES if s in allowed)
    state = f"already {current}" if current in TERMINAL else f"is {current}"
    raise ConflictError(f"run {run_id} {state}; only {where} runs {_VERBS[transition]}")
