"""``README.txt``: what a bundle is and how to verify it offline, in plain words."""

from __future__ import annotations

from export_center.planner.plan import ExportPlan


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
