"""json:policy — json:raw content plus the policy overlay (docs/policy.md); and the policy
parts writer that mirror profiles naming a policy share.

``data/policy/snapshot.json``, ``data/policy/evaluations.jsonl.zst`` (one finding per line) and
``data/consensus/vex_consensus.jsonl.zst``, evaluated by the policy engine
(:func:`export_center.policy.service.overlay_from_store`) over exactly the evidence the plan
pins. The manifest's ``policy`` section names the document and its digest.

``policySnapshotMode``:
- ``required``: the profile must name a readable, valid policy document, else the run fails;
- ``optional``: include the parts when the document loads; otherwise export without them and
  record why in the manifest (``policy.included = false`` with the reason);
- ``none``: no policy parts, whatever the document says.

``policy.document`` is a path to the policy file (YAML or JSON), read when the run starts. Its
digest is recorded in ``snapshot.json`` and in the manifest, so a changed file is visible as a
different digest (and a different ``rerunHash``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import zstandard

from export_center.adapters.interface import ExportContext
from export_center.adapters.json_raw import JsonRawAdapter
from export_center.bundle.manifest import PolicySection
from export_center.bundle.staging import StagedWriter
from export_center.errors import BadInputError
from export_center.planner.plan import ExportPlan
from export_center.policy.document import Policy, load_policy
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


def _load(document: str) -> Policy:
    path = Path(document)
    try:
        content = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"policy document {document}: cannot read: {e.strerror}") from e
    return load_policy(content, str(path))


def write_policy_parts(
    plan: ExportPlan, store: EvidenceStore, open_file: OpenFile
) -> PolicySection | None:
    """Write snapshot.json, evaluations.jsonl.zst and vex_consensus.jsonl.zst; return the
    manifest's ``policy`` section (None when the profile asks for no policy).

    Raises:
        BadInputError: mode ``required`` and the document is missing, unreadable or invalid.
    """
    ref = plan.spec.policy
    if ref.policy_snapshot_mode == "none":
        return None
    if ref.document is None:
        if ref.policy_snapshot_mode == "required":
            raise BadInputError(
                f"profile {plan.profile_name}: policySnapshotMode is required but no "
                "policy.document is named"
            )
        return PolicySection(included=False, reason="no policy document named")
    try:
        policy = _load(ref.document)
    except BadInputError as e:
        if ref.policy_snapshot_mode == "required":
            raise
        log.warning("export %s without policy parts: %s", plan.export_id, e.message)
        return PolicySection(included=False, document=ref.document, reason=e.message)
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
        document=ref.document,
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
