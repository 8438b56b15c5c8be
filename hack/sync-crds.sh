#!/usr/bin/env bash
# Copy the CRDs from crds/ (the single source) into the Helm chart, byte for byte.
# tests/integration/test_chart_render.py fails when the two differ; run this after editing crds/.
#   hack/sync-crds.sh          copy
#   hack/sync-crds.sh --check  exit 1 (and say which) if the chart's copy is stale
set -euo pipefail
cd "$(dirname "$0")/.."
dest=charts/paykube/crds
mode="${1:-copy}"
stale=0
for src in crds/*.yaml; do
  target="$dest/$(basename "$src")"
  if [ "$mode" = "--check" ]; then
    if ! cmp -s "$src" "$target"; then echo "stale: $target (run hack/sync-crds.sh)" >&2; stale=1; fi
  else
    mkdir -p "$dest"
    cp "$src" "$target"
    echo "copied $src -> $target"
  fi
done
# A CRD removed from crds/ must not linger in the chart.
for target in "$dest"/*.yaml; do
  [ -e "$target" ] || continue
  if [ ! -e "crds/$(basename "$target")" ]; then
    if [ "$mode" = "--check" ]; then echo "extra: $target" >&2; stale=1
    else rm -- "$target"; echo "removed $target"; fi
  fi
done
exit "$stale"
