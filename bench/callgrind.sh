#!/usr/bin/env bash
# Instructions per proxied keep-alive GET, counted by callgrind: the figure bench/README.md and
# patches/pingora/README.md quote for each patch. Counted instructions do not move with the
# load on a shared machine, where wrk's requests/s move by a fifth between runs, so two builds
# are told apart by this one first.
#
#   bench/callgrind.sh [BINARY ...]     default: target/release/edgeproxy
#
# Each binary runs under callgrind twice with bench/conf/edgeproxy.yaml in front of one nginx
# worker (`return 200`), once for SHORT and once for LONG GETs sent one after another over one
# keep-alive connection (ab -k -c 1); (instructions of the long run − those of the short run)
# / (LONG − SHORT) leaves start-up and shutdown out. The health checks (one a second) run in
# both and do not cancel out, so one build's figures differ by a few hundred. One line per
# binary:
#   BINARY<TAB>instructions per GET
# CALLGRIND_KEEP=DIR keeps the callgrind.out files there, for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
short=${SHORT:-200}
long=${LONG:-2200}
binaries=("$@")
((${#binaries[@]})) || binaries=(target/release/edgeproxy)
for tool in valgrind ab nginx curl; do
  command -v "$tool" >/dev/null || {
    echo "callgrind: $tool is missing (apt-get install valgrind apache2-utils nginx-light curl)" >&2
    exit 2
  }
done

keep=${CALLGRIND_KEEP:-}
# shellcheck source=bench/lib.sh
source bench/lib.sh

declare -A port=([b1]=18301 [b2]=18302 [sse]=18303 [edgeproxy]=18310 [metrics]=18313)
render() {
  sed -e "s|@WORK@|$work|g" -e "s|@PORT_B1@|${port[b1]}|g" -e "s|@PORT_B2@|${port[b2]}|g" \
    -e "s|@PORT_SSE@|${port[sse]}|g" -e "s|@PORT_EDGEPROXY@|${port[edgeproxy]}|g" \
    -e "s|@PORT_METRICS@|${port[metrics]}|g" "bench/conf/$1" >"$work/$1"
}
render backend-nginx.conf
render edgeproxy.yaml
nginx -p "$work" -e "$work/backend-error.log" -c "$work/backend-nginx.conf" &
pids+=($!)

# Waits until the proxy answers, the first request of every run (valgrind starts slowly).
wait_proxy() {
  for _ in $(seq 600); do
    curl -fs -o /dev/null -m 2 "http://127.0.0.1:${port[edgeproxy]}/" && return 0
    sleep 0.2
  done
  echo "callgrind: the proxy did not answer on port ${port[edgeproxy]}; see $work" >&2
  exit 1
}

# Instructions of one run of BINARY serving COUNT keep-alive GETs.
count() {
  local binary=$1 requests=$2 out=$work/callgrind.out.$2
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$binary" -c "$work/edgeproxy.yaml" 2>>"$work/valgrind.log" &
  local proxy=$!
  wait_proxy
  ab -q -k -c 1 -n "$requests" "http://127.0.0.1:${port[edgeproxy]}/" >"$work/ab.$requests" ||
    { echo "callgrind: ab failed, see $work/ab.$requests" >&2; exit 1; }
  grep -q "^Failed requests: *0" "$work/ab.$requests" ||
    { echo "callgrind: requests failed:" >&2; cat "$work/ab.$requests" >&2; exit 1; }
  kill -INT "$proxy"
  wait "$proxy" 2>/dev/null || true
  [ -z "$keep" ] || cp "$out" "$keep/$(basename "$binary").$requests.callgrind.out"
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

[ -z "$keep" ] || mkdir -p "$keep"
for binary in "${binaries[@]}"; do
  [ -x "$binary" ] || { echo "callgrind: $binary is not an executable" >&2; exit 2; }
  a=$(count "$binary" "$short")
  b=$(count "$binary" "$long")
  awk -v OFS='\t' -v n="$binary" -v a="$a" -v b="$b" -v d=$((long - short)) \
    'BEGIN {printf "%s\t%.0f\n", n, (b - a) / d}'
done
