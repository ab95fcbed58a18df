"""In-process export: the pipeline composed, from a profile revision to a published bundle.

plan (the revision pinned to an as-of sequence) -> the profile's adapter (from the closed
registry) -> the bundle writer (staging, manifest, provenance, archive) -> the signer. The CLI's
``stella export run`` and the worker both call :func:`run_export`; every published bundle is
recorded in the ledger of published exports (the bases of later deltas).

:class:`ProfileReferences` checks what a profile names against what its tenant owns (keys,
policies, KMS keys, published exports) when the registry writes a revision: a tenant's profile
never reaches another tenant's key or any server resource (security.md, "Tenant <-> server").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export_center.adapters.interface import CheckingAdapter, ExportContext, produce
from export_center.adapters.mirror import mirror_section
from export_center.adapters.registry import adapter_for
from export_center.bundle.staging import Staging
from export_center.bundle.writer import BundleResult, StagedContent, build_bundle
from export_center.errors import (
    BadInputError,
    ConfigError,
    ConflictError,
    NotFoundError,
    SigningError,
)
from export_center.mirror.base import check_base
from export_center.mirror.kms import Pkcs11Access
from export_center.mirror.options import MirrorDeltaOptions, MirrorOptions
from export_center.planner.options import DevportalOptions
from export_center.planner.plan import ExportPlan, make_plan, resolve_selectors
from export_center.planner.profiles import ProfileSpec, invalid_profile
from export_center.planner.registry import ProfileRegistry, ProfileRevisionView
from export_center.policy.repository import PolicyStore
from export_center.settings import Settings
from export_center.signing.interface import Signer
from export_center.signing.keystore import KeyInfo, KeyStore
from export_center.signing.registry import create_signer
from export_center.store.published import record_published
from export_center.store.repository import EvidenceStore


@dataclass(frozen=True)
class ExportOutcome:
    plan: ExportPlan
    bundle: BundleResult


def runnable_profile(
    registry: ProfileRegistry, tenant: str, name: str, revision: int | None = None
) -> ProfileRevisionView:
    """The profile revision a run (or a plan) of ``name`` would use, refused as the API
    refuses it: the CLI's in-process runs and the service's runs agree.

    Raises:
        NotFoundError: no such profile or revision.
        ConflictError: the profile is archived.
        BadInputError: this build cannot export the profile's kind, or its adapter refuses
            the revision (a devportal:offline inputDir).
    """
    profile = registry.get(tenant, name, revision)
    if profile.archived:
        raise ConflictError(f"profile {name!r} is archived: it runs no more")
    # Refuse a profile this build cannot export now, rather than fail the run later.
    adapter = adapter_for(profile.spec.profile_kind)
    if isinstance(adapter, CheckingAdapter):  # e.g. devportal:offline refuses inputDir
        adapter.check(profile.spec)
    return profile


def signer_for(settings: Settings, info: KeyInfo) -> Signer:
    """A signer for a key of the key store: its PEM file, or its PKCS#11 token object through
    the operator's module and PIN (``STELLA_PKCS11_MODULE``, ``STELLA_PKCS11_PIN``).

    Raises:
        ConfigError: a PKCS#11 key and no module configured.
        NotFoundError: the key file, token or object is missing.
        SigningError: the key cannot be used (passphrase, PIN), or the token object now holds
            another key than the one registered.
    """
    if info.backend == "file":
        return KeyStore.from_settings(settings).signer(info.keyid)
    if not settings.pkcs11_module:
        raise ConfigError(
            f"key {info.keyid} is on PKCS#11 token {info.token!r} and no module is configured",
            hint="set STELLA_PKCS11_MODULE to the vendor's PKCS#11 library (.so)",
        )
    assert info.token is not None and info.object is not None
    pin = settings.pkcs11_pin
    config = {"module": settings.pkcs11_module, "token": info.token, "key_label": info.object}
    signer = create_signer("pkcs11", config | ({"pin": pin.get_secret_value()} if pin else {}))
    if signer.keyid != info.keyid:
        raise SigningError(
            f"PKCS#11 token {info.token!r} object {info.object!r} holds key {signer.keyid}, "
            f"not the registered {info.keyid}",
            hint="register the new key (`stella keys register-pkcs11`) and assign it",
        )
    return signer


def resolve_signer(settings: Settings, profile: ProfileRevisionView) -> Signer:
    """The signer of a profile: its named key when that key is assigned to the profile's
    tenant, else the tenant's newest key (a file key or a registered PKCS#11 key).

    Raises:
        NotFoundError: the key is not one of the tenant's, or the tenant has none (the
            operator assigns keys: ``stella keys assign``).
        ConfigError, SigningError: as :func:`signer_for`.
    """
    keys = KeyStore.from_settings(settings)
    return signer_for(settings, keys.tenant_key(profile.tenant, profile.spec.signing.key))


class ProfileReferences:
    """What a profile revision names, checked against its tenant's own resources and pinned.

    Called by :class:`~export_center.planner.registry.ProfileRegistry` before it writes a
    revision: ``signing.key`` must be assigned to the tenant; ``policy.name`` (and
    ``policy.digest``) a stored policy of the tenant, whose digest is pinned;
    ``options.encryption.kms`` KMS keys assigned to the tenant; ``options.base.exportId`` a
    mirror export this server published for the tenant, of the same selection, whose manifest
    digest is pinned; a devportal:offline revision names no ``inputDir``. Another tenant's
    key, policy or export is refused like one that does not exist.
    """

    def __init__(self, settings: Settings, store: EvidenceStore) -> None:
        self.keys = KeyStore.from_settings(settings)
        self.store = store

    def __call__(self, tenant: str, spec: ProfileSpec) -> ProfileSpec:
        """``spec`` with its references pinned.

        Raises:
            RequestValidationFailed: naming each field whose reference is not the tenant's.
        """
        problems: list[dict[str, str]] = []
        updates: dict[str, Any] = {}
        if spec.signing.key is not None:
            try:
                self.keys.tenant_key(tenant, spec.signing.key)
            except NotFoundError as e:
                problems.append({"field": "signing.key", "message": e.message})
        ref = spec.policy
        if ref.name is not None:
            try:
                found = PolicyStore(self.store).get(tenant, ref.name, digest=ref.digest)
                updates["policy"] = ref.model_copy(update={"digest": found.digest})
            except NotFoundError as e:
                field = "policy.digest" if ref.digest else "policy.name"
                problems.append({"field": field, "message": e.message})
        opts = spec.options
        if isinstance(opts, DevportalOptions) and opts.input_dir is not None:
            # What a run would refuse is refused when the revision is written.
            problems.append(
                {
                    "field": "options.inputDir",
                    "message": "names a directory, which runs never read (runs package the "
                    "operator's STELLA_DEVPORTAL_DIR and the service's OpenAPI document; "
                    "inputDir is for `stella devportal build --profile`)",
                }
            )
        if isinstance(opts, MirrorOptions):
            if opts.encryption is not None and opts.encryption.kms:
                allowed = self.keys.tenant_kms(tenant)
                for i, key_id in enumerate(opts.encryption.kms):
                    if key_id not in allowed:
                        problems.append(
                            {
                                "field": f"options.encryption.kms[{i}]",
                                "message": f"KMS key {key_id!r} is not assigned to tenant "
                                f"{tenant!r} (the operator assigns KMS keys: "
                                "`stella keys assign-kms`)",
                            }
                        )
            if isinstance(opts, MirrorDeltaOptions) and opts.base and opts.base.export_id:
                pinned = self._base(tenant, spec, opts, problems)
                if pinned is not None:
                    updates["options"] = pinned
        if problems:
            raise invalid_profile(f"profile for tenant {tenant}", problems)
        return spec.model_copy(update=updates) if updates else spec

    def _base(
        self,
        tenant: str,
        spec: ProfileSpec,
        opts: MirrorDeltaOptions,
        problems: list[dict[str, str]],
    ) -> MirrorDeltaOptions | None:
        assert opts.base is not None and opts.base.export_id is not None
        mirror = mirror_section(spec.include, opts)
        try:
            selectors = resolve_selectors(tenant, spec.selectors)
            info = check_base(
                self.store,
                tenant,
                opts.base.export_id,
                opts.base.manifest_digest,
                selectors,
                mirror,
            )
        except (NotFoundError, BadInputError, ConflictError) as e:
            field = "options.base.manifestDigest" if opts.base.manifest_digest else None
            problems.append({"field": field or "options.base.exportId", "message": e.message})
            return None
        base = opts.base.model_copy(update={"manifest_digest": info.manifest_digest})
        return opts.model_copy(update={"base": base})


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
    record: bool = True,
    openapi: Callable[[], bytes] | None = None,
) -> ExportOutcome:
    """Plan, build, sign and publish one export of ``profile`` into ``out_dir``, and record it
    in the ledger of published exports (unless ``record`` is False: the worker records a run's
    bundle once the run has succeeded, :func:`record_outcome`).

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
    outcome = ExportOutcome(plan, bundle)
    if record:
        record_outcome(store, outcome)
    return outcome


def record_outcome(store: EvidenceStore, outcome: ExportOutcome) -> None:
    """Add a published bundle to the ledger of published exports (the bases of deltas)."""
    plan, bundle = outcome.plan, outcome.bundle
    record_published(
        store,
        tenant=plan.tenant,
        export_id=bundle.export_id,
        manifest_digest=bundle.manifest_digest,
        profile=plan.profile_name,
        revision=plan.revision,
        kind=plan.spec.kind,
        variant=plan.spec.variant,
        as_of_seq=plan.as_of_seq,
        manifest=bundle.manifest,
    )
