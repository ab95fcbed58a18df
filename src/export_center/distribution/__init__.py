"""Moving bundles between places: publishing them (a registry, an OCI layout) and opening
them wherever they come from (an archive, a directory, an OCI layout, a registry).

- :mod:`.push`: a bundle as one OCI artifact to a registry (``stella export push``, the
  worker's automatic push);
- :mod:`.trivy`: a Trivy bundle verified, then Trivy's own artifact pushed; the one way a Trivy
  bundle is opened (push and ``airgap trivy-install``);
- :mod:`.source`: a private copy of a bundle from wherever it is, for verification.

Below it, :mod:`export_center.oci` is transport only (the image layout format, the registry
client); above it, :mod:`export_center.importer` verifies and applies what was opened.
"""
