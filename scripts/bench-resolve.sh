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

echo "== ironrack (cargo bench, release profile): ${request[*]}"
cargo bench -q -p ironrack-builder --bench resolve -- "$index" "$runs" "${request[@]}"

size=$(stat -c %s "$index")
sha=$(sha256sum "$index" | cut -d' ' -f1)
cat >"$work/repo/dists/bookworm/Release" <<REL
Suite: bookworm
Codename: bookworm
Date: Sat, 10 Jun 2023 00:00:00 UTC
Architectures: amd64
Components: main
SHA256:
 $sha $size main/binary-amd64/Packages
REL
apt=$work/apt
mkdir -p "$apt"/{conf.d,sources.d,prefs.d,state/lists/partial,cache/archives/partial}
: >"$apt/status"
echo "deb [trusted=yes] file:$work/repo bookworm main" >"$apt/sources.list"
cat >"$apt/apt.conf" <<CONF
Dir::Etc::Parts "$apt/conf.d";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.d";
Dir::Etc::PreferencesParts "$apt/prefs.d";
Dir::State "$apt/state";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
Dir::Cache::pkgcache "$apt/cache/pkgcache.bin";
Dir::Cache::srcpkgcache "$apt/cache/srcpkgcache.bin";
Debug::NoLocking "true";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
CONF
export APT_CONFIG=$apt/apt.conf LC_ALL=C
apt-get -qq update

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
