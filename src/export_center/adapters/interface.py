"""The adapter plug-in point: one adapter per profile, writing files into a staging area.

Adapters never touch tar, compression, signing or the final location: they stream records from
the store (pinned to the plan's as-of sequence) into the run's
:class:`~export_center.bundle.staging.Staging`, which hashes and counts as it writes, and report
what the manifest and provenance need (counts, input sets, manifest sections). The bundle writer
then owns everything else; :func:`produce` is the one place that runs an adapter for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from export_center.bundle.manifest import (
    DeltaSection,
    EncryptionSection,
    ManifestSections,
    MirrorSection,
    PolicySection,
    TrivySection,
)
from export_center.bundle.staging import Staging
from export_center.bundle.writer import StagedContent, raise_if_cancelled
from export_center.planner.plan import ExportPlan
from export_center.planner.profiles import ProfileSpec
from export_center.signing.interface import Signer
from export_center.store.repository import EvidenceStore

if TYPE_CHECKING:
    from export_center.mirror.kms import Pkcs11Access

__all__ = ["Adapter", "CheckingAdapter", "ExportContext", "SealingAdapter", "produce"]


@dataclass
class ExportContext:
    plan: ExportPlan
    store: EvidenceStore
    staging: Staging
    progress: Callable[[int], None] = lambda _n: None
    is_cancelled: Callable[[], bool] = lambda: False
    # How to reach the operator's KMS (mirror encryption to kms:// recipients).
    kms: Pkcs11Access | None = None
    # devportal:offline: the operator's portal tree (settings), and the export API's OpenAPI
    # document (canonical JSON bytes) when the process that runs the export can make it.
    devportal_dir: Path | None = None
    openapi: Callable[[], bytes] | None = None
    # Filled by the adapter: record counts per type, and per-source input-set digests.
    counts: dict[str, int] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)
    # The manifest sections an adapter contributes (bundle.manifest has one model for each).
    delta: DeltaSection | None = None
    encryption: EncryptionSection | None = None
    policy: PolicySection | None = None
    mirror: MirrorSection | None = None
    trivy: TrivySection | None = None

    def check_cancelled(self) -> None:
        """Stop the adapter when the run was cancelled.

        Raises:
            CancelledError: the run was cancelled.
        """
        raise_if_cancelled(self.is_cancelled)


class Adapter(Protocol):
    """Produces a profile's content under ``data/`` (or ``trivy/``, ...) in the staging area."""

    def build(self, ctx: ExportContext) -> None: ...


@runtime_checkable
class SealingAdapter(Protocol):
    """An adapter with a second phase that needs the run's signer (mirror profiles).

    ``seal`` runs after ``build`` and before the manifest is written; it may add files to the
    staging area and manifest sections to ``ctx``, and returns extra provenance
    ``externalParameters`` (or None).
    """

    def build(self, ctx: ExportContext) -> None: ...

    def seal(self, ctx: ExportContext, signer: Signer) -> Mapping[str, Any] | None: ...


@runtime_checkable
class CheckingAdapter(Protocol):
    """An adapter that can refuse a profile's options before a run is queued (``POST /runs``
    answers 400 instead of queueing a run that can only fail)."""

    def build(self, ctx: ExportContext) -> None: ...

    def check(self, spec: ProfileSpec) -> None: ...


def produce(adapter: Adapter, ctx: ExportContext, signer: Signer) -> StagedContent:
    """Run ``adapter`` over ``ctx`` (build, then seal when it seals) and report its content.

    Raises:
        CancelledError: the run was cancelled meanwhile.
        BadInputError: the adapter refused the profile (options, policy document, ...).
    """
    adapter.build(ctx)
    ctx.check_cancelled()
    # Adapters that sign metadata of their own (mirror: TUF over data/, optional
    # encryption) finish with the run's signer; what they add is covered by the manifest.
    parameters = adapter.seal(ctx, signer) if isinstance(adapter, SealingAdapter) else None
    return StagedContent(
        counts=dict(ctx.counts),
        dependencies=dict(ctx.dependencies),
        sections=ManifestSections(
            delta=ctx.delta,
            encryption=ctx.encryption,
            policy=ctx.policy,
            mirror=ctx.mirror,
            trivy=ctx.trivy,
        ),
        provenance_parameters=parameters,
    )
