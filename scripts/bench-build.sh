#!/usr/bin/env bash
# Benchmark: a root filesystem from the same local packages, built by
# mmdebstrap (--variant=custom --mode=root --format=tar, the merged-usr
# hook) and by ironrack's build pipeline, cold (empty stage cache: unpack,
# configure, normalise, tar, publish) and warm (same inputs under a new
# version: published from the stage cache). Both work in one tmpfs and
# read the same packages from it. Runs are interleaved so that a busy
# machine slows every tool alike; medians are printed.
#
# Usage: scripts/bench-build.sh [SET] [RUNS]
#   SET   image (default): bookworm's required set + usr-is-merged,
#         systemd-sysv, openssh-server, iputils-ping, kmod, busybox-static
#         required: bookworm's required set + usr-is-merged
#   RUNS  default 3
# Needs root, mmdebstrap, dpkg-dev (dpkg-scanpackages), apt (to download the
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

echo "== building the benchmark (cargo bench --no-run, release profile)"
bin=$(cargo bench -p ironrack-builder --bench build --no-run 2>&1 |
  sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not find the bench executable" >&2; exit 1; }

work=$(mktemp -d /var/tmp/ironrack-bench.XXXXXX)
mount -t tmpfs -o size=6g,mode=0755 tmpfs "$work"
cleanup() { cd /; umount "$work" 2>/dev/null || umount -l "$work"; rmdir "$work"; }
trap cleanup EXIT
mkdir "$work/repo" "$work/tmp"
cp "$debs"/*.deb "$work/repo/"
(cd "$work/repo" && dpkg-scanpackages -m . >Packages 2>/dev/null)
names=$(cd "$work/repo" && ls *.deb | cut -d_ -f1 | paste -sd,)

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
: >"$work/mm.times"; : >"$work/cold.times"; : >"$work/warm.times"

for run in $(seq "$runs"); do
  echo "== run $run/$runs (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  start=$(now)
  TMPDIR=$work/tmp SOURCE_DATE_EPOCH=1717200000 mmdebstrap --quiet --variant=custom --mode=root \
    --format=tar --include="$names" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    bookworm "$work/mmdebstrap.tar" "deb [trusted=yes] copy://$work/repo ./"
  mm=$(since "$start")
  echo "$mm" >>"$work/mm.times"
  echo "   mmdebstrap         $mm s ($(du -h "$work/mmdebstrap.tar" | cut -f1) tar)"
  rm -f "$work/mmdebstrap.tar"

  rm -rf "$work/ironrack"
  cold=$("$bin" "$work/repo" "$work/ironrack" cold)
  echo "$cold" | sed -n 's/.*"wall": \([0-9.]*\).*/\1/p' >>"$work/cold.times"
  echo "   ironrack cold      $cold"
  warm=$("$bin" "$work/repo" "$work/ironrack" warm)
  echo "$warm" | sed -n 's/.*"wall": \([0-9.]*\).*/\1/p' >>"$work/warm.times"
  echo "   ironrack warm      $warm"
done

mm=$(median <"$work/mm.times"); cold=$(median <"$work/cold.times"); warm=$(median <"$work/warm.times")
echo "== medians over $runs runs, $count packages ($set_name set)"
printf '   %-34s %8.2f s\n' "mmdebstrap --format=tar" "$mm" "ironrack build, cold cache" "$cold" \
  "ironrack build, warm cache" "$warm"
printf '   %-34s %8.2f\n' "cold / mmdebstrap" "$(awk -v a="$cold" -v b="$mm" 'BEGIN { print a / b }')"
