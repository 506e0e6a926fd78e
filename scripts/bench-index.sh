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

lists=/var/lib/apt/lists
base=$lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/repo/dists/bookworm/main/binary-amd64"
index=$work/repo/dists/bookworm/main/binary-amd64/Packages
if [ -f "$base" ]; then cp "$base" "$index"
elif [ -f "$base.lz4" ]; then lz4 -dcq "$base.lz4" >"$index"
elif [ -f "$base.xz" ]; then xz -dc "$base.xz" >"$index"
elif [ -f "$base.gz" ]; then gzip -dc "$base.gz" >"$index"
else
  echo "no bookworm main Packages under $lists: run apt-get update" >&2
  exit 1
fi
echo "== index: $(grep -c '^Package:' "$index") packages, $(du -h "$index" | cut -f1)"

echo "== ironrack (cargo bench, release profile)"
cargo bench -q -p ironrack-builder --bench index -- "$index" "$runs"

echo "== apt $(apt-get --version | head -1 | cut -d' ' -f2): apt-cache gencaches on the same index"
size=$(stat -c %s "$index")
sha=$(sha256sum "$index" | cut -d' ' -f1)
cat >"$work/repo/dists/bookworm/Release" <<EOF
Suite: bookworm
Codename: bookworm
Date: Sat, 10 Jun 2023 00:00:00 UTC
Architectures: amd64
Components: main
SHA256:
 $sha $size main/binary-amd64/Packages
EOF
apt=$work/apt
mkdir -p "$apt"/{conf.d,sources.d,prefs.d,state/lists/partial,cache/archives/partial}
: >"$apt/status"
echo "deb [trusted=yes] file:$work/repo bookworm main" >"$apt/sources.list"
cat >"$apt/apt.conf" <<EOF
Dir::Etc::Parts "$apt/conf.d";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.d";
Dir::Etc::PreferencesParts "$apt/prefs.d";
Dir::State "$apt/state";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
Debug::NoLocking "true";
APT::Architecture "amd64";
APT::Sandbox::User "root";
Acquire::Languages "none";
EOF
export APT_CONFIG=$apt/apt.conf LC_ALL=C
apt-get -qq update
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
