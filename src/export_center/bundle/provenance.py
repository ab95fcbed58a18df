"""``manifests/provenance.json``: an in-toto Statement v1 with a SLSA provenance v1 predicate.

Pure: the same plan, subjects and dependencies give the same RFC 8785 bytes (no wall-clock
fields)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

from export_center import TOOL_NAME, __version__
from export_center.planner.plan import ExportPlan

PROVENANCE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://stellaops.io/export-center/build/v1"
BUILDER_ID = f"https://stellaops.io/export-center/{TOOL_NAME}@{__version__}"


def build_provenance(
    plan: ExportPlan,
    subjects: Sequence[tuple[str, str]],
    dependencies: Mapping[str, str],
    extra_parameters: Mapping[str, Any] | None = None,
) -> bytes:
    """An in-toto Statement v1 with a SLSA provenance v1 predicate, RFC 8785 bytes.

    ``subjects`` are (path, sha256 hex); ``dependencies`` map ``<type>/<source>`` to the sha256
    of the input set that source contributed. No wall-clock fields (determinism).
    """
    statement: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": digest}}
            for name, digest in sorted(subjects, key=lambda s: s[0].encode())
        ],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "profile": {
                        "name": plan.profile_name,
                        "revision": plan.revision,
                        "kind": plan.spec.kind,
                        "variant": plan.spec.variant,
                        "digest": plan.spec.digest(),
                    },
                    "selectors": plan.selectors.model_dump(mode="json", by_alias=True),
                    **dict(extra_parameters or {}),
                },
                "internalParameters": {
                    "tenant": plan.tenant,
                    "asOf": {"sequence": plan.as_of_seq, "time": plan.as_of_rfc3339()},
                },
                "resolvedDependencies": [
                    {
                        "uri": f"stella://{plan.tenant}/evidence/{key}",
                        "name": key,
                        "digest": {"sha256": digest},
                    }
                    for key, digest in sorted(dependencies.items())
                ],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {TOOL_NAME: __version__}},
                "metadata": {"invocationId": plan.export_id},
            },
        },
    }
    return rfc8785.dumps(statement)
