#!/usr/bin/env bash
# Benchmark: parse the full bookworm main Packages index (amd64, ~63k
# packages) with ironrack's parser, and time apt building its package cache
# from the same index (`apt-cache gencaches`, private apt state) beside it.
#
# Usage: scripts/bench-index.sh [RUNS]       (default 7)
# Needs the host's apt lists (`apt-get update`), lz4 if apt keeps them
# lz4-compressed, and apt. Prints timings; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}

source scripts/lib/bookworm-index.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bookworm_index "$work"

echo "== ironrack (cargo bench, release profile)"
cargo bench -q -p ironrack-builder --bench index -- "$index" "$runs"

echo "== apt $(apt-get --version | head -1 | cut -d' ' -f2): apt-cache gencaches on the same index"
private_apt "$work"
times=()
for _ in $(seq "$runs"); do
  rm -f "$apt"/cache/*.bin
  start=$(date +%s%N)
  apt-cache gencaches >/dev/null
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "apt-cache gencaches  median $(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p") ms  best $(echo "$sorted" | head -1) ms  (runs: ${times[*]})"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (compare figures from one run only)"
