# shellcheck shell=bash
# Sourced by the bench scripts: a scratch directory ($work) and the processes they start
# ($pids), both gone when the script exits, however it exits.
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
