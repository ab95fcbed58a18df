"""Trivy bundles on the way out: verify a trivy:db / trivy:java-db bundle, then push Trivy's
own artifact to a registry (``trivy --db-repository`` / ``--java-db-repository``).

:func:`open_trivy_bundle` is the one way a Trivy bundle is opened, for a push here and for
``stella airgap trivy-install`` (:mod:`export_center.importer.trivy_install`): every bundle check
(docs/bundle-format.md, "Verification", :func:`~export_center.bundle.verify.verify_bundle`), then
two of its own, each reported by name:

``trivy``    the signed manifest describes a trivy:db or trivy:java-db export whose Trivy files
             are exactly the archive and its OCI image layout;
``extract``  the files needed are taken from a private copy of the bundle, and each one is the
             file the checks above hashed.

:func:`push_trivy_bundle` takes the layout from the verified bytes and pushes it with the
generic :class:`~export_center.oci.registry.RegistryClient`, under the one outbound HTTP
policy (:mod:`export_center.netpolicy`): plain HTTP is used for loopback registries only; any
request that would leave over plain HTTP to another host (a redirect or token realm included) is
refused.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson

from export_center.archive.reader import Limits, iter_members
from export_center.bundle.manifest import ExportManifest
from export_center.bundle.verify import BundleReport, CollectedFiles, verify_bundle
from export_center.digests import prefixed, sha256_file, sha256_hex
from export_center.distribution.source import open_source
from export_center.errors import BadInputError, NotFoundError, VerificationError
from export_center.netpolicy import refuse_plain_http
from export_center.oci.layout import MAX_MANIFEST_BYTES
from export_center.oci.registry import RegistryClient, parse_ref
from export_center.signing.interface import PublicKey
from export_center.trivy.artifact import CONFIG_BYTES, DB, KINDS, TrivyDbKind, read_trivy_layout

__all__ = [
    "TRIVY_CHECKS",
    "TrivyBundle",
    "TrivyBundleRefused",
    "is_trivy_bundle",
    "open_trivy_bundle",
    "push_trivy_bundle",
    "refuse_plain_http",
]

TRIVY_CHECKS = ("trivy", "extract")


class TrivyBundleRefused(VerificationError):
    """The bundle failed a check; ``report`` says which, in order."""

    def __init__(self, report: BundleReport) -> None:
        failed = report.failed
        super().__init__(
            failed.name if failed else "verify",
            failed.detail if failed else "the bundle did not verify",
            hint="nothing was installed or pushed; check the bundle and --trust-roots",
        )
        self.report = report


@dataclass(frozen=True)
class TrivyBundle:
    """A verified Trivy bundle: its report and manifest, which database it carries, and a
    directory holding the requested files at their bundle paths."""

    report: BundleReport
    manifest: ExportManifest
    kind: TrivyDbKind
    root: Path


def open_trivy_bundle(
    bundle: str | Path,
    trust_roots: Mapping[str, PublicKey],
    work: Path,
    *,
    part: Literal["archive", "layout"],
    limits: Limits | None = None,
    registry_credentials: tuple[str, str] | None = None,
    tenant: str | None = None,
) -> TrivyBundle:
    """Verify the Trivy bundle ``bundle`` (archive, directory, ``oci:DIR[:TAG]`` or
    ``oci://HOST/REPO:TAG``) and make its database ``part`` available under ``work``: the
    archive (``trivy/db.tar.gz``) or the OCI image layout (``trivy/oci/db/``). With
    ``tenant``, a bundle of another tenant fails the ``tenant`` check.

    Raises:
        TrivyBundleRefused: a check failed (report attached).
        NotFoundError: no such bundle.
        VerificationError: ``trust_roots`` is empty (fail closed, before reading anything).
    """
    if not trust_roots:
        raise VerificationError("trust-roots", "no trusted public keys given")
    roots = dict(trust_roots)
    source = open_source(str(bundle), work / "source", registry_credentials=registry_credentials)
    state: dict[str, Any] = {}
    dest = work / "extracted"

    def trivy(manifest: ExportManifest, collected: CollectedFiles) -> str | None:
        profile = manifest.profile
        kind = KINDS.get(profile.variant) if profile.kind == "trivy" else None
        if kind is None:
            raise VerificationError(
                "trivy",
                f"export {manifest.export_id} is {profile.kind}:{profile.variant}, "
                "not a trivy:db or trivy:java-db bundle",
            )
        digests: dict[str, tuple[str, int]] = dict(collected.digests)
        listed = {e.path for e in manifest.contents}
        trivy_files = sorted(p for p in listed if p.startswith("trivy/"))
        layout = [p for p in trivy_files if p.startswith(kind.layout_dir + "/")]
        if kind.archive_path not in listed:
            raise VerificationError("trivy", f"{kind.archive_path} is missing")
        for required in ("oci-layout", "index.json"):
            if f"{kind.layout_dir}/{required}" not in listed:
                raise VerificationError("trivy", f"{kind.layout_dir}/{required} is missing")
        if extra := sorted(set(trivy_files) - {kind.archive_path, *layout}):
            raise VerificationError("trivy", f"unexpected Trivy files: {', '.join(extra[:5])}")
        state["kind"] = kind
        wanted = [kind.archive_path] if part == "archive" else layout
        state["wanted"] = {p: digests[p] for p in wanted}
        return f"trivy:{kind.variant}, {len(trivy_files)} Trivy files"

    def extract(_manifest: ExportManifest, _collected: CollectedFiles) -> str | None:
        wanted: dict[str, tuple[str, int]] = state["wanted"]
        if source.is_archive:
            dest.mkdir()
            found: set[str] = set()
            for member in iter_members(source.path, limits):
                if member.is_dir or member.name not in wanted:
                    continue
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("xb") as out:
                    for chunk in member.chunks():
                        out.write(chunk)
                found.add(member.name)
            if missing := sorted(set(wanted) - found):
                raise VerificationError("extract", f"not in the archive: {', '.join(missing[:5])}")
            root = dest
        else:
            root = source.path  # already a private copy
        for path, expected in sorted(wanted.items()):
            if sha256_file(root / path) != expected:
                raise VerificationError("extract", f"{path}: differs from the verified bytes")
        state["root"] = root
        return f"{len(wanted)} files"

    report = verify_bundle(
        source.path,
        roots,
        limits=limits,
        extra_checks=[("trivy", trivy), ("extract", extract)],
        tenant=tenant,
    )
    if not report.ok or report.manifest is None:
        raise TrivyBundleRefused(report)
    return TrivyBundle(report, report.manifest, state["kind"], state["root"])


def _target(ref: str, kind: TrivyDbKind) -> str:
    """``ref`` with Trivy's tag for ``kind`` when it names none.

    Raises:
        BadInputError: not ``oci://HOST/REPO[:TAG]``, a digest, or plain ``http://``.
    """
    if ref.startswith(("http://", "oci+http://")):
        raise BadInputError(
            f"{ref!r}: plain HTTP registries are refused",
            hint="name the registry as oci://HOST/REPO:TAG; HTTPS is used, except for loopback "
            "hosts, which are reached over plain HTTP automatically",
        )
    oref = parse_ref(ref)
    if oref.reference.startswith("sha256:"):
        raise BadInputError(f"{ref}: push to a tag, not a digest")
    if ":" not in ref.rsplit("/", 1)[-1]:
        return f"{ref}:{kind.tag}"
    return ref


def push_trivy_bundle(
    bundle_path: Path,
    ref: str,
    *,
    trust_roots: Mapping[str, PublicKey],
    client: httpx.Client | None = None,
    credentials: tuple[str, str] | None = None,
) -> str:
    """Verify the Trivy bundle ``bundle_path`` against ``trust_roots``, then push its
    database artifact (Trivy's media types) to ``ref`` (``oci://HOST/REPO[:TAG]``; the tag
    defaults to ``2`` for trivy:db, ``1`` for trivy:java-db). Returns the manifest digest.

    Raises:
        TrivyBundleRefused: the bundle failed a check (its report attached).
        BadInputError: a bad reference. NotFoundError: no such bundle.
        RegistryError: the registry refused.
        InsecureTransportError: plain HTTP to a non-loopback host (a redirect included).
        VerificationError: the bundle's OCI layout is not a valid Trivy artifact.
    """
    parse_ref(_target(ref, DB))  # refuse a bad reference before any work
    work = Path(tempfile.mkdtemp(prefix="stella-trivy-push-"))
    try:
        opened = open_trivy_bundle(
            bundle_path, trust_roots, work, part="layout", registry_credentials=credentials
        )
        target = parse_ref(_target(ref, opened.kind))
        art = read_trivy_layout(opened.root / opened.kind.layout_dir, opened.kind)
        own = client is None
        reg = RegistryClient(target, client=client, credentials=credentials, actions="pull,push")
        try:
            reg.push_blob(prefixed(sha256_hex(CONFIG_BYTES)), data=CONFIG_BYTES)
            reg.push_blob(art.layer_digest, path=art.layer_path)
            digest = reg.push_manifest(art.manifest, target.reference)
        finally:
            if own:
                reg.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return digest


def is_trivy_bundle(bundle: Path) -> bool:
    """Whether ``bundle`` (archive or directory) says it is a trivy:* export.

    Only for choosing how to push: nothing is trusted from this read, and
    :func:`push_trivy_bundle` verifies the bundle before using it.

    Raises:
        UnsafeArchiveError: the archive is hostile. NotFoundError: no such bundle.
    """
    data: bytes | None = None
    if bundle.is_dir():
        manifest = bundle / "manifests" / "export.json"
        if manifest.is_file() and not manifest.is_symlink():
            data = manifest.read_bytes()
    elif bundle.is_file():
        for member in iter_members(bundle):
            if member.name == "manifests/export.json" and not member.is_dir:
                if member.size <= MAX_MANIFEST_BYTES:
                    data = member.read()
                break
    else:
        raise NotFoundError(f"{bundle}: no such bundle")
    try:
        doc = orjson.loads(data) if data is not None else None
    except orjson.JSONDecodeError:
        return False
    profile = doc.get("profile") if isinstance(doc, dict) else None
    return isinstance(profile, dict) and profile.get("kind") == "trivy"
