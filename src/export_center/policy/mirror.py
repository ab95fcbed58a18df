"""The policy engine's entry point for mirror bundles (see ``export_center.mirror.policy``)."""

from export_center.policy.bundle import write_policy_parts as write_mirror_policy

__all__ = ["write_mirror_policy"]
