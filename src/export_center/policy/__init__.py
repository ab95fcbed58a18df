"""The policy overlay: findings (SBOM × advisories), VEX consensus, and a policy's verdicts.

Data flow: :mod:`.matching` (components × advisories, per-ecosystem versions) → :mod:`.consensus`
(VEX statements about each finding) → :mod:`.evaluate` (policy decisions, canonical output) ←
:mod:`.document` (the validated policy). :mod:`.service` is the only module that reads the
evidence store.
"""

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
