"""In-process export: the pipeline composed, from a profile revision to a published bundle.

plan (the revision pinned to an as-of sequence) -> the profile's adapter (from the closed
registry) -> the bundle writer (staging, manifest, provenance, archive) -> the signer. The CLI's
``stella export run`` and the worker both call :func:`run_export`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export_center.adapters.interface import ExportContext, produce
from export_center.adapters.registry import adapter_for
from export_center.bundle.staging import Staging
from export_center.bundle.writer import BundleResult, StagedContent, build_bundle
from export_center.mirror.kms import Pkcs11Access
from export_center.planner.plan import ExportPlan, make_plan
from export_center.planner.registry import ProfileRevisionView
from export_center.settings import Settings
from export_center.signing.interface import Signer
from export_center.signing.keystore import KeyStore
from export_center.signing.registry import create_signer
from export_center.store.repository import EvidenceStore


@dataclass(frozen=True)
class ExportOutcome:
    plan: ExportPlan
    bundle: BundleResult


def resolve_signer(settings: Settings, profile: ProfileRevisionView) -> Signer:
    """The profile's named key, else the newest key in the key store.

    A key named ``pkcs11:token=...;object=...?module-path=...`` is used on its HSM token
    (PIN from the settings' ``STELLA_PKCS11_PIN``); anything else is a keyid (or prefix) in the
    key store (encrypted keys open with ``STELLA_KEY_PASSPHRASE``).

    Raises:
        NotFoundError: no such key / no key at all (hint: ``stella keys generate``).
        SigningError: the key cannot be used (passphrase, PIN, token).
    """
    key = profile.spec.signing.key
    if key is not None and key.startswith("pkcs11:"):
        pin = settings.pkcs11_pin
        config = {"uri": key} | ({"pin": pin.get_secret_value()} if pin else {})
        return create_signer("pkcs11", config)
    return KeyStore.from_settings(settings).signer(key)


def run_export(
    settings: Settings,
    store: EvidenceStore,
    profile: ProfileRevisionView,
    out_dir: Path,
    *,
    as_of_seq: int | None = None,
    signer: Signer | None = None,
    progress: Callable[[int], None] = lambda _n: None,
    is_cancelled: Callable[[], bool] = lambda: False,
    on_plan: Callable[[ExportPlan], None] = lambda _p: None,
    openapi: Callable[[], bytes] | None = None,
) -> ExportOutcome:
    """Plan, build, sign and publish one export of ``profile`` into ``out_dir``.

    ``openapi`` makes the export API's OpenAPI document (devportal:offline packages it); the
    process that composes the run passes it (the worker does not import the service).

    Raises:
        NotFoundError: no such as-of sequence, or no signing key.
        BadInputError: the profile cannot be exported (no adapter yet, invalid options).
        CancelledError: ``is_cancelled`` turned true; nothing was published.
        SigningError: the key could not sign.
    """
    plan = make_plan(store, profile, as_of_seq=as_of_seq)
    on_plan(plan)
    signer = signer or resolve_signer(settings, profile)
    adapter = adapter_for(plan.spec.profile_kind)
    kms = Pkcs11Access.from_settings(settings)

    def content(staging: Staging, run_signer: Signer) -> StagedContent:
        ctx = ExportContext(
            plan,
            store,
            staging,
            progress=progress,
            is_cancelled=is_cancelled,
            kms=kms,
            devportal_dir=settings.devportal_dir,
            openapi=openapi,
        )
        return produce(adapter, ctx, run_signer)

    bundle = build_bundle(plan, signer, out_dir, content, is_cancelled=is_cancelled)
    return ExportOutcome(plan, bundle)
