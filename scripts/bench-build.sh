#!/usr/bin/env bash
# Benchmark: one root filesystem image from the same local mirror snapshot,
# made by mmdebstrap (--variant=custom --mode=root --format=tar, the
# merged-usr hook) then mksquashfs (zstd level 3, as ours), and by
# `ironrack build` (release binary): cold (empty stage cache: verify,
# unpack, configure, customise, normalise, squashfs, publish) and warm
# (the published version removed, same inputs: served from the stage
# cache). Everything lives in one tmpfs. Runs are interleaved so that a
# busy machine slows every tool alike; medians are printed.
#
# Usage: scripts/bench-build.sh [SET] [RUNS]
#   SET   image (default): bookworm's required set + usr-is-merged,
#         systemd-sysv, openssh-server, iputils-ping, kmod, busybox-static
#         required: bookworm's required set + usr-is-merged
#   RUNS  default 3
# Both install the same packages plus a generated stand-in kernel package
# (the spec needs one; the real kernel belongs to the kernel stage).
# Needs root, mmdebstrap, squashfs-tools, dpkg-deb, apt (to download the
# set once into target/bench-debs/SET). Prints timings; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
set_name=${1:-image}
runs=${2:-3}
case $set_name in
  required) extra=() ;;
  image) extra=(systemd-sysv openssh-server iputils-ping kmod busybox-static) ;;
  *) echo "unknown set $set_name (image or required)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "needs root (mmdebstrap --mode=root, ironrack's sandbox)" >&2; exit 1; }

debs=$PWD/target/bench-debs/$set_name
if [ ! -f "$debs/.complete" ]; then
  echo "== downloading the $set_name set with apt"
  rm -rf "$debs"; mkdir -p "$debs"
  : >"$debs/empty-status"
  apt-get -o "Dir::State::status=$debs/empty-status" -s -q install --no-install-recommends \
    '?priority(required)' usr-is-merged "${extra[@]}" |
    awk '/^Inst /{ gsub(/\(/, "", $3); print $2 "=" $3 }' >"$debs/wanted"
  (cd "$debs" && xargs -a wanted apt-get download -q >/dev/null)
  rm "$debs/empty-status" "$debs/wanted"
  touch "$debs/.complete"
fi
count=$(ls "$debs"/*.deb | wc -l)
echo "== $count packages, $(du -sh "$debs" | cut -f1) of .debs"

echo "== building ironrack (release)"
cargo build --release -q -p ironrack
ironrack=$PWD/target/release/ironrack

work=$(mktemp -d /var/tmp/ironrack-bench.XXXXXX)
mount -t tmpfs -o size=6g,mode=0755 tmpfs "$work"
cleanup() { cd /; umount "$work" 2>/dev/null || umount -l "$work"; rmdir "$work"; }
trap cleanup EXIT
cd "$work"
mkdir tmp images

# The stand-in kernel package.
release=6.1.0-0-bench-amd64
mkdir -p "kernel/DEBIAN" "kernel/usr/lib/modules/$release"
: >"kernel/usr/lib/modules/$release/modules.order"
cat >kernel/DEBIAN/control <<EOF
Package: linux-image-$release
Version: 6.1.4-1
Architecture: amd64
Maintainer: bench <bench@localhost>
Priority: optional
Description: stand-in kernel package for the build benchmark
EOF
dpkg-deb --root-owner-group -Zxz --build kernel "linux-image-${release}_6.1.4-1_amd64.deb" >/dev/null

echo "== a signed mirror snapshot of them, and a lock"
"$ironrack" keys generate site --dir keys >/dev/null
"$ironrack" mirror init mirror --name site >/dev/null
"$ironrack" mirror import mirror --key keys/site.key --suite bookworm \
  "$debs"/*.deb "linux-image-${release}_6.1.4-1_amd64.deb" >/dev/null
include=$(printf '"%s", ' usr-is-merged "${extra[@]}")
cat >images/bench.toml <<EOF
name = "bench"
channel = "stable"
version = 1
suite = "bookworm"

[mirror]
path = "../mirror"
snapshot = "site"

[packages]
base = "required"
include = [${include%, }]

[kernel]
package = "linux-image-$release"
release = "$release"

[rootfs]
formats = ["squashfs"]
EOF
"$ironrack" lock images/bench.toml --pub keys/site.pub
snapshot=$work/mirror/snapshots/$(cat mirror/refs/site)
names=$(awk '/^name = /{ gsub(/"/, "", $3); print $3 }' images/bench.lock | paste -sd,)

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
: >mm.times; : >cold.times; : >warm.times

for run in $(seq "$runs"); do
  echo "== run $run/$runs (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  start=$(now)
  TMPDIR=$work/tmp SOURCE_DATE_EPOCH=1717200000 mmdebstrap --quiet --variant=custom --mode=root \
    --format=tar --include="$names" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    bookworm "$work/mmdebstrap.tar" "deb [trusted=yes] copy://$snapshot bookworm main"
  mm_tar=$(since "$start")
  rm -rf mmroot; mkdir mmroot
  tar --xattrs --xattrs-include='*' --numeric-owner -xpf mmdebstrap.tar -C mmroot
  sq_start=$(now)
  mksquashfs mmroot mmdebstrap.squashfs -quiet -no-progress -comp zstd -Xcompression-level 3 \
    -mkfs-time 1717200000 -all-time 1717200000 >/dev/null
  mm_sq=$(since "$sq_start")
  mm=$(awk -v a="$mm_tar" -v b="$mm_sq" 'BEGIN { printf "%.2f", a + b }')
  echo "$mm" >>mm.times
  echo "   mmdebstrap + mksquashfs  $mm s (tar $mm_tar s, $(du -h mmdebstrap.tar | cut -f1);" \
    "mksquashfs $mm_sq s, $(du -h mmdebstrap.squashfs | cut -f1))"
  rm -rf mmroot mmdebstrap.tar mmdebstrap.squashfs

  rm -rf out
  start=$(now)
  "$ironrack" build images/bench.toml --pub keys/site.pub --out out --json >cold.json
  cold=$(since "$start")
  echo "$cold" >>cold.times
  echo "   ironrack build, cold     $cold s ($(du -h out/bench/1/rootfs.squashfs | cut -f1) squashfs;" \
    "$(python3 -c 'import json, sys; print(", ".join("%s %.2f s" % (s["stage"], s["seconds"]) for s in json.load(sys.stdin)["stages"]))' <cold.json))"
  rm -rf out/bench
  start=$(now)
  "$ironrack" build images/bench.toml --pub keys/site.pub --out out --json >warm.json
  warm=$(since "$start")
  echo "$warm" >>warm.times
  echo "   ironrack build, warm     $warm s"
done

mm=$(median <mm.times); cold=$(median <cold.times); warm=$(median <warm.times)
echo "== medians over $runs runs, $((count + 1)) packages ($set_name set)"
printf '   %-34s %8.2f s\n' "mmdebstrap --format=tar + mksquashfs" "$mm" \
  "ironrack build, cold cache" "$cold" "ironrack build, warm cache" "$warm"
printf '   %-34s %8.2f\n' "cold / mmdebstrap" "$(awk -v a="$cold" -v b="$mm" 'BEGIN { print a / b }')"
