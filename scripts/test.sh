#!/usr/bin/env bash
# Runs every check and test of edgeproxy: formatting, the import-cycle check of src/
# (scripts/check-layers.py), clippy, unit and integration tests, Pingora's own tests of the
# patched modules, a short run of each fuzz target, then the offline validation of deploy/.
# Installs the prerequisites and prepares the patched Pingora sources first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
cargo fmt --check
scripts/check-layers.py
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
scripts/test-pingora.sh
scripts/fuzz-smoke.sh
deploy/validate.sh
