#!/usr/bin/env bash
# Runs Pingora's own unit tests for the modules that patches/pingora/ changes, on the patched
# crates in patched/ (scripts/patch-pingora.sh prepares them), so that patched Pingora is held
# to Pingora's own suite as well as to edgeproxy's. They build in target/pingora-tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=target/pingora-tests

# name of the crate, then the test-name filters of the modules its patches touch (of the L4
# stream's, those of the stream itself: its receive-timestamp tests give the kernel 100 µs to
# apply a socket option and fail when the machine is busy, though they pass alone; no patch
# touches that code)
suites=(
  "pingora-core apps:: services::listening protocols::http::v1:: protocols::l4::stream::tests::test_stream_ protocols::l4::write_buffer:: connectors::reuse_tests connectors::connect_size_tests"
  "pingora-proxy tests::"
)
for suite in "${suites[@]}"; do
  read -r crate filters <<<"$suite"
  dir=patched/$crate
  [ -d "$dir" ] || { echo "test-pingora: $dir is missing; run scripts/patch-pingora.sh" >&2; exit 1; }
  # Start from edgeproxy's lock: the versions edgeproxy ships with, plus the dev-dependencies.
  [ -f "$dir/Cargo.lock" ] || cp Cargo.lock "$dir/Cargo.lock"
  # The other crates build on the patched pingora-core, as edgeproxy does.
  patch_core=()
  [ "$crate" = pingora-core ] ||
    patch_core=(--config "patch.crates-io.pingora-core.path=\"$PWD/patched/pingora-core\"")
  # With rustls, the TLS backend edgeproxy builds Pingora with: without a TLS feature,
  # Pingora's TLS code is stubs, and a patch to it would go untested.
  # shellcheck disable=SC2086 # the filters are words
  cargo test --quiet --manifest-path "$dir/Cargo.toml" "${patch_core[@]}" --features rustls \
    --lib -- $filters
done
