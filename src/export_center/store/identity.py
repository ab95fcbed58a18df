"""Which stored record a new document revises: the identity rule (docs/formats.md, "Identity").

A record is keyed by (tenant, source, upstream id). An advisory's id names one vulnerability
record, so the same id is always the same advisory. A VEX document's or SBOM's id is supposed to
name one document, but sources reuse them: VEX Hub publishes 36 OpenVEX documents about 36
different products under one ``@id``. So for VEX documents and SBOMs the store also compares
what the document is about (its *subject*): a new document whose id is held by a current record
about another subject is a different document, stored under the id qualified with its own
subject (``<id>#<subject>``), and the collision is reported. A document with the same id and the
same subject is a re-publication: a new revision when its bytes differ.

Subjects (computed from the normalized JSON, so that stored records and new ones compare alike):

- OpenVEX, CycloneDX VEX: the products its statements name, without version, qualifiers or
  subpath (a re-publication that adds a release of the same product stays a revision);
- CSAF: the publisher (a CSAF tracking id is unique per publisher, CSAF 2.0 §3.2.1.12.6);
- SBOMs: the subject (the described component, with its version: an SBOM of another release is
  another document).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_KEY", "document_subject", "qualified_upstream_id", "versionless"]

#: raw_records.upstream_id is String(512).
MAX_KEY = 512
_READABLE = 200


def versionless(product: str) -> str:
    """A product id without version, qualifiers and subpath when it is a purl; else as is.

    ``pkg:golang/github.com/rancher/webhook@v0.4.7`` → ``pkg:golang/github.com/rancher/webhook``;
    ``pkg:oci/trivy?repository_url=…`` → ``pkg:oci/trivy``. The version is the ``@`` after the
    last ``/`` (an npm scope ``@angular`` sits before it).
    """
    if not product.startswith("pkg:"):
        return product
    head = product.split("#", 1)[0].split("?", 1)[0]
    slash = head.rfind("/")
    at = head.find("@", slash + 1)
    return head[:at] if at > 0 else head


def document_subject(doc_type: str, data: Mapping[str, Any]) -> str | None:
    """What a stored or new document is about (``data``: its normalized JSON), or None for
    records whose id alone is their identity (advisories)."""
    if doc_type == "vex":
        if data.get("format") == "csaf":
            return str(data.get("provider") or "")
        products = {versionless(str(st.get("product", ""))) for st in data.get("statements", ())}
        return "\n".join(sorted(products, key=str.encode))
    if doc_type == "sbom":
        return str(data.get("subject") or "")
    return None


def qualified_upstream_id(upstream_id: str, subject: str) -> str:
    """The key of a document whose id is already held by a document about another subject:
    ``<id>#<subject>`` when the subject is one short line, else ``<id>#sha256:<16 hex>`` of the
    subject; ``sha256:<hex>`` of both when even that is over the key's 512 characters."""
    token = subject
    if "\n" in subject or len(subject) > _READABLE or not subject:
        token = "sha256:" + hashlib.sha256(subject.encode()).hexdigest()[:16]
    key = f"{upstream_id}#{token}"
    if len(key) > MAX_KEY:
        key = "sha256:" + hashlib.sha256(f"{upstream_id}\n{subject}".encode()).hexdigest()
    return key
