#!/usr/bin/env bash
# The main job on the embedded default (SQLite + filesystem under one data directory):
# ingest the project's own small demo evidence and show what the store holds.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-$PWD/.demo}
STELLA=${STELLA_BIN:-stella}
rm -rf "$DEMO_DIR"
export STELLA_DATA_DIR="$DEMO_DIR"
echo "== data directory: $DEMO_DIR (SQLite store: $DEMO_DIR/stella.db)"
echo "== ingest demo evidence"
"$STELLA" ingest demo/evidence/advisories --source demo-osv
"$STELLA" ingest demo/evidence/vex --source demo-vex
"$STELLA" ingest demo/evidence/sboms --source demo-sbom
echo "== what the store holds"
"$STELLA" evidence stats
"$STELLA" evidence show DEMO-2026-0001
