#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ on stable and runs each for FUZZ_SECONDS (30 by default),
# starting from its seeds in fuzz/seeds/, so that the targets keep compiling and a panic on a
# mutated seed fails the test command. Built this way the targets have no coverage
# instrumentation, so libFuzzer mutates blindly; `cargo +nightly fuzz run TARGET` (docs/development.md,
# "Fuzzing") is the coverage-guided run. The build shares target/ with edgeproxy's own, so
# only libFuzzer and the targets themselves are compiled again.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
export CARGO_TARGET_DIR=$PWD/target
# fuzz/ must build on every crate edgeproxy patches: one left to crates.io's copy breaks on the
# calls that another patched crate makes into it.
patched_in() { sed -n 's/^\(pingora-[a-z-]*\) *= *{ *path *= *"\(\.\.\/\)\{0,1\}patched\/.*/\1/p' "$1" | sort; }
if [ "$(patched_in Cargo.toml)" != "$(patched_in fuzz/Cargo.toml)" ]; then
  echo "fuzz-smoke: fuzz/Cargo.toml's [patch.crates-io] must list the crates Cargo.toml's does:" \
    "$(patched_in Cargo.toml | tr '\n' ' ')" >&2
  exit 1
fi
cargo build --quiet --locked --manifest-path fuzz/Cargo.toml --bins
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in config path; do
  mkdir "$work/$target"
  echo "fuzz-smoke: $target for ${seconds}s"
  # libFuzzer exits non-zero, with the input that failed, on a panic or a crash.
  if ! "$CARGO_TARGET_DIR/debug/$target" -max_total_time="$seconds" -print_final_stats=1 \
    "$work/$target" "fuzz/seeds/$target" 2>"$work/$target.log"; then
    tail -n 40 "$work/$target.log" >&2
    echo "fuzz-smoke: $target failed" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units' "$work/$target.log" | sed "s/^/fuzz-smoke: $target: /"
done
