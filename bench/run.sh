#!/usr/bin/env bash
# edgeproxy against nginx and HAProxy, measured in one run on this machine. The same two
# fast backends (one nginx worker, `return 200`) and the same demo backend for SSE sit
# behind all the proxies, each with one worker and its access log off; wrk drives them in
# interleaved rounds (edgeproxy, nginx, HAProxy, bare Pingora, edgeproxy, ...). Bare Pingora
# (examples/bare_pingora.rs: round robin and nothing else, on edgeproxy's runtime settings)
# separates what Pingora costs from what edgeproxy's own work costs. Per run it records
# requests/s, p50/p99/p99.9 latency, CPU seconds of the proxy's process per 10k requests and
# its peak RSS (since the scenario started); bench/summarize.py turns that into medians and
# ratios (min, median, max over rounds). Only 127.0.0.1 is used.
#
#   bench/run.sh [ROUNDS] [SECONDS]          defaults: 3 rounds of 5 s per wrk run
#   SCENARIOS="small close" bench/run.sh     a subset of: small many big close sse spike
#   BASELINE=FILE bench/run.sh               also run FILE, an earlier edgeproxy build, with
#                                            the same config in the same rounds (A/B)
#   MANY_CONNECTIONS=6000 bench/run.sh       many at fewer connections, for a host whose
#                                            open-file limit is below 30,100 (default 10000)
#   BASELINE_CONFIG=FILE                     with BASELINE, a config template of its own in
#                                            place of bench/conf/edgeproxy.yaml (to A/B a
#                                            setting with one build: BASELINE=target/release/edgeproxy)
#
# Scenarios: small (GET /, keep-alive, 32 connections), many (10,000 concurrent
# connections), big (1 MiB responses, 8 connections), close (a new connection per request,
# 32 at a time), sse (1,000 open event streams: memory per stream; bare Pingora has no
# event-stream route and sits this one out).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
scenarios=${SCENARIOS:-small many big close sse}
many_connections=${MANY_CONNECTIONS:-10000}
# spike (seed 002's POST /models at 8,000 connections through uvicorn backends, against
# nginx) has backends and proxies of its own: bench/spike/run.sh, run first, on its own ports.
if [[ " $scenarios " == *" spike "* ]]; then
  bench/spike/run.sh "$rounds" "$((seconds * 2))"
  scenarios=$(echo " $scenarios " | sed 's/ spike / /')
  [ -n "${scenarios// /}" ] || exit 0
fi
proxies=(edgeproxy nginx haproxy pingora)
baseline=${BASELINE:-}
if [ -n "$baseline" ]; then
  [ -x "$baseline" ] || { echo "bench: BASELINE=$baseline is not an executable" >&2; exit 2; }
  baseline_config=${BASELINE_CONFIG:-bench/conf/edgeproxy.yaml}
  [ -f "$baseline_config" ] || { echo "bench: BASELINE_CONFIG=$baseline_config is not a file" >&2; exit 2; }
  proxies+=(baseline)
fi

scripts/setup.sh
missing=()
for tool in wrk nginx haproxy python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  packages=("${missing[@]/nginx/nginx-light}")
  echo "bench: installing ${packages[*]}" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi
cargo build --release --locked --bins --example bare_pingora -q
# 10,000 client connections need as many descriptors in wrk and twice that in a proxy.
# Past the hard limit where that is allowed (CAP_SYS_RESOURCE): edgeproxy serves a connection
# for every three descriptors.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

# shellcheck source=bench/lib.sh
source bench/lib.sh
chmod 755 "$work" # nginx workers may run as another user and serve the 1 MiB file from here

declare -A port=([b1]=18201 [b2]=18202 [sse]=18203 [edgeproxy]=18210 [nginx]=18211
  [haproxy]=18212 [metrics]=18213 [pingora]=18214 [baseline]=18215 [baseline_metrics]=18216)
for p in "${port[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "bench: port $p on 127.0.0.1 is in use; stop what listens there" >&2
    exit 1
  fi
done
render_file() {
  sed -e "s|@WORK@|$work|g" -e "s|@PORT_B1@|${port[b1]}|g" -e "s|@PORT_B2@|${port[b2]}|g" \
    -e "s|@PORT_SSE@|${port[sse]}|g" -e "s|@PORT_EDGEPROXY@|${port[edgeproxy]}|g" \
    -e "s|@PORT_NGINX@|${port[nginx]}|g" -e "s|@PORT_HAPROXY@|${port[haproxy]}|g" \
    -e "s|@PORT_METRICS@|${port[metrics]}|g" "$1"
}
render() { render_file "bench/conf/$1" >"$work/$1"; }
for conf in backend-nginx.conf nginx.conf haproxy.cfg edgeproxy.yaml; do render "$conf"; done
# The baseline build runs its config on ports of its own.
if [ -n "$baseline" ]; then
  render_file "$baseline_config" |
    sed -e "s|127.0.0.1:${port[edgeproxy]}|127.0.0.1:${port[baseline]}|" \
      -e "s|127.0.0.1:${port[metrics]}|127.0.0.1:${port[baseline_metrics]}|" >"$work/baseline.yaml"
fi
head -c 1048576 /dev/urandom >"$work/1m.bin"

# Waits until each named server answers GET /.
wait_up() {
  local name
  for name in "$@"; do
    for _ in $(seq 100); do
      curl -fs -o /dev/null "http://127.0.0.1:${port[$name]}/" -m 1 && continue 2
      sleep 0.1
    done
    echo "bench: nothing answers on port ${port[$name]} ($name); see $work" >&2
    exit 1
  done
}

