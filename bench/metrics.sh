#!/usr/bin/env bash
# Throughput of edgeproxy with metrics on against metrics off, measured in one run on this
# machine: one demo backend, two proxies that differ only in the `metrics:` section, driven
# in turn by wrk in interleaved rounds (on, off, on, off, ...). Prints requests/s per round
# and the median ratio on/off. Only 127.0.0.1 is used.
#
#   bench/metrics.sh [ROUNDS] [SECONDS]      defaults: 5 rounds of 5 s
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-5}

scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --locked --bins -q

# shellcheck source=bench/lib.sh
source bench/lib.sh

backend=18101 on=18180 off=18181 metrics=19191
target/release/edgeproxy-demo --listen "127.0.0.1:$backend" --id 1 --threads 1 2>/dev/null &
pids+=($!)
for name in on off; do
  port=$([ "$name" = on ] && echo $on || echo $off)
  {
    echo "server: { listen: [\"127.0.0.1:$port\"], threads: 1, access_log: off }"
    [ "$name" = on ] && echo "metrics: { listen: \"127.0.0.1:$metrics\" }"
    echo "upstreams: { app: { servers: [ { addr: \"127.0.0.1:$backend\" } ] } }"
    echo "routes: [ { path: /, upstream: app } ]"
  } > "$work/$name.yaml"
  RUST_LOG=warn target/release/edgeproxy -c "$work/$name.yaml" &
  pids+=($!)
done
for port in $backend $on $off; do
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
done

rps() { wrk -t1 -c32 -d"${seconds}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
printf "round  metrics_on_rps  metrics_off_rps  on/off\n"
ratios=()
for round in $(seq "$rounds"); do
  a=$(rps $on); b=$(rps $off)
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')
  ratios+=("$ratio")
  printf "%5d  %14s  %15s  %6s\n" "$round" "$a" "$b" "$ratio"
done
sorted=$(printf "%s\n" "${ratios[@]}" | sort -n)
printf "on/off ratio: min %s, median %s, max %s\n" \
  "$(echo "$sorted" | head -1)" "$(echo "$sorted" | sed -n "$(( (rounds + 1) / 2 ))p")" "$(echo "$sorted" | tail -1)"
