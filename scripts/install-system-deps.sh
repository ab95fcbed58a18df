#!/usr/bin/env bash
# Debian packages the test suite uses: PostgreSQL (scale-out store), SoftHSM2 (PKCS#11 signer),
# Go + bbolt sources (bbolt's own consistency check on our trivy.db), docker-registry + skopeo
# (OCI push and interop), dash + busybox (POSIX verify script), zstd + openssl (independent tools),
# faketime (pins the clock of the golden bundles' store), prometheus (promtool and the server:
# the deploy/ rules' tests and a real scrape of `stella serve`) + prometheus-node-exporter
# (its textfile collector carries the disconnected side's import metrics), chromium +
# chromium-driver (the web console's browser tests, headless).
set -euo pipefail
PKGS="postgresql faketime softhsm2 golang-go golang-github-coreos-bbolt-dev docker-registry skopeo dash busybox zstd openssl devscripts prometheus prometheus-node-exporter chromium chromium-driver"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