nginx -p "$work" -e "$work/backend-error.log" -c "$work/backend-nginx.conf" &
pids+=($!)
target/release/edgeproxy-demo --listen "127.0.0.1:${port[sse]}" --id sse --threads 1 2>/dev/null &
pids+=($!)
wait_up b1 b2 sse

# Fresh proxies for each scenario, so that its peak RSS and memory per stream are its own.
declare -A pid base_rss
start_proxies() {
  nginx -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" &
  local nginx_master=$!
  haproxy -db -f "$work/haproxy.cfg" 2>>"$work/haproxy.log" &
  pid[haproxy]=$!
  # Pingora logs each client that leaves mid-request (wrk at the end of a run) as an error.
  RUST_LOG=warn target/release/edgeproxy -c "$work/edgeproxy.yaml" 2>>"$work/edgeproxy.log" &
  pid[edgeproxy]=$!
  target/release/examples/bare_pingora "127.0.0.1:${port[pingora]}" "127.0.0.1:${port[b1]}" \
    "127.0.0.1:${port[b2]}" 2>>"$work/pingora.log" &
  pid[pingora]=$!
  proxy_pids=("$nginx_master" "${pid[haproxy]}" "${pid[edgeproxy]}" "${pid[pingora]}")
  if [ -n "$baseline" ]; then
    RUST_LOG=warn "$baseline" -c "$work/baseline.yaml" 2>>"$work/baseline.log" &
    pid[baseline]=$!
    proxy_pids+=("${pid[baseline]}")
  fi
  pids+=("${proxy_pids[@]}")
  wait_up "${proxies[@]}"
  # nginx's master only hands connections to its worker: the worker is what is measured.
  pid[nginx]=$(pgrep -P "$nginx_master" | head -1)
  sleep 2 # let edgeproxy's first health checks pass
  local proxy
  for proxy in "${proxies[@]}"; do base_rss[$proxy]=$(status_kib "${pid[$proxy]}" VmRSS); done
}
stop_proxies() {
  kill "${proxy_pids[@]}"
  wait "${proxy_pids[@]}" 2>/dev/null || true
}

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }

results=$work/results.tsv
printf "scenario\tround\tproxy\trps\tp50_us\tp99_us\tp999_us\tcpu_s_per_10k\tpeak_rss_kib\terrors\tstreams\tkib_per_stream\n" >"$results"

# One wrk run against one proxy for PATH, with the wrk options that follow: appends a row of
# results.
drive() {
  local scenario=$1 round=$2 proxy=$3 path=$4
  shift 4
  local p=${pid[$proxy]}
  local before after line
  before=$(cpu_ticks "$p")
  line=$(wrk "$@" -d"${seconds}s" -s bench/report.lua "http://127.0.0.1:${port[$proxy]}$path" |
    grep '^RESULT')
  after=$(cpu_ticks "$p")
  read -r _ requests secs p50 p99 p999 socket_errors status_errors <<<"$line"
  awk -v OFS='\t' -v s="$scenario" -v r="$round" -v x="$proxy" -v n="$requests" -v t="$secs" \
    -v a="$p50" -v b="$p99" -v c="$p999" -v ticks=$((after - before)) -v clk="$clk" \
    -v rss="$(status_kib "$p" VmHWM)" -v e=$((socket_errors + status_errors)) \
    'BEGIN {print s, r, x, n / t, a, b, c, (n ? ticks / clk / n * 10000 : 0), rss, e, "", ""}' \
    >>"$results"
}

# 1,000 event streams through one proxy: their memory, from the proxy's RSS once they are all
# open against its RSS when it started (memory freed by an earlier round may be kept).
fan_out() {
  local round=$1 proxy=$2 p=${pid[$2]} streams=1000
  local before=${base_rss[$proxy]} ready=$work/sse-ready
  rm -f "$ready"
  python3 bench/sse_fanout.py "${port[$proxy]}" "$streams" "$ready" &
  local client=$!
  for _ in $(seq 900); do [ -s "$ready" ] && break; sleep 0.1; done
  local opened after
  opened=$(cat "$ready" 2>/dev/null || echo 0)
  after=$(status_kib "$p" VmRSS)
  kill "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  awk -v OFS='\t' -v r="$round" -v x="$proxy" -v n="$opened" -v a="$before" -v b="$after" \
    -v e=$((streams - opened)) \
    'BEGIN {print "sse", r, x, "", "", "", "", "", b, e, n, (n ? (b - a) / n : "")}' >>"$results"
  sleep 2 # let the proxy close the streams before the next one is measured
}

echo "bench: $rounds round(s), scenarios: $scenarios, ${seconds}s per wrk run" >&2
for scenario in $scenarios; do
  start_proxies
  for round in $(seq "$rounds"); do
    for proxy in "${proxies[@]}"; do
      echo "bench: round $round, $scenario, $proxy" >&2
      case $scenario in
        small) drive "$scenario" "$round" "$proxy" / -t1 -c32 ;;
        many) drive "$scenario" "$round" "$proxy" / -t2 "-c$many_connections" --timeout 10s ;;
        big) drive "$scenario" "$round" "$proxy" /1m -t1 -c8 ;;
        close) drive "$scenario" "$round" "$proxy" / -t1 -c32 -H "Connection: close" ;;
        sse) [ "$proxy" = pingora ] || fan_out "$round" "$proxy" ;;
        *) echo "bench: unknown scenario $scenario" >&2; exit 2 ;;
      esac
      sleep 1
    done
  done
  stop_proxies
done

mkdir -p target/bench
cp "$results" target/bench/last-run.tsv
echo "bench: raw results in target/bench/last-run.tsv" >&2
python3 bench/summarize.py "$results"
