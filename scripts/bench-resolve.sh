#!/usr/bin/env bash
# Benchmark: parse the full bookworm main Packages index (amd64) and
# resolve a ~300-package closure with ironrack's resolver, beside
# `apt-get -s install --no-install-recommends` on the same index with an
# empty dpkg status: apt cold (no binary cache: it builds it from the
# index, as our resolver reads the index every time) and warm (its
# pkgcache.bin already built).
#
# Usage: scripts/bench-resolve.sh [RUNS]       (default 7)
# Needs the host's apt lists (`apt-get update`), lz4 if apt keeps them
# lz4-compressed, and apt. Prints timings; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}

# Required set + what a general-purpose server adds: ~300 packages.
request=(base=required openssh-server systemd-sysv udev kmod iproute2 python3 curl
         gnupg git make gcc sudo rsync less vim-tiny ca-certificates build-essential
         man-db lsof tmux jq htop python3-venv apparmor cron rsyslog logrotate
         nftables chrony lvm2 mdadm parted xfsprogs nfs-common dbus-user-session
         policykit-1 python3-yaml python3-requests)

source scripts/lib/bookworm-index.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bookworm_index "$work"

echo "== ironrack (cargo bench, release profile): ${request[*]}"
cargo bench -q -p ironrack-builder --bench resolve -- "$index" "$runs" "${request[@]}"

private_apt "$work"

# apt is given the same names: the base set as ironrack computes it
# (candidates with Priority: required), then the rest, in order.
names=()
for r in "${request[@]}"; do
  if [ "$r" = base=required ]; then
    mapfile -t req < <(awk '/^Package:/{p=$2} /^Priority: required/{print p}' "$index" | sort -u)
    names+=("${req[@]}")
  else
    names+=("$r")
  fi
done
count=$(apt-get -s install --no-install-recommends "${names[@]}" | grep -c '^Inst ')
echo "== apt $(apt-get --version | head -1 | cut -d' ' -f2): apt-get -s install, closure: $count packages"

median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
best() { printf '%s\n' "$@" | sort -n | head -1; }
# Wall and CPU (user + system) milliseconds of one apt-get run.
TIMEFORMAT='%3R %3U %3S'
for mode in cold warm; do
  wall=() cpu=()
  for _ in $(seq "$runs"); do
    [ "$mode" = cold ] && rm -f "$apt"/cache/*.bin
    read -r r u s < <({ time apt-get -s install --no-install-recommends "${names[@]}" >/dev/null; } 2>&1)
    wall+=($(awk -v r="$r" 'BEGIN{printf "%d", r*1000}'))
    cpu+=($(awk -v u="$u" -v s="$s" 'BEGIN{printf "%d", (u+s)*1000}'))
  done
  echo "apt-get -s, $mode cache   wall median $(median "${wall[@]}") ms  best $(best "${wall[@]}") ms  cpu median $(median "${cpu[@]}") ms"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (compare figures from one run only)"
