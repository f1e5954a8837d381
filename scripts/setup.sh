#!/usr/bin/env bash
# Installs what building edgeproxy needs on Debian/Ubuntu: a C compiler and cmake (Pingora's
# zlib-ng and zstd are C libraries built from source) and patch, then prepares the patched
# Pingora sources (scripts/patch-pingora.sh). With --test, also what checking
# deploy/ and the tests need: shellcheck, openssl (keys of every format), strace (which
# thread serves a connection), docker-compose and systemd-analyze from Debian, the clients
# of the conformance tests (ApacheBench, nghttp2's h2load and nghttp), Let's Encrypt's Pebble
# (an ACME CA, with pebble-challtestsrv as its DNS server), unshare and mount (a mount namespace
# with its own /etc/hosts, for the DNS tests), headless Chromium and chromedriver (the status
# page tests), and in a virtualenv under target/tools the
# python-hcl2 parser and the h2 package (raw HTTP/2 frames).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

test_tools=false
[ "${1:-}" = "--test" ] && test_tools=true

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v patch >/dev/null 2>&1 || missing+=(patch)
if $test_tools; then
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
  command -v ab >/dev/null 2>&1 || missing+=(apache2-utils)
  command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
  command -v pebble >/dev/null 2>&1 || missing+=(pebble)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium chromium-driver)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  command -v mount >/dev/null 2>&1 || missing+=(mount)
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup first" >&2
  exit 1
fi
if $test_tools && ! target/tools/venv/bin/python3 -c 'import hcl2, h2' 2>/dev/null; then
  echo "setup: installing python-hcl2 and h2 into target/tools/venv" >&2
  python3 -m venv target/tools/venv
  target/tools/venv/bin/pip install -q 'python-hcl2>=7,<9' 'h2>=4.1,<5'
fi
scripts/patch-pingora.sh
