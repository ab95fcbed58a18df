#!/usr/bin/env bash
# The main job on the embedded default (SQLite + filesystem under one data directory):
# ingest the project's own small demo evidence, show the store, export a signed json:raw bundle,
# verify it offline, and show that a tampered copy is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-$PWD/.demo}
STELLA=${STELLA_BIN:-stella}
rm -rf "$DEMO_DIR"
export STELLA_DATA_DIR="$DEMO_DIR"
step() { printf '\n== %s\n' "$*"; }

step "data directory: $DEMO_DIR (SQLite store: $DEMO_DIR/stella.db)"
step "ingest demo evidence (OSV JSON + YAML, OpenVEX, CycloneDX)"
"$STELLA" ingest demo/evidence/advisories --source demo-osv
"$STELLA" ingest demo/evidence/vex --source demo-vex
"$STELLA" ingest demo/evidence/sboms --source demo-sbom

step "what the store holds"
"$STELLA" evidence stats
"$STELLA" evidence show DEMO-2026-0001

step "a signing key (Ed25519) of the default tenant, and its public key for verifiers"
"$STELLA" keys generate --type ed25519 --format json > "$DEMO_DIR/key.json"
KEYID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keyid"])' "$DEMO_DIR/key.json")
"$STELLA" keys export-public "$KEYID" > "$DEMO_DIR/trusted-keys.pem"
echo "keyid $KEYID"

step "a json:raw profile, its plan, and a run"
"$STELLA" export profile create demo-raw --kind json --variant raw
"$STELLA" export plan demo-raw
"$STELLA" export run demo-raw --out "$DEMO_DIR/bundles"
ARCHIVE=$(ls "$DEMO_DIR"/bundles/*.tar.zst)

step "offline verification (every check, in order)"
"$STELLA" export verify "$ARCHIVE" --trust-roots "$DEMO_DIR/trusted-keys.pem" --tenant default
(cd "$(dirname "$ARCHIVE")" && sha256sum -c "$(basename "$ARCHIVE").sha256")

step "a tampered copy is refused (exit code 2)"
cp "$ARCHIVE" "$DEMO_DIR/tampered.tar.zst"
cp "$ARCHIVE.sha256" "$DEMO_DIR/tampered.tar.zst.sha256"
printf '\x00' | dd of="$DEMO_DIR/tampered.tar.zst" bs=1 seek=200 conv=notrunc status=none
set +e
"$STELLA" export verify "$DEMO_DIR/tampered.tar.zst" --trust-roots "$DEMO_DIR/trusted-keys.pem"
rc=$?
set -e
echo "exit code: $rc"
[ "$rc" -eq 2 ]

step "findings for the demo SBOM (policy overlay, default policy)"
"$STELLA" findings demo/evidence/sboms/demo-app.cdx.json || true

echo
echo "demo bundle: $ARCHIVE"

# Last, the REST service on the same data directory, with the demo profile and a token printed
# for curl / `stella export run ... --server`. DEMO_SERVE=0 stops here instead.
if [ "${DEMO_SERVE:-1}" = 1 ]; then
  step "the export service on http://127.0.0.1:${DEMO_PORT:-8080} (Ctrl-C to stop)"
  exec "$STELLA" serve --demo --port "${DEMO_PORT:-8080}"
fi
