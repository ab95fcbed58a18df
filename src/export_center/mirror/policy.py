"""The seam between mirror bundles and the policy engine.

When a mirror profile names a policy (``policy.document`` with ``policySnapshotMode`` required
or optional), a mirror:full also carries ``data/policy/snapshot.json``,
``data/policy/evaluations.jsonl.zst`` and ``data/consensus/vex_consensus.jsonl.zst``. Those are
the policy engine's to produce (``export_center.policy``, written separately); this module only
finds the engine's writer and decides what happens when there is none:

- mode ``required``: the export is refused (a mirror that silently lacks its policy would let
  the disconnected side evaluate findings differently);
- mode ``optional``: the bundle is written without policy parts and says so in its manifest
  (``mirror.policy = {"included": false, "reason": ...}``);
- mode ``none`` or no document: nothing.

The engine plugs in by providing ``export_center.policy.mirror.write_mirror_policy`` with the
:class:`PolicyWriter` signature: it gets the plan, the store and a function that opens a bundle
file for writing, writes the parts, and returns the manifest's ``mirror.policy`` section.
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

_ENGINE_MODULE = "export_center.policy.mirror"
_ENGINE_FUNCTION = "write_mirror_policy"


class PolicyWriter(Protocol):
    def __call__(
        self, plan: ExportPlan, store: EvidenceStore, open_file: OpenFile
    ) -> dict[str, Any]: ...


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
    """Write the policy parts the profile asks for; the manifest's ``mirror.policy`` or None.

    Raises:
        BadInputError: the profile requires a policy snapshot and no policy engine is present.
    """
    ref = plan.spec.policy
    if ref.document is None or ref.policy_snapshot_mode == "none":
        return None
    engine = _engine()
    if engine is None:
        reason = f"no policy engine in this build ({_ENGINE_MODULE}.{_ENGINE_FUNCTION})"
        if ref.policy_snapshot_mode == "required":
            raise BadInputError(
                f"profile {plan.profile_name} requires a policy snapshot of {ref.document!r}: "
                f"{reason}",
                hint="set policy.policySnapshotMode to optional or none",
            )
        log.warning("mirror export %s without policy parts: %s", plan.export_id, reason)
        return {"document": ref.document, "included": False, "reason": reason}
    return engine(plan, store, open_file)
