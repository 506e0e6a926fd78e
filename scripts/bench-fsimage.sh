#!/usr/bin/env bash
# Benchmark: ironrack's SquashFS writer against mksquashfs (squashfs-tools)
# on the same Debian root tree: zstd level 3 and 15, 128 KiB blocks, xattrs
# kept, fixed times; ours with 1 and 2 threads, mksquashfs with 1 and all
# processors; and our uncompressed EROFS writer against mkfs.erofs
# (erofs-utils) uncompressed. Warm page cache; median wall time and CPU
# time of RUNS runs, image size.
#
# Usage: scripts/bench-fsimage.sh [ROOT] [RUNS]       (RUNS default 3)
# Without ROOT, builds one with `mmdebstrap --variant=minbase --mode=root`
# (needs root, mmdebstrap and the Debian archive). Our timing covers the
# whole write_dir call: walk, compression, fsync, rename and the sha256 of
# the image; mksquashfs does not fsync. Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-}
runs=${2:-3}
epoch=1700000000

work=$(mktemp -d /var/tmp/bench-fsimage.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -z "$root" ]; then
  root=$work/root
  echo "== building a minbase tree with mmdebstrap (bookworm)" >&2
  mmdebstrap --quiet --variant=minbase --mode=root --include=iputils-ping bookworm "$root" >&2
fi
command -v mksquashfs >/dev/null || { echo "mksquashfs missing: apt-get install squashfs-tools" >&2; exit 1; }
echo "== tree: $root: $(du -sh --apparent-size "$root" | cut -f1), $(find "$root" | wc -l) entries"

# The bench binary itself, so both writers are timed the same way (bash's
# `time`: wall, user and system seconds of the whole process).
bench=$(cargo bench -p ironrack-builder --bench squashfs --no-run 2>&1 |
  sed -n 's/.*Executable.*(\(.*\)).*/\1/p' | tail -1)
[ -x "$bench" ] || { echo "could not build the squashfs bench" >&2; exit 1; }
TIMEFORMAT='%R %U %S'
# Prints "median-wall median-cpu" of the runs of a command.
measure() {
  local samples=()
  for _ in $(seq "$runs"); do
    samples+=("$({ time "$@" >/dev/null 2>&1; } 2>&1 | tail -1)")
  done
  printf '%s\n' "${samples[@]}" | awk '{print $1, $2 + $3}' | sort -n |
    awk '{w[NR]=$1; c[NR]=$2} END {m=int((NR+1)/2); printf "%.2f %.2f\n", w[m], c[m]}'
}

printf '%-36s %9s %9s %12s\n' writer wall-s cpu-s bytes
for level in 3 15; do
  for threads in 1 2; do
    out=$work/ours.squashfs
    read -r wall cpu < <(measure "$bench" "$root" "$out" "$level" "$threads" 1)
    printf '%-36s %9s %9s %12s\n' "ironrack zstd-$level threads=$threads" "$wall" "$cpu" "$(stat -c %s "$out")"
  done
  for procs in 1 2; do
    out=$work/mksquashfs.squashfs
    read -r wall cpu < <(measure mksquashfs "$root" "$out" -noappend -no-progress -comp zstd \
      -Xcompression-level "$level" -b 131072 -all-time "$epoch" -mkfs-time "$epoch" -processors "$procs")
    printf '%-36s %9s %9s %12s\n' "mksquashfs zstd-$level processors=$procs" "$wall" "$cpu" "$(stat -c %s "$out")"
  done
done
if command -v mkfs.erofs >/dev/null; then
  out=$work/ours.erofs
  read -r wall cpu < <(measure "$bench" "$root" "$out" erofs 1 1)
  printf '%-36s %9s %9s %12s\n' "ironrack erofs uncompressed" "$wall" "$cpu" "$(stat -c %s "$out")"
  out=$work/mkfs.erofs
  read -r wall cpu < <(measure mkfs.erofs -T "$epoch" -U 00000000-0000-0000-0000-000000000000 "$out" "$root")
  printf '%-36s %9s %9s %12s\n' "mkfs.erofs uncompressed" "$wall" "$cpu" "$(stat -c %s "$out")"
fi
