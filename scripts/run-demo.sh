#!/usr/bin/env bash
# Builds edgeproxy, starts three demo backends on 127.0.0.1:8001-8003 (instances 1, 2, 3) and
# runs edgeproxy in front of them on :8080 with conf/edgeproxy.yaml. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bins

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for id in 1 2 3; do
  target/release/edgeproxy-demo --listen "127.0.0.1:800$id" --id "$id" &
  pids+=($!)
done

target/release/edgeproxy check -c conf/edgeproxy.yaml
echo "run-demo: try  curl -i localhost:8080/  and the tour in README.md (Ctrl-C to stop)" >&2
target/release/edgeproxy -c conf/edgeproxy.yaml &
pids+=($!)
wait "${pids[-1]}"
