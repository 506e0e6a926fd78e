#!/usr/bin/env bash
# HTTP benchmark: `ironrack serve` vs nginx (sendfile on), same client
# (one curl process with --parallel), same machine, one run side by side.
# Not a test: it prints a markdown table of medians and the load average.
#
#   scripts/bench-http.sh            # RUNS=3 by default
#   RUNS=5 scripts/bench-http.sh
#   SERVERS="ironrack-fd nginx" scripts/bench-http.sh   # a subset
#
# Rows: 200 concurrent x 1 MiB, 16 concurrent x 64 MiB, 1 x 64 MiB.
# ironrack serves a signed test image (pxe/examples/test-image.rs): once
# with its artifacts verified into memory (the default for files under
# [http] memory-cache-bytes), once from the verified open files
# (memory-cache-bytes = 0: chunked pread on the blocking pool).
#
# Isolation: a network namespace this script makes, with a portless bridge
# interface holding 198.18.0.1/24 (test range only); all traffic stays in
# it. nginx runs in the foreground with a config written here (no site
# config of the host is read). Needs root and the Debian packages curl
# and nginx-light (or nginx).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
[ "$(id -u)" -eq 0 ] || { echo "bench-http: needs root (network namespace)" >&2; exit 1; }
for tool in curl nginx ip; do
  command -v "$tool" >/dev/null || { echo "bench-http: $tool missing: apt-get install curl nginx-light iproute2" >&2; exit 1; }
done

cargo build --release -q --bin ironrack
cargo build --release -q -p ironrack-pxe --features testkit --example test-image
IRONRACK=$PWD/target/release/ironrack
TEST_IMAGE=$PWD/target/release/examples/test-image

NS=ironrack-bhttp-$$
WORK=$(mktemp -d /dev/shm/bench-http.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
# A bridge with no ports: the kernel here has no dummy interface type.
ip -n "$NS" link add bench0 type bridge
ip -n "$NS" addr add 198.18.0.1/24 dev bench0
ip -n "$NS" link set bench0 up
in_ns() { ip netns exec "$NS" "$@"; }

mkdir -p "$WORK/src" "$WORK/www"
head -c $((64 << 20)) /dev/urandom >"$WORK/src/big.img"
head -c $((1 << 20)) /dev/urandom >"$WORK/src/small.img"
cp "$WORK/src/"*.img "$WORK/www/"
chmod -R a+rX "$WORK"
"$TEST_IMAGE" "$WORK/ir" bench 1 "" "$WORK/src/big.img" "$WORK/src/small.img" 2>/dev/null

site() { # $1 = memory-cache-bytes
  cat >"$WORK/ir/site.toml" <<TOML
[server]
http-base-url = "http://198.18.0.1:8080"
database = "state.db"
[images]
dirs = ["out"]
trust-root = "trust.json"
[dhcp]
mode = "proxy"
[[interface]]
name = "bench0"
address = "198.18.0.1/24"
[tftp]
listen = "198.18.0.1:6969"
[http]
memory-cache-bytes = $1
max-connections = 4096
TOML
}

cat >"$WORK/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  server { listen 198.18.0.1:8081; root $WORK/www; }
}
NGINX

start() { # name -> sets SERVER_PID, URL
  case $1 in
    ironrack-memory|ironrack-fd)
      [ "$1" = ironrack-memory ] && site $((256 << 20)) || site 0
      # Not through the in_ns function: its subshell would be $!, and
      # killing that leaves the server running. `ip netns exec` execs.
      ip netns exec "$NS" "$IRONRACK" serve --site "$WORK/ir/site.toml" 2>"$WORK/ironrack.log" &
      SERVER_PID=$!; URL=http://198.18.0.1:8080/images/bench/1 ;;
    nginx)
      ip netns exec "$NS" nginx -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx.log" &
      SERVER_PID=$!; URL=http://198.18.0.1:8081 ;;
  esac
  PIDS+=("$SERVER_PID")
  for _ in $(seq 100); do
    in_ns curl -s -o /dev/null --max-time 1 "$URL/small.img" && return
    sleep 0.1
  done
  echo "bench-http: $1 did not start" >&2; exit 1
}
stop() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

now() { date +%s.%N; }

# $1 url, $2 count, $3 expected size -> "seconds failures"
fetch() {
  local args=() i t0 t1 failed
  for i in $(seq "$2"); do args+=(-o /dev/null "$1"); done
  t0=$(now)
  in_ns curl -s --parallel --parallel-immediate --parallel-max "$2" \
    -w '%{http_code} %{size_download}\n' "${args[@]}" >"$WORK/fetch.out" 2>&1 || true
  t1=$(now)
  failed=$(( $2 - $(grep -c -x "200 $3" "$WORK/fetch.out" || true) ))
  echo "$(echo "$t1 - $t0" | bc -l) $failed"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "-"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }

read -r -a SERVERS <<<"${SERVERS:-ironrack-memory ironrack-fd nginx}"
ROWS=("200 x 1 MiB|small.img|200|$((1 << 20))" "16 x 64 MiB|big.img|16|$((64 << 20))" "1 x 64 MiB|big.img|1|$((64 << 20))")
declare -A RESULT FAILS
for s in "${SERVERS[@]}"; do FAILS[$s]=0; done
LOADS=()
for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
  for s in "${SERVERS[@]}"; do
    start "$s"
    for row in "${ROWS[@]}"; do
      IFS='|' read -r label file count size <<<"$row"
      read -r t failed < <(fetch "$URL/$file" "$count" "$size")
      echo "   $s $label: $t s, $failed failed" >&2
      RESULT["$s|$label"]+="$t "
      FAILS[$s]=$((FAILS[$s] + failed))
    done
    stop
  done
done

fmt() { local v; v=$(tr ' ' '\n' <<<"${RESULT[$1]:-}" | grep . | median); [ "$v" = - ] && echo - || printf '%.3f s' "$v"; }
echo
echo "HTTP, curl $(curl --version | awk 'NR==1{print $2}') --parallel, nginx $(nginx -v 2>&1 | sed 's|.*/||'), private namespace, median of $RUNS runs; 1-min load at each run: ${LOADS[*]}"
echo
declare -A TITLE=([ironrack-memory]="ironrack (memory)" [ironrack-fd]="ironrack (verified fd)" [nginx]="nginx (sendfile)")
printf '| row |'; for s in "${SERVERS[@]}"; do printf ' %s |' "${TITLE[$s]}"; done; echo
printf '| --- |'; for s in "${SERVERS[@]}"; do printf ' --- |'; done; echo
for row in "${ROWS[@]}"; do
  IFS='|' read -r label _ <<<"$row"
  printf '| %s |' "$label"
  for s in "${SERVERS[@]}"; do printf ' %s |' "$(fmt "$s|$label")"; done
  echo
done
printf '| failed transfers (all rows, all runs) |'
for s in "${SERVERS[@]}"; do printf ' %s |' "${FAILS[$s]}"; done
echo
