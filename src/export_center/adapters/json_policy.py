"""json:policy — json:raw content plus the policy overlay (docs/policy.md); and the policy
parts writer that mirror profiles naming a policy share.

``data/policy/snapshot.json``, ``data/policy/evaluations.jsonl.zst`` (one finding per line) and
``data/consensus/vex_consensus.jsonl.zst``, evaluated by the policy engine
(:func:`export_center.policy.service.overlay_from_store`) over exactly the evidence the plan
pins. The manifest's ``policy`` section names the document and its digest.

``policy.name`` names one of the tenant's stored policies (:mod:`export_center.policy.repository`,
never a server file), and the revision pins its ``digest`` when it is written: a run evaluates
exactly that version, whatever was uploaded since. The digest is recorded in ``snapshot.json``
and in the manifest (``policy.document`` is the stored policy's name).

``policySnapshotMode`` (export-center.md §4; docs/profiles.md):
- ``required``: the parts are included; a pinned version that cannot be read fails the run;
- ``optional``: the same, except that an unreadable version exports without the parts and
  records why in the manifest (``policy.included = false`` with the reason);
- ``none``: no policy parts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

import zstandard

from export_center.adapters.interface import ExportContext
from export_center.adapters.json_raw import JsonRawAdapter
from export_center.bundle.manifest import PolicySection
from export_center.bundle.staging import StagedWriter
from export_center.errors import BadInputError, ConflictError, NotFoundError
from export_center.planner.plan import ExportPlan
from export_center.policy.document import Policy
from export_center.policy.repository import PolicyStore
from export_center.policy.service import overlay_from_store
from export_center.store.repository import EvidenceStore

__all__ = ["JsonPolicyAdapter", "OpenFile", "write_policy_parts"]

log = logging.getLogger(__name__)

OpenFile = Callable[[str, str], AbstractContextManager[StagedWriter]]
JSONL_ZST = "application/x-ndjson+zstd"


def _compress(data: bytes) -> bytes:
    # Fixed level, content size and checksum; threads=1 is zstd's multi-threaded mode (the
    # bundle's rule), whose bytes do not depend on the worker count.
    cctx = zstandard.ZstdCompressor(level=10, write_checksum=True, threads=1)
    return cctx.compress(data)


def _load(store: EvidenceStore, tenant: str, name: str, digest: str | None) -> Policy:
    if digest is None:
        # The registry pins the digest when it writes a revision; only a hand-made spec lacks it.
        raise BadInputError(f"policy {name!r} is named without a pinned digest")
    return PolicyStore(store).get(tenant, name, digest=digest).policy()


def write_policy_parts(
    plan: ExportPlan, store: EvidenceStore, open_file: OpenFile
) -> PolicySection | None:
    """Write snapshot.json, evaluations.jsonl.zst and vex_consensus.jsonl.zst; return the
    manifest's ``policy`` section (None when the profile asks for no policy).

    Raises:
        BadInputError, NotFoundError, ConflictError: mode ``required`` and the pinned version
            cannot be read (or no longer hashes to its digest).
    """
    ref = plan.spec.policy
    if ref.policy_snapshot_mode in (None, "none") or ref.name is None:
        return None
    try:
        policy = _load(store, plan.tenant, ref.name, ref.digest)
    except (BadInputError, NotFoundError, ConflictError) as e:
        if ref.policy_snapshot_mode == "required":
            raise
        log.warning("export %s without policy parts: %s", plan.export_id, e.message)
        return PolicySection(included=False, document=ref.name, reason=e.message)
    outputs = overlay_from_store(store, plan.tenant, plan.as_of_seq, policy)
    for path, data in outputs.files():
        if path.endswith(".jsonl"):
            path, data, content_type = path + ".zst", _compress(data), JSONL_ZST
        else:
            content_type = "application/json"
        with open_file(path, content_type) as w:
            w.write(data)
    return PolicySection(
        included=True,
        document=ref.name,
        digest=policy.digest,
        name=policy.document.name,
        version=policy.document.version,
        mode=ref.policy_snapshot_mode,
    )


class JsonPolicyAdapter:
    def build(self, ctx: ExportContext) -> None:
        JsonRawAdapter().build(ctx)
        ctx.check_cancelled()
        section = write_policy_parts(
            ctx.plan,
            ctx.store,
            lambda path, ctype: ctx.staging.open(path, ctype, count_records=False),
        )
        if section is not None:
            ctx.policy = section
