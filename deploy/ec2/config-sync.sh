#!/bin/bash
# Pulls the edgeproxy config from an SSM parameter and, if it changed and passes
# `edgeproxy check`, installs it and reloads edgeproxy. Run by edgeproxy-config-sync.timer on
# every load-balancer host, so that one `aws ssm put-parameter` rolls a change to the fleet.
set -euo pipefail

parameter="${EDGEPROXY_CONFIG_SSM_PARAMETER:?set EDGEPROXY_CONFIG_SSM_PARAMETER}"
config=/etc/edgeproxy/edgeproxy.yaml
new=$(mktemp)
trap 'rm -f "$new"' EXIT

aws ssm get-parameter --name "$parameter" --with-decryption \
    --query Parameter.Value --output text >"$new"
if cmp -s "$new" "$config"; then
    exit 0
fi
if ! /usr/local/bin/edgeproxy check -c "$new"; then
    echo "config-sync: $parameter does not pass edgeproxy check; the running config stays" >&2
    exit 1
fi
install -m 0644 "$new" "$config"
systemctl reload edgeproxy.service
echo "config-sync: installed the config from $parameter and reloaded edgeproxy"
