"""devportal:offline — the developer portal, as a run: the documented devportal bundle inside
the shared bundle shape.

Decision (docs/devportal.md, "Runs"): a run of a devportal:offline profile publishes an
ordinary export bundle (``<exportId>.tar.zst`` with manifests, provenance, checksums and the
``.sha256``/``.sig`` sidecars), whose one content file is ``portal/devportal-offline-bundle.tgz``:
the devportal bundle of bundles.md byte for byte as ``stella devportal build`` writes it, with
its own ``manifest.json``, ``manifest.dsse.json`` (signed by the run's key), ``checksums.txt``
and ``verify-offline.sh``. So runs, events, download, retention, ``stella export verify``,
OCI push and kits treat it like every other profile, and developers still get the documented
archive, verifiable with a POSIX shell.

What goes in (tenants never name a server directory: export-center.md §6):

- the operator's tree, the ``devportal_dir`` setting (``STELLA_DEVPORTAL_DIR``), when set;
- unless ``options.serviceSpec`` is false, the export API's own OpenAPI document as
  ``specs/stella-export-center.openapi.json`` and, when the operator's tree has no ``portal/``,
  a generated ``portal/index.html`` listing its operations
  (:mod:`export_center.devportal.service_spec`).

``options.inputDir`` (for ``stella devportal build --profile``) is refused by runs.
``manifest.json`` ``generatedAt`` is the plan's as-of time; ``metadata`` holds the export id,
tenant, profile and revision, then ``options.metadata``. The clock is never read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, BinaryIO, cast

from export_center.adapters.interface import ExportContext
from export_center.archive.writer import DEFAULT_MTIME
from export_center.bundle.staging import StagedWriter
from export_center.devportal.builder import BuildOptions, write_bundle
from export_center.devportal.inputs import InputTree, scan_input, with_generated
from export_center.devportal.layout import BUNDLE_NAME
from export_center.devportal.profile import DevportalOptions, options_of
from export_center.devportal.service_spec import INDEX_PATH, SPEC_PATH, parse_document
from export_center.devportal.service_spec import render_index as render_portal_index
from export_center.errors import BadInputError, ConfigError
from export_center.planner.profiles import ProfileSpec
from export_center.signing.interface import Signer

__all__ = ["PORTAL_BUNDLE", "DevportalAdapter"]

#: Where the devportal bundle sits inside the run's export bundle.
PORTAL_BUNDLE = f"portal/{BUNDLE_NAME}"
_SCRATCH = "devportal-generated"


class _StagedStream:
    """The staged file as the archive writer's output (it wants a count back, and flush)."""

    def __init__(self, writer: StagedWriter) -> None:
        self._writer = writer

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data)
        self._writer.write(chunk)
        return len(chunk)

    def flush(self) -> None:
        pass


def _run_options(spec: ProfileSpec, where: str) -> DevportalOptions:
    options = options_of(spec, where=where)
    if options.input_dir is not None:
        raise BadInputError(
            f"{where}: options.inputDir names a directory, which runs never read",
            hint="runs package the operator's STELLA_DEVPORTAL_DIR and the service's "
            "OpenAPI document; inputDir is for `stella devportal build --profile`",
        )
    return options


class DevportalAdapter:
    """Builds the devportal bundle in the seal phase: its manifest is signed by the run's key."""

    def check(self, spec: ProfileSpec) -> None:
        """Refuse options no run accepts (before a run is queued).

        Raises:
            BadInputError: invalid options, or ``inputDir``.
        """
        _run_options(spec, "profile")

    def build(self, ctx: ExportContext) -> None:
        # Refuse bad options before anything is signed; the bundle is written by seal().
        self._options(ctx)

    def seal(self, ctx: ExportContext, signer: Signer) -> Mapping[str, Any] | None:
        options = self._options(ctx)
        tree = self._inputs(ctx, options)
        ctx.check_cancelled()
        plan = ctx.plan
        metadata: dict[str, Any] = {
            "exportId": plan.export_id,
            "tenant": plan.tenant,
            "profile": plan.profile_name,
            "revision": plan.revision,
        }
        metadata.update(options.metadata)
        build = BuildOptions(
            source_date_epoch=DEFAULT_MTIME,
            generated_at=plan.as_of_time,
            metadata=metadata,
        )
        with ctx.staging.open(PORTAL_BUNDLE, "application/gzip") as staged:
            written = write_bundle(tree, signer, build, cast(BinaryIO, _StagedStream(staged)))
        ctx.progress(len(tree.files))
        categories = Counter(f.category.value for f in tree.files)
        ctx.counts = {f"devportal.{name}": n for name, n in sorted(categories.items())}
        return {
            "devportal": {
                "bundleId": written.bundle_id,
                "rootHash": written.root_hash,
                "openapiDocuments": list(written.openapi_documents),
            }
        }

    @staticmethod
    def _options(ctx: ExportContext) -> DevportalOptions:
        options = _run_options(ctx.plan.spec, f"profile {ctx.plan.profile_name}")
        if not options.service_spec and ctx.devportal_dir is None:
            raise ConfigError(
                f"profile {ctx.plan.profile_name}: nothing to bundle: options.serviceSpec is "
                "false and no devportal directory is configured",
                hint="set STELLA_DEVPORTAL_DIR (or devportal_dir in stella.toml)",
            )
        return options

    @staticmethod
    def _inputs(ctx: ExportContext, options: DevportalOptions) -> InputTree:
        base = scan_input(ctx.devportal_dir) if ctx.devportal_dir is not None else None
        generated: dict[str, bytes] = {}
        if options.service_spec:
            if ctx.openapi is None:
                raise ConfigError(
                    "this process cannot make the service's OpenAPI document",
                    hint="run the export with `stella serve`/`stella worker`, or install the "
                    "'service' extra; or set options.serviceSpec to false",
                )
            spec = ctx.openapi()
            generated[SPEC_PATH] = spec
            has_portal = base is not None and any(f.path.startswith("portal/") for f in base.files)
            if not has_portal:
                generated[INDEX_PATH] = render_portal_index(parse_document(spec))
        return with_generated(base, generated, ctx.staging.root / _SCRATCH)
