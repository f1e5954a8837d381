#!/bin/bash
# cloud-init user data: turns a fresh Amazon Linux 2023 or Ubuntu instance into the
# edgeproxy load-balancer host. Settings come from the environment (terraform/ prepends them):
#   EDGEPROXY_GIT_URL       repository to build from (required)
#   EDGEPROXY_GIT_REF       branch or tag (default: main)
#   EDGEPROXY_TARBALL_URL   a release tarball with the binary; skips the build when set
#   EDGEPROXY_CONFIG_B64    the config, base64-encoded; else deploy/ec2/edgeproxy.yaml
#   EDGEPROXY_CONFIG_SSM_PARAMETER  an SSM parameter holding the config: checked every
#                           minute and reloaded when it changes (every LB host of a fleet)
#   EDGEPROXY_ACME_DOMAINS  without EDGEPROXY_CONFIG_B64: names (comma-separated) to get a
#                           Let's Encrypt certificate for; HTTPS on 443, HTTP redirected
#   EDGEPROXY_ACME_EMAIL    the ACME account's contact address
#   EDGEPROXY_ACME_DIRECTORY  the CA (default Let's Encrypt; its staging URL for trials)
set -euxo pipefail

: "${EDGEPROXY_GIT_URL:?set EDGEPROXY_GIT_URL to the repository to build from}"
ref="${EDGEPROXY_GIT_REF:-main}"
src=/opt/edgeproxy/src

if command -v dnf >/dev/null; then
    dnf install -y git gcc gcc-c++ make cmake patch tar gzip
    command -v aws >/dev/null || dnf install -y awscli
else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y git build-essential cmake patch curl ca-certificates tar
    command -v aws >/dev/null || snap install aws-cli --classic
fi

rm -rf "$src"
git clone --depth 1 --branch "$ref" "$EDGEPROXY_GIT_URL" "$src"

install_args=()
if [ -n "${EDGEPROXY_TARBALL_URL:-}" ]; then
    curl -fsSL -o /opt/edgeproxy/edgeproxy.tar.gz "$EDGEPROXY_TARBALL_URL"
    install_args+=(--tarball /opt/edgeproxy/edgeproxy.tar.gz)
else
    export HOME=/root CARGO_HOME=/opt/edgeproxy/cargo RUSTUP_HOME=/opt/edgeproxy/rustup
    curl -fsSL https://sh.rustup.rs | sh -s -- -y --profile minimal --no-modify-path
    export PATH="$CARGO_HOME/bin:$PATH"
    # Pingora's sources with edgeproxy's patches (patches/pingora/), which the build points at.
    (cd "$src" && scripts/patch-pingora.sh && cargo build --release --locked --bin edgeproxy)
    install_args+=(--binary "$src/target/release/edgeproxy")
fi

if [ -n "${EDGEPROXY_CONFIG_B64:-}" ]; then
    install -d -m 0755 /etc/edgeproxy
    echo "$EDGEPROXY_CONFIG_B64" | base64 -d >/etc/edgeproxy/edgeproxy.yaml
elif [ -n "${EDGEPROXY_ACME_DOMAINS:-}" ] && [ ! -e /etc/edgeproxy/edgeproxy.yaml ]; then
    # The shipped config with HTTPS from Let's Encrypt: certificates in the unit's
    # StateDirectory, renewed by edgeproxy itself (no certbot, no cron job).
    install -d -m 0755 /etc/edgeproxy
    tls="  tls:\n    listen: [\"0.0.0.0:443\"]\n    redirect_http_to_https: true\n    acme:\n"
    tls+="      domains: [${EDGEPROXY_ACME_DOMAINS}]\n"
    tls+="      email: ${EDGEPROXY_ACME_EMAIL:-}\n"
    tls+="      directory: ${EDGEPROXY_ACME_DIRECTORY:-https://acme-v02.api.letsencrypt.org/directory}\n"
    tls+="      state_dir: /var/lib/edgeproxy/acme"
    awk -v tls="$tls" '{ print } /^  access_log: / { print tls }' \
        "$src/deploy/ec2/edgeproxy.yaml" >/etc/edgeproxy/edgeproxy.yaml
fi

"$src/deploy/ec2/install.sh" "${install_args[@]}"

if [ -n "${EDGEPROXY_CONFIG_SSM_PARAMETER:-}" ]; then
    install -m 0755 "$src/deploy/ec2/config-sync.sh" /usr/local/bin/edgeproxy-config-sync
    for unit in edgeproxy-config-sync.service edgeproxy-config-sync.timer \
        edgeproxy-config-reload.service edgeproxy-config-reload.path; do
        install -m 0644 "$src/deploy/ec2/$unit" /etc/systemd/system/
    done
    install -d -m 0755 /etc/default
    echo "EDGEPROXY_CONFIG_SSM_PARAMETER=$EDGEPROXY_CONFIG_SSM_PARAMETER" >/etc/default/edgeproxy-config-sync
    # The sync runs as its own user, which owns the config file and nothing else.
    if ! id edgeproxy-sync >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin edgeproxy-sync
    fi
    chown edgeproxy-sync:edgeproxy-sync /etc/edgeproxy/edgeproxy.yaml
    chmod 0644 /etc/edgeproxy/edgeproxy.yaml
    systemctl daemon-reload
    systemctl enable --now edgeproxy-config-reload.path edgeproxy-config-sync.timer
fi
