#!/usr/bin/env bash
# Boot-storm benchmark (issue #9): `ironrack lab storm` at N = 100, 500,
# 1000 (and 2000 when 1000 had no failure), all nodes at once with 1 %
# packet loss; the TFTP stage alone against ironrack and dnsmasq (same
# simulated clients, same loss); the attestation stage alone with 5,000
# nodes. Full and attest-only storms boot FIRMWARE nodes (default mixed:
# half BIOS, half UEFI under the full uki chain); the TFTP comparison
# stays BIOS (dnsmasq is given undionly.kpxe only). Not a test. Writes the JSON reports and plots to docs/storm/
# (OUT=DIR to write elsewhere) and prints each report's table.
#
#   scripts/bench-storm.sh
#   SIZES="100 500" SKIP_TFTP=1 SKIP_ATTEST=1 scripts/bench-storm.sh
#   IPXE_DEB=/path/ipxe_*.deb scripts/bench-storm.sh
#   FIRMWARE=uefi SIZES=1000 NO_2000=1 SKIP_TFTP=1 SKIP_ATTEST=1 scripts/bench-storm.sh
#
# Needs root (namespaces). Uses a release build. Every storm removes its
# namespaces and server when it ends; nothing runs on the host's network.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-docs/storm}
SIZES=${SIZES:-"100 500 1000"}
LOSS=${LOSS:-1}
ROOTFS=${ROOTFS:-4194304}
TFTP_NODES=${TFTP_NODES:-1000}
ATTEST_NODES=${ATTEST_NODES:-5000}
FIRMWARE=${FIRMWARE:-mixed}
WORK=${WORK:-$(mktemp -d /tmp/bench-storm.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-storm.sh needs root (network namespaces)" >&2
  exit 1
fi
scripts/deps.sh
cargo build --release -q -p ironrack
bin=target/release/ironrack

if [ -z "${IPXE_DEB:-}" ]; then
  mkdir -p "$WORK/ipxe"
  (cd "$WORK/ipxe" && apt-get download -q ipxe >/dev/null)
  IPXE_DEB=$(ls "$WORK"/ipxe/ipxe_*.deb)
fi
mkdir -p "$OUT"

storm() { # NAME ARGS...: one storm, its JSON and plot under $OUT
  local name=$1
  shift
  echo "== $name: $*"
  # A failed node makes the command exit non-zero; the report is written
  # anyway and the benchmark goes on.
  "$bin" lab storm --ipxe-deb "$IPXE_DEB" --dir "$WORK/$name" \
    --rootfs-size "$ROOTFS" --json "$OUT/$name.json" --plot "$OUT/$name.svg" "$@" || true
  echo
}

failed() { # JSON: number of failed nodes
  python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["failures"]))' "$1"
}

for n in $SIZES; do
  storm "storm-$n" --nodes "$n" --loss "$LOSS" --timeout 600 --firmware "$FIRMWARE"
done
if [ "${NO_2000:-0}" != 1 ] && [[ " $SIZES " == *" 1000 "* ]] &&
  [ "$(failed "$OUT/storm-1000.json")" = 0 ]; then
  storm storm-2000 --nodes 2000 --loss "$LOSS" --timeout 900 --firmware "$FIRMWARE"
fi

if [ "${SKIP_TFTP:-0}" != 1 ]; then
  for server in ironrack dnsmasq; do
    storm "tftp-$server-$TFTP_NODES" --nodes "$TFTP_NODES" --loss "$LOSS" \
      --only tftp --tftp-server "$server" --timeout 600 --firmware bios
  done
fi

if [ "${SKIP_ATTEST:-0}" != 1 ]; then
  storm "attest-$ATTEST_NODES" --nodes "$ATTEST_NODES" --only attest --timeout 1200 \
    --firmware "$FIRMWARE"
fi

python3 - "$OUT" <<'EOF'
import json, pathlib, sys
print("| run | nodes | running | time to all running | p99 of slowest stage | server CPU s | peak RSS MiB |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.load(open(f))
    stages = [s for s in r["stages"] if s["nodes"]]
    worst = max(stages, key=lambda s: s["p99"]) if stages else None
    t = r["time_to_all_running"]
    print(f'| {f.stem} | {r["nodes"]} | {r["running"]} | {"-" if t is None else f"{t:.1f} s"} '
          f'| {worst["stage"] + " " + format(worst["p99"], ".2f") + " s" if worst else "-"} '
          f'| {r["server"]["cpu_seconds"]:.1f} | {r["server"]["peak_rss_bytes"] / 2**20:.0f} |')
EOF
