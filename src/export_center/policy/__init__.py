"""The policy overlay: findings (SBOM × advisories), VEX consensus, and a policy's verdicts.

Data flow: :mod:`.matching` (components × advisories, per-ecosystem versions) → :mod:`.consensus`
(VEX statements about each finding) → :mod:`.evaluate` (policy decisions, canonical output) ←
:mod:`.document` (the validated policy). :mod:`.service` is the only module that reads the
evidence store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from export_center.policy.consensus import Consensus, ProviderTrust
    from export_center.policy.document import Policy, PolicyDocument, default_policy, load_policy
    from export_center.policy.evaluate import (
        AsOf,
        Evaluation,
        Finding,
        PolicyOutputs,
        evaluate,
        render,
    )
    from export_center.policy.matching import AdvisoryIndex, Match, Skip, match_component
    from export_center.policy.service import evaluate_store, overlay_from_store, parse_sbom_file

# The names below are loaded on first use (PEP 562): importing one pure module of the package
# (policy.versions, which trivy:db's worker processes need) must not pull in the evidence store
# and SQLAlchemy through policy.service (3 s and 50 MB per process).
_HOME = {
    "Consensus": "consensus",
    "ProviderTrust": "consensus",
    "Policy": "document",
    "PolicyDocument": "document",
    "default_policy": "document",
    "load_policy": "document",
    "AsOf": "evaluate",
    "Evaluation": "evaluate",
    "Finding": "evaluate",
    "PolicyOutputs": "evaluate",
    "evaluate": "evaluate",
    "render": "evaluate",
    "AdvisoryIndex": "matching",
    "Match": "matching",
    "Skip": "matching",
    "match_component": "matching",
    "evaluate_store": "service",
    "overlay_from_store": "service",
    "parse_sbom_file": "service",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "AdvisoryIndex",
    "AsOf",
    "Consensus",
    "Evaluation",
    "Finding",
    "Match",
    "Policy",
    "PolicyDocument",
    "PolicyOutputs",
    "ProviderTrust",
    "Skip",
    "default_policy",
    "evaluate",
    "evaluate_store",
    "load_policy",
    "match_component",
    "overlay_from_store",
    "parse_sbom_file",
    "render",
]
