#!/usr/bin/env bash
# Seed 002's spike: POST /models at 8,000 concurrent connections through three FastAPI apps
# run by uvicorn (its defaults, a 5 s keep-alive timeout among them), weights 1:2:3, with
# edgeproxy and with nginx, in interleaved rounds on this machine. For each run it reports
# the requests done, those that failed (wrk's connect, read, write and timeout errors and
# non-2xx answers) and the proxy's peak RSS. Only 127.0.0.1 is used.
#
#   bench/spike/run.sh [ROUNDS] [SECONDS] [CONNECTIONS]    defaults: 3 rounds, 10 s, 8000
#   FD_LIMIT=N bench/spike/run.sh                          with the open-file limit at N
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-8000}

scripts/setup.sh
for tool in wrk nginx; do
  command -v "$tool" >/dev/null 2>&1 || { echo "spike: $tool is missing; bench/run.sh installs it" >&2; exit 1; }
done
venv=target/tools/spike-venv
if ! "$venv/bin/python3" -c 'import fastapi, uvicorn' 2>/dev/null; then
  echo "spike: installing fastapi and uvicorn into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'fastapi>=0.110,<1' 'uvicorn>=0.29,<1'
fi
cargo build --release --locked --bin edgeproxy -q
# Past the hard limit where that is allowed (CAP_SYS_RESOURCE): edgeproxy serves a connection
# for every three descriptors.
# FD_LIMIT=20000 plays a host with that limit (edgeproxy then serves 6,633 at once).
if [ -n "${FD_LIMIT:-}" ]; then
  ulimit -n "$FD_LIMIT" && ulimit -Hn "$FD_LIMIT"
else
  ulimit -Hn 1048576 2>/dev/null || true
  ulimit -n "$(ulimit -Hn)"
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh

declare -A port=([app1]=18301 [app2]=18302 [app3]=18303 [edgeproxy]=18310 [nginx]=18311)
for p in "${port[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "spike: port $p on 127.0.0.1 is in use; stop what listens there" >&2
    exit 1
  fi
done
for conf in nginx.conf edgeproxy.yaml; do
  sed -e "s|@WORK@|$work|g" -e "s|@PORT_APP1@|${port[app1]}|g" -e "s|@PORT_APP2@|${port[app2]}|g" \
    -e "s|@PORT_APP3@|${port[app3]}|g" -e "s|@PORT_EDGEPROXY@|${port[edgeproxy]}|g" \
    -e "s|@PORT_NGINX@|${port[nginx]}|g" "bench/spike/$conf" >"$work/$conf"
done

wait_up() {
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$1$2" -m 1 && return 0
    sleep 0.1
  done
  echo "spike: nothing answers on port $1; see $work" >&2
  exit 1
}

for app in app1 app2 app3; do
  HOST_TAG=$app "$venv/bin/uvicorn" app:app --app-dir bench/spike --host 127.0.0.1 \
    --port "${port[$app]}" --log-level warning 2>>"$work/$app.log" &
  pids+=($!)
done
for app in app1 app2 app3; do wait_up "${port[$app]}" /health; done

status_kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }

results=$work/results.tsv
printf "round\tproxy\trequests\tfailed\tconnect\tread\twrite\ttimeout\tstatus\tpeak_rss_mib\n" >"$results"
for round in $(seq "$rounds"); do
  for proxy in edgeproxy nginx; do
    echo "spike: round $round, $proxy" >&2
    case $proxy in
      edgeproxy)
        RUST_LOG=warn target/release/edgeproxy -c "$work/edgeproxy.yaml" 2>>"$work/edgeproxy.log" &
        measured=$!
        main=$measured
        ;;
      nginx)
        nginx -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" &
        main=$!
        ;;
    esac
    wait_up "${port[$proxy]}" /health
    # nginx's master only hands connections to its worker: the worker is what is measured.
    [ "$proxy" = nginx ] && measured=$(pgrep -P "$main" | head -1)
    sleep 3 # edgeproxy's first health checks
    line=$(wrk -t2 -c"$connections" -d"${seconds}s" --timeout 10s -s bench/spike/post.lua \
      "http://127.0.0.1:${port[$proxy]}/models" | grep '^spike: ')
    peak=$(status_kib "$measured" VmHWM)
    read -r _ requests failed connect read write timeout status <<<"$line"
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$round" "$proxy" "$requests" "$failed" \
      "$connect" "$read" "$write" "$timeout" "$status" $((peak / 1024)) >>"$results"
    kill "$main"
    wait "$main" 2>/dev/null || true
    sleep 2 # uvicorn closes what the proxy left
  done
done
column -t "$results"
errors=$(grep -c ' ERROR ' "$work/edgeproxy.log" || true)
echo "spike: edgeproxy logged $errors ERROR line(s) over all rounds"
python3 - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
median = lambda proxy, key: statistics.median(float(r[key]) for r in rows if r["proxy"] == proxy)
for proxy in ("edgeproxy", "nginx"):
    print(f"spike: {proxy}: median {median(proxy, 'requests'):.0f} requests, "
          f"{median(proxy, 'failed'):.0f} failed, peak RSS {median(proxy, 'peak_rss_mib'):.0f} MiB")
print(f"spike: edgeproxy completed {median('edgeproxy', 'requests') / median('nginx', 'requests'):.2f}x nginx's requests")
PY
