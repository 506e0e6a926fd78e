#!/usr/bin/env bash
# zstd level for the initramfs: size and speed per level on the test
# initramfs (kernel 6.1.0-50 cloud module closure of the default drivers +
# busybox-static), measured by the zstd CLI (same library, one thread).
# The archive is written by the boot tests:
#   cargo test -p ironrack-builder --test boot uki_real
# Compare figures from one run only (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
cpio=target/tmp/boot-initramfs.cpio
[ -f "$cpio" ] || cargo test -q -p ironrack-builder --test boot uki_real::same_inputs_same_bytes
echo "input: $(stat -c %s "$cpio") bytes"
printf '%-6s %12s %10s\n' level bytes "MB/s"
for level in 1 3 6 9 12 15 17 19; do
  # `zstd -q -bN` prints: -N <bytes> (<ratio>) <compress> MB/s <decompress> MB/s <file>
  zstd -q -b"$level" -i2 "$cpio" 2>&1 | tr '\r' '\n' | grep -a 'MB/s' | tail -1 |
    awk -v l="$level" '{ printf "%-6s %12s %10s\n", l, $2, $4 }'
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
