"""json:policy — json:raw content plus the policy overlay (export-center.md §4).

``data/policy/snapshot.json``, ``data/policy/evaluations.jsonl.zst`` (one finding per line) and
``data/consensus/vex_consensus.jsonl.zst``, evaluated over exactly the evidence the plan pins.
The manifest's ``policy`` section names the document and its digest.
"""

from __future__ import annotations

from export_center.adapters.interface import ExportContext
from export_center.adapters.json_raw import JsonRawAdapter
from export_center.policy.bundle import write_policy_parts


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
            ctx.manifest_extra["policy"] = section
