"""Trivy database profiles: write what the real Trivy reads, offline.

- :mod:`export_center.trivy.bbolt`: a streaming, write-once bbolt file writer (and a reader);
- :mod:`export_center.trivy.mapping`: normalized advisories → Trivy buckets, keys and JSON
  (pure functions);
- :mod:`export_center.trivy.dbwriter`: ``trivy.db``, ``metadata.json`` and ``db.tar.gz``;
- :mod:`export_center.trivy.javadb`: ``trivy-java.db`` and ``javadb.tar.gz``;
- :mod:`export_center.trivy.artifact`: the two databases as Trivy's OCI artifacts (media types,
  tags, the image layout a bundle carries).

The format facts are in docs/trivy.md, "What Trivy reads".
"""
