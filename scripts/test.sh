#!/usr/bin/env bash
# Runs every check and test of edgeproxy: formatting, clippy, unit and integration tests.
# Installs the build prerequisites first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
