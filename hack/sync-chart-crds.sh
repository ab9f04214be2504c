#!/usr/bin/env bash
# Copy the CRDs (crds/, generated from the API models) into the Helm chart,
# byte for byte; with --check, change nothing and fail if the copies differ.
#
#   hack/sync-chart-crds.sh           # after `switchboard crds`
#   hack/sync-chart-crds.sh --check   # CI (make chart, tests/unit/test_chart.py)
#
# crds/ is the single source; helm/switchboard/files/crds/ is only a copy,
# rendered by templates/crds-customresourcedefinition.yaml.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="$root/crds"
chart_dir="$root/helm/switchboard/files/crds"

case "${1:-}" in
  --check)
    if ! diff -r "$source_dir" "$chart_dir" >/dev/null 2>&1; then
      diff -r "$source_dir" "$chart_dir" >&2 || true
      echo "helm/switchboard/files/crds/ differs from crds/; run hack/sync-chart-crds.sh and commit the result." >&2
      exit 1
    fi
    echo "helm/switchboard/files/crds/ matches crds/."
    ;;
  "")
    mkdir -p "$chart_dir"
    rm -f "$chart_dir"/*.yaml
    cp "$source_dir"/*.yaml "$chart_dir"/
    echo "Copied $(ls "$source_dir"/*.yaml | wc -l) CRDs into helm/switchboard/files/crds/."
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
