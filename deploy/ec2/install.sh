#!/usr/bin/env bash
# Installs edgeproxy as a systemd service on this host: the binary, a system user, the config,
# the unit; then enables and starts it. Idempotent: run it again to update the binary and the
# unit. An existing /etc/edgeproxy/edgeproxy.yaml is never overwritten.
#
#   sudo deploy/ec2/install.sh                          # binary from target/release/edgeproxy
#   sudo deploy/ec2/install.sh --tarball edgeproxy.tar.gz
#   sudo deploy/ec2/install.sh --upgrade                # new binary, no connection dropped
#   deploy/ec2/install.sh --destdir /tmp/root          # lay the files out under a staging root
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

binary="$repo/target/release/edgeproxy"
tarball=""
config="$here/edgeproxy.yaml"
destdir="${DESTDIR:-}"
upgrade=false
start=true

usage() {
    cat <<USAGE
usage: $0 [--binary FILE | --tarball FILE] [--config FILE] [--destdir DIR] [--upgrade] [--no-start]
  --binary FILE   the edgeproxy binary to install (default: $binary)
  --tarball FILE  a release tarball that holds the edgeproxy binary
  --config FILE   the config installed when /etc/edgeproxy/edgeproxy.yaml does not exist yet
                  (default: $config)
  --destdir DIR   install under DIR instead of / (also DESTDIR=DIR); no user, no systemctl
  --upgrade       replace the binary of the running service without dropping a connection
  --no-start      install and enable, but do not start
USAGE
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a file}; shift 2 ;;
        --tarball) tarball=${2:?--tarball needs a file}; shift 2 ;;
        --config) config=${2:?--config needs a file}; shift 2 ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --upgrade) upgrade=true; shift ;;
        --no-start) start=false; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
    $upgrade && die "--upgrade acts on the running service; it cannot go with --destdir"
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo), or give --destdir to stage the files"
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
if [ -n "$tarball" ]; then
    [ -f "$tarball" ] || die "no tarball at $tarball"
    tar -xzf "$tarball" -C "$workdir"
    binary=$(find "$workdir" -type f -name edgeproxy -perm -u+x | head -n 1)
    [ -n "$binary" ] || die "$tarball holds no executable named edgeproxy"
fi
[ -x "$binary" ] || die "no edgeproxy binary at $binary; build it with 'scripts/setup.sh && cargo build --release' or give --binary/--tarball"
"$binary" --version >/dev/null || die "$binary does not run on this host"

bin_dir="$destdir/usr/local/bin"
etc_dir="$destdir/etc/edgeproxy"
unit_dir="$destdir/etc/systemd/system"
installed="$bin_dir/edgeproxy"

# Replaced by rename, so that a running edgeproxy keeps its own file.
install_binary() {
    install -d -m 0755 "$bin_dir"
    install -m 0755 "$binary" "$bin_dir/.edgeproxy.new"
    mv -f "$bin_dir/.edgeproxy.new" "$installed"
    echo "installed $installed ($("$installed" --version))"
}

if $upgrade; then
    pid_file=/run/edgeproxy/edgeproxy.pid
    [ -f "$pid_file" ] || die "edgeproxy is not running ($pid_file is missing); install without --upgrade"
    old_pid=$(cat "$pid_file")
    "$binary" check -c /etc/edgeproxy/edgeproxy.yaml
    install_binary
    # The running process starts the new binary itself, inside the service, and hands over.
    kill -USR2 "$old_pid"
    for _ in $(seq 1 600); do
        new_pid=$(cat "$pid_file" 2>/dev/null || true)
        if [ -n "$new_pid" ] && [ "$new_pid" != "$old_pid" ] && ! kill -0 "$old_pid" 2>/dev/null; then
            echo "upgraded: process $new_pid serves, process $old_pid has drained and exited"
            systemctl --no-pager status edgeproxy.service | head -n 5
            exit 0
        fi
        sleep 0.1
    done
    die "the upgrade did not finish within 60 s; see: journalctl -u edgeproxy"
fi

# Nothing is installed unless the config that will be in force passes.
if [ -e "$etc_dir/edgeproxy.yaml" ]; then
    "$binary" check --offline -c "$etc_dir/edgeproxy.yaml"
else
    "$binary" check --offline -c "$config"
fi

install_binary

install -d -m 0755 "$etc_dir"
install -d -m 0750 "$etc_dir/tls"
if [ -e "$etc_dir/edgeproxy.yaml" ]; then
    echo "kept $etc_dir/edgeproxy.yaml (edit it, then: systemctl reload edgeproxy)"
else
    install -m 0644 "$config" "$etc_dir/edgeproxy.yaml"
    echo "installed $etc_dir/edgeproxy.yaml from $config"
fi

install -d -m 0755 "$unit_dir"
install -m 0644 "$here/edgeproxy.service" "$unit_dir/edgeproxy.service"
echo "installed $unit_dir/edgeproxy.service"

if [ -n "$destdir" ]; then
    echo "staged under $destdir; no user created, nothing started"
    exit 0
fi

if ! id edgeproxy >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin edgeproxy
    echo "created the system user edgeproxy"
fi
chgrp edgeproxy "$etc_dir/tls"

systemctl daemon-reload
systemctl enable edgeproxy.service
if systemctl is-active --quiet edgeproxy.service; then
    systemctl reload edgeproxy.service
    echo "edgeproxy was running: its config is reloaded; to put the new binary in force" \
        "without dropping a connection, run: $0 --upgrade"
elif $start; then
    systemctl start edgeproxy.service
    systemctl --no-pager status edgeproxy.service | head -n 5
fi
