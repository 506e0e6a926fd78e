#!/usr/bin/env bash
# TFTP benchmark: `ironrack serve` vs tftpd-hpa and dnsmasq, same client
# (curl), same machine, one run side by side. Not a test: it prints a
# markdown table of medians.
#
#   scripts/bench-tftp.sh            # RUNS=3 by default
#   RUNS=5 scripts/bench-tftp.sh
#   BIG=0 RUNS=5 scripts/bench-tftp.sh   # the storm row only
#   SERVERS="ironrack dnsmasq" scripts/bench-tftp.sh   # a subset
#
# Rows: a 64 MiB file at blksize 512 and 1468, each pinned to one CPU
# (server and client share it), pinned split (server CPU 0, client CPU 1)
# and unpinned (loopback TFTP speed depends mostly on that: facts.md); and
# a storm of 200 concurrent curl clients fetching a 1 MiB file (unpinned,
# curl's default blksize 512), with the CPU time each server spent on it.
#
# Isolation: everything runs inside a network namespace this script makes
# (loopback only) because dnsmasq's TFTP listens on port 69 with no option
# to move it. dnsmasq runs with --port=0 (no DNS), no dhcp-range (no DHCP)
# and --conf-file=/dev/null, so it never touches the host's DNS/DHCP.
# Servers, namespace and files are removed on exit.
#
# Needs root (namespaces), and the Debian packages curl, tftpd-hpa and
# dnsmasq-base (binary only, no service). Installing tftpd-hpa may start
# its service on the host's port 69 unless policy-rc.d forbids it; this
# script never uses that service.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
BIG=${BIG:-1}
STORM=${STORM:-200}
[ "$(id -u)" -eq 0 ] || { echo "bench-tftp: needs root (network namespace)" >&2; exit 1; }
for tool in curl in.tftpd dnsmasq taskset ip; do
  command -v "$tool" >/dev/null || {
    echo "bench-tftp: $tool missing: apt-get install curl tftpd-hpa dnsmasq-base iproute2 util-linux" >&2
    exit 1
  }
done

cargo build --release -q --bin ironrack
IRONRACK=$PWD/target/release/ironrack

NS=ironrack-bench-$$
WORK=$(mktemp -d /dev/shm/bench-tftp.XXXXXX)
ROOT=$WORK/root
mkdir -p "$ROOT"
chmod 755 "$WORK" "$ROOT"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  [ -z "$CGROUP" ] || rmdir "$CGROUP" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
# tftpd-hpa resolves its bind address with AI_ADDRCONFIG, which fails when
# the namespace has no non-loopback IPv4 address: give it one from the test
# range (198.18.0.0/15) on a veth pair whose both ends stay inside the
# namespace. No traffic goes there; all runs use lo.
ip -n "$NS" link add bench0 type veth peer name bench1
ip -n "$NS" addr add 198.18.0.1/24 dev bench0
ip -n "$NS" link set bench0 up
ip -n "$NS" link set bench1 up
in_ns() { ip netns exec "$NS" "$@"; }

