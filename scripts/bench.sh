#!/usr/bin/env bash
# Runs every benchmark in bench/ (or those named: scripts/bench.sh ringbuf map-sync) and leaves
# one JSON document per benchmark in bench/results/. Each benchmark measures its peer in the
# same run; compare ratios, not absolute figures, across machines.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(ringbuf map-sync devcluster apiserver-watch lb)
names=("${@:-${all[@]}}")
for name in "${names[@]}"; do
  if [ ! -f "bench/$name.ts" ]; then
    echo "bench: no benchmark named $name (have: $(ls bench/*.ts | xargs -n1 basename | sed 's/\.ts$//' | grep -v -e report -e producer | tr '\n' ' '))" >&2
    exit 2
  fi
  echo "bench: $name" >&2
  node --import tsx "bench/$name.ts"
done
