"""Pure builders for the bundle's signed documents: export.json, provenance.json and
README.txt (checksums.txt: :mod:`export_center.checksums`). No I/O, no clock: everything comes
from the plan and the staged file list, so the same inputs give the same bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from export_center import TOOL_NAME, __version__
from export_center.planner.plan import ExportPlan

MANIFEST_SCHEMA = "https://stellaops.io/export-center/manifest/v1"
MANIFEST_PAYLOAD_TYPE = "application/vnd.stellaops.export-manifest+json"
PROVENANCE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://stellaops.io/export-center/build/v1"
BUILDER_ID = f"https://stellaops.io/export-center/{TOOL_NAME}@{__version__}"

EXPORT_JSON = "manifests/export.json"
EXPORT_DSSE = "manifests/export.json.dsse"
PROVENANCE_JSON = "manifests/provenance.json"
PROVENANCE_DSSE = "manifests/provenance.json.dsse"
CHECKSUMS = "checksums.txt"
README = "README.txt"
SIGNED_FILES = frozenset({EXPORT_JSON, EXPORT_DSSE, PROVENANCE_JSON, PROVENANCE_DSSE})


@dataclass(frozen=True)
class ContentEntry:
    path: str
    sha256: str  # hex
    size: int
    records: int | None
    content_type: str

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "path": self.path,
            "digest": f"sha256:{self.sha256}",
            "bytes": self.size,
            "contentType": self.content_type,
        }
        if self.records is not None:
            entry["records"] = self.records
        return entry


def rerun_hash(digests: Sequence[str]) -> str:
    """sha256 of the newline-joined (no trailing newline) sorted ``sha256:<hex>`` digests."""
    joined = "\n".join(sorted(digests)).encode()
    return "sha256:" + hashlib.sha256(joined).hexdigest()


def build_manifest(
    plan: ExportPlan,
    contents: Sequence[ContentEntry],
    counts: Mapping[str, int],
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """``manifests/export.json`` as RFC 8785 bytes."""
    ordered = sorted(contents, key=lambda c: c.path.encode())
    body: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "exportId": plan.export_id,
        "profile": {
            "kind": plan.spec.kind,
            "variant": plan.spec.variant,
            "name": plan.profile_name,
            "revision": plan.revision,
        },
        "tenant": plan.tenant,
        "selectors": plan.selectors.model_dump(mode="json", by_alias=True),
        "asOf": {"sequence": plan.as_of_seq, "time": plan.as_of_rfc3339()},
        "generatedAt": plan.as_of_rfc3339(),
        "contents": [c.as_json() for c in ordered],
        "rerunHash": rerun_hash([f"sha256:{c.sha256}" for c in ordered]),
        "counts": dict(sorted(counts.items())),
        "tool": {"name": TOOL_NAME, "version": __version__},
    }
    for key, value in (extra or {}).items():
        if key in body:
            raise ValueError(f"manifest section {key!r} would overwrite a core field")
        body[key] = value
    return rfc8785.dumps(body)


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


def build_readme(plan: ExportPlan, archive_name_hint: str) -> bytes:
    """README.txt: what this bundle is and how to verify it offline, in plain words."""
    text = f"""Stella Export Center bundle
===========================

Export id : {plan.export_id}
Profile   : {plan.profile_name} r{plan.revision} ({plan.spec.kind}:{plan.spec.variant})
Tenant    : {plan.tenant}
As of     : change sequence {plan.as_of_seq} ({plan.as_of_rfc3339()})

What is inside
  manifests/export.json        the manifest: every content file with its sha256 and size
  manifests/export.json.dsse   DSSE envelope (signature) over export.json
  manifests/provenance.json    in-toto Statement v1 / SLSA provenance v1 of this export
  manifests/provenance.json.dsse  DSSE envelope over provenance.json
  data/, trivy/, tuf/ ...      the exported content (evidence as JSON Lines, or a Trivy DB,
                               or mirror metadata), every file listed in export.json
  checksums.txt                sha256 of every file (sha256sum format)

How to verify, offline
  With the tool (checks everything, in order, and names each check):
      stella export verify {archive_name_hint} --trust-roots trusted-keys.pem
  With standard tools only (integrity, not origin):
      sha256sum -c {archive_name_hint}.sha256      (next to the archive)
      tar -xf {archive_name_hint} && sha256sum -c checksums.txt
  trusted-keys.pem holds the public key(s) you received out of band from the exporter
  (`stella keys export-public KEYID` on their side).

The same profile revision exported from the same store state gives byte-identical files.
"""
    return text.encode()
