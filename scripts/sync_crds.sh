#!/usr/bin/env bash
# Copy the CRDs from their one source of truth (manifests/crds) into the chart (charts/modelops/crds).
#   scripts/sync_crds.sh          copy
#   scripts/sync_crds.sh --check  exit 1 if the chart's copies differ (tests/charts checks the same)
set -euo pipefail
cd "$(dirname "$0")/.."
src=manifests/crds dst=charts/modelops/crds
if [[ "${1:-}" == "--check" ]]; then
  diff -r "$src" "$dst" && echo "chart CRDs are in sync with $src"
  exit
fi
mkdir -p "$dst"
rm -f "$dst"/*.yaml
cp "$src"/*.yaml "$dst"/
echo "copied $(ls "$src"/*.yaml | wc -l) CRDs from $src to $dst"
