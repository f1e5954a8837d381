#!/bin/bash
# Pulls the edgeproxy config from an SSM parameter and, if it changed and passes
# `edgeproxy check --offline`, writes it over the installed one. Run by
# edgeproxy-config-sync.timer on every load-balancer host, as its own user whose only write is
# that file, so that one `aws ssm put-parameter` rolls a change to the fleet; the change
# starts edgeproxy-config-reload.service (edgeproxy-config-reload.path), whose reload checks
# the file again as edgeproxy's user, on the host, before edgeproxy loads it.
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
# Offline: this user can neither bind the proxy's ports nor open its logs; the reload's own
# check does that, as the proxy's user.
if ! /usr/local/bin/edgeproxy check --offline -c "$new"; then
    echo "config-sync: $parameter does not pass edgeproxy check; the running config stays" >&2
    exit 1
fi
# In place: the file is this user's, the directory is not.
cat "$new" >"$config"
echo "config-sync: installed the config from $parameter; edgeproxy-config-reload.path reloads it"
