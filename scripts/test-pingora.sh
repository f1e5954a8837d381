#!/usr/bin/env bash
# Runs Pingora's own unit tests for the modules that patches/pingora/ changes, on the patched
# crates in patched/ (scripts/patch-pingora.sh prepares them), so that patched Pingora is held
# to Pingora's own suite as well as to edgeproxy's. They build in target/pingora-tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=target/pingora-tests

# name of the crate, its features (- for none), then the test-name filters of the modules its
# patches touch (of the L4 stream's, those of the stream itself: its receive-timestamp tests
# give the kernel 100 µs to apply a socket option and fail when the machine is busy, though
# they pass alone; no patch touches that code). Pingora's TLS code is stubs without a TLS
# feature, so the crates that have one build with rustls, the TLS backend edgeproxy uses.
# pingora-load-balancing runs whole but for the four health checks that connect to the
# Internet (1.1.1.1, one.one.one.one).
suites=(
  "pingora-core rustls apps:: services::listening modules::http:: protocols::http::authority:: protocols::http::v1:: protocols::l4::stream::tests::test_stream_ protocols::l4::write_buffer:: connectors::reuse_tests connectors::connect_size_tests connectors::http::v1::tests::release_kept_alive"
  "pingora-proxy rustls tests::"
  "pingora-http - tests::"
  "pingora-load-balancing rustls --skip test_http_custom_check --skip test_https_check --skip test_tcp_check --skip test_tls_check"
  "pingora-timeout - timer:: fast_timeout::"
  "pingora-pool - connection:: lru:: key_hasher::"
)
for suite in "${suites[@]}"; do
  read -r crate features filters <<<"$suite"
  dir=patched/$crate
  [ -d "$dir" ] || { echo "test-pingora: $dir is missing; run scripts/patch-pingora.sh" >&2; exit 1; }
  # Start from edgeproxy's lock: the versions edgeproxy ships with, plus the dev-dependencies.
  [ -f "$dir/Cargo.lock" ] || cp Cargo.lock "$dir/Cargo.lock"
  # Each crate builds on the other patched crates, as edgeproxy does.
  patched=()
  for other in patched/*/; do
    other=$(basename "$other")
    [ "$other" = "$crate" ] ||
      patched+=(--config "patch.crates-io.$other.path=\"$PWD/patched/$other\"")
  done
  feature_args=()
  [ "$features" = - ] || feature_args=(--features "$features")
  # shellcheck disable=SC2086 # the filters are words
  cargo test --quiet --manifest-path "$dir/Cargo.toml" "${patched[@]}" "${feature_args[@]}" \
    --lib -- $filters
done
