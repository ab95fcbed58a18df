"""The seam between mirror bundles and the policy engine.

When a mirror profile names a policy (``policy.document`` with ``policySnapshotMode`` required
or optional), the bundle also carries ``data/policy/snapshot.json``,
``data/policy/evaluations.jsonl.zst`` and ``data/consensus/vex_consensus.jsonl.zst``, evaluated
over exactly the evidence the plan pins. Those parts are the policy engine's to produce
(:func:`export_center.policy.bundle.write_policy_parts`, shared with json:policy, which also
applies ``policySnapshotMode``); this module only finds the engine and decides what happens in a
build without one:

- mode ``required``: the export is refused (a mirror that silently lacks its policy would let
  the disconnected side evaluate findings differently);
- mode ``optional``: the bundle is written without policy parts and says so in its manifest
  (``policy = {"included": false, "reason": ...}``);
- mode ``none`` or no document: nothing.

The parts are TUF targets like every file under ``data/``; the importer verifies them and keeps
the newest set next to the store (``<data dir>/airgap/tenants/<tenant>/policy/``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from export_center.adapters.interface import StagedWriter
from export_center.errors import BadInputError
from export_center.planner.plan import ExportPlan
from export_center.store.repository import EvidenceStore

log = logging.getLogger(__name__)

OpenFile = Callable[[str, str], AbstractContextManager[StagedWriter]]

POLICY_PREFIXES = ("data/policy/", "data/consensus/")
_ENGINE_MODULE = "export_center.policy.bundle"
_ENGINE_FUNCTION = "write_policy_parts"


class PolicyWriter(Protocol):
    def __call__(
        self, plan: ExportPlan, store: EvidenceStore, open_file: OpenFile
    ) -> dict[str, Any] | None: ...


def _engine() -> PolicyWriter | None:
    try:
        module = importlib.import_module(_ENGINE_MODULE)
    except ModuleNotFoundError as e:
        if e.name not in {_ENGINE_MODULE, "export_center.policy"}:
            raise
        return None
    writer: PolicyWriter | None = getattr(module, _ENGINE_FUNCTION, None)
    return writer


def write_policy_parts(
    plan: ExportPlan, store: EvidenceStore, open_file: OpenFile
) -> dict[str, Any] | None:
    """Write the policy parts the profile asks for; the manifest's ``policy`` section or None.

    Raises:
        BadInputError: the profile requires a policy snapshot and it cannot be produced.
    """
    ref = plan.spec.policy
    if ref.document is None and ref.policy_snapshot_mode == "none":
        return None
    engine = _engine()
    if engine is not None:
        return engine(plan, store, open_file)
    if ref.policy_snapshot_mode == "none":
        return None
    reason = f"no policy engine in this build ({_ENGINE_MODULE}.{_ENGINE_FUNCTION})"
    if ref.policy_snapshot_mode == "required":
        raise BadInputError(
            f"profile {plan.profile_name} requires a policy snapshot of {ref.document!r}: {reason}",
            hint="set policy.policySnapshotMode to optional or none",
        )
    log.warning("mirror export %s without policy parts: %s", plan.export_id, reason)
    return {"document": ref.document, "included": False, "reason": reason}