head -c $((64 << 20)) /dev/urandom >"$ROOT/big.img"
head -c $((1 << 20)) /dev/urandom >"$ROOT/storm.img"
chmod 644 "$ROOT"/*

declare -A PORT=([ironrack]=6970 [tftpd-hpa]=6969 [dnsmasq]=69)
read -r -a SERVERS <<<"${SERVERS:-ironrack tftpd-hpa dnsmasq}"

# Starts one server pinned to CPU list $2 ("" = unpinned); sets SERVER_PID.
# setsid makes it a process group of its own (setsid, ip netns exec and
# taskset all exec), so stopping it also stops tftpd-hpa's forked children.
start_server() {
  local name=$1 cpus=$2 pin=(setsid ip netns exec "$NS")
  [ -n "$cpus" ] && pin+=(taskset -c "$cpus")
  case $name in
    ironrack)
      # The whole service (DHCP in proxy mode on bench0, TFTP, HTTP), as
      # deployed. All clients are 127.0.0.1 here: lift the per-client
      # bounds that protect a real site (each node has its own address).
      cat >"$WORK/site.toml" <<TOML
[server]
http-base-url = "http://198.18.0.1:8080"
database = "$WORK/state.db"
[images]
dirs = []
trust-root = "$WORK/trust.json"
[dhcp]
mode = "proxy"
[[interface]]
name = "bench0"
address = "198.18.0.1/24"
[tftp]
root = "$ROOT"
listen = "127.0.0.1:${PORT[ironrack]}"
max-sessions = 1024
per-client-sessions = 1024
per-client-requests-per-second = 0
TOML
      "${pin[@]}" "$IRONRACK" serve --site "$WORK/site.toml" 2>"$WORK/ironrack.log" &
      ;;
    tftpd-hpa)
      "${pin[@]}" in.tftpd -L -a "127.0.0.1:${PORT[tftpd-hpa]}" -s "$ROOT" \
        2>"$WORK/tftpd-hpa.log" &
      ;;
    dnsmasq)
      "${pin[@]}" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
        --no-resolv --no-hosts --pid-file= --interface=lo --bind-interfaces \
        --enable-tftp --tftp-root="$ROOT" --tftp-max=1024 --quiet-tftp \
        --log-facility="$WORK/dnsmasq.log" &
      ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  [ -z "$CGROUP" ] || echo "$SERVER_PID" >"$CGROUP/cgroup.procs"
  # Ready when a request for a missing file gets curl's "file not found" (68).
  local rc
  for _ in $(seq 50); do
    rc=0
    in_ns curl -s -o /dev/null --max-time 0.5 "tftp://127.0.0.1:${PORT[$name]}/missing" || rc=$?
    [ "$rc" -eq 68 ] && break
    sleep 0.1
  done
  [ "$rc" -eq 68 ] || { echo "bench-tftp: $name did not start (curl exit $rc)" >&2; exit 1; }
  sleep 0.2
}

stop_server() {
  kill -- "-$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

now() { date +%s.%N; }

# CPU seconds a server and every process it forks have used: each server
# runs in a cgroup of its own (tftpd-hpa forks per transfer, and its
# children are not in the parent's /proc times). cgroup v2 or v1 cpuacct.
CGROUP=
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CGROUP=/sys/fs/cgroup/ironrack-bench-$$
elif [ -d /sys/fs/cgroup/cpuacct ]; then
  CGROUP=/sys/fs/cgroup/cpuacct/ironrack-bench-$$
fi
[ -z "$CGROUP" ] || mkdir "$CGROUP" 2>/dev/null || CGROUP=
cpu_seconds() {
  if [ -z "$CGROUP" ]; then echo 0
  elif [ -f "$CGROUP/cpu.stat" ]; then awk '$1 == "usage_usec" {print $2 / 1e6}' "$CGROUP/cpu.stat"
  else awk '{print $1 / 1e9}' "$CGROUP/cpuacct.usage"; fi
}

# One 64 MiB fetch; prints seconds, or FAIL.
fetch_big() {
  local name=$1 blksize=$2 client_cpus=$3 pin=() out=$WORK/out.img t0 t1
  [ -n "$client_cpus" ] && pin=(taskset -c "$client_cpus")
  rm -f "$out"
  t0=$(now)
  if in_ns "${pin[@]}" curl -sS --tftp-blksize "$blksize" -o "$out" \
    "tftp://127.0.0.1:${PORT[$name]}/big.img" 2>>"$WORK/curl.err"; then
    t1=$(now)
    if cmp -s "$out" "$ROOT/big.img"; then
      echo "$t1 - $t0" | bc -l
      return
    fi
  fi
  echo FAIL
}

# One storm; prints "seconds failures".
storm() {
  local name=$1 t0 t1 failed
  rm -rf "$WORK/storm" && mkdir "$WORK/storm"
  t0=$(now)
  in_ns bash -c '
    for i in $(seq '"$STORM"'); do
      ( curl -sS -o /dev/null -w "%{size_download}\n" --max-time 120 \
          "tftp://127.0.0.1:'"${PORT[$name]}"'/storm.img" >"'"$WORK"'/storm/$i" 2>&1 \
        || echo "exit $?" >>"'"$WORK"'/storm/$i" ) &
    done
    wait'
  t1=$(now)
  failed=$(grep -L -x "$((1 << 20))" "$WORK"/storm/* | wc -l)
  echo "$(echo "$t1 - $t0" | bc -l) $failed"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "-"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }

declare -A RESULT FAILS
for name in "${SERVERS[@]}"; do FAILS[$name]=0; done

# pin label -> "server cpus|client cpus"
declare -A PIN=([same-CPU]="0|0" [split]="0|1" [unpinned]="|")
PIN_ORDER=(same-CPU split unpinned)

for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS" >&2
  for pin in "${PIN_ORDER[@]}"; do
    [ "$BIG" = 1 ] || break
    IFS='|' read -r scpu ccpu <<<"${PIN[$pin]}"
    for name in "${SERVERS[@]}"; do
      start_server "$name" "$scpu"
      for blksize in 512 1468; do
        t=$(fetch_big "$name" "$blksize" "$ccpu")
        echo "   $name 64MiB blksize $blksize $pin: $t" >&2
        if [ "$t" = FAIL ]; then FAILS[$name]=$((FAILS[$name] + 1)); else RESULT["$name|$blksize|$pin"]+="$t "; fi
      done
      stop_server
    done
  done
  for name in "${SERVERS[@]}"; do
    start_server "$name" ""
    cpu0=$(cpu_seconds)
    read -r t failed < <(storm "$name")
    cpu=$(echo "$(cpu_seconds) - $cpu0" | bc -l)
    echo "   $name storm $STORM x 1MiB: $t s, server CPU $cpu s, $failed failed" >&2
    RESULT["$name|storm"]+="$t "
    [ -z "$CGROUP" ] || RESULT["$name|storm-cpu"]+="$cpu "
    FAILS[$name]=$((FAILS[$name] + failed))
    stop_server
  done
done

fmt() { local v; v=$(tr ' ' '\n' <<<"${RESULT[$1]:-}" | grep . | median); [ "$v" = - ] && echo - || printf '%.2f s' "$v"; }

echo
echo "TFTP, curl $(curl --version | awk 'NR==1{print $2}'), loopback in a private namespace, median of $RUNS runs"
echo
printf '| row |'; for name in "${SERVERS[@]}"; do printf ' %s |' "$name"; done; echo
printf '| --- |'; for name in "${SERVERS[@]}"; do printf ' --- |'; done; echo
for blksize in 512 1468; do
  for pin in "${PIN_ORDER[@]}"; do
    printf '| 64 MiB, blksize %s, %s |' "$blksize" "$pin"
    for name in "${SERVERS[@]}"; do printf ' %s |' "$(fmt "$name|$blksize|$pin")"; done
    echo
  done
done
printf '| %s concurrent x 1 MiB (blksize 512) |' "$STORM"
for name in "${SERVERS[@]}"; do printf ' %s |' "$(fmt "$name|storm")"; done
echo
printf '| server CPU (user + system) in that storm |'
for name in "${SERVERS[@]}"; do printf ' %s |' "$(fmt "$name|storm-cpu")"; done
echo
printf '| failed transfers (all rows, all runs) |'
for name in "${SERVERS[@]}"; do printf ' %s |' "${FAILS[$name]}"; done
echo
