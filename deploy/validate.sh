#!/usr/bin/env bash
# Validates deploy/ offline, as far as this machine allows (no Docker engine, no AWS account,
# no Terraform provider download): shell scripts, the compose file, the systemd units and the
# Terraform files. The compose/edgeproxy config checks, the dashboard's metric names and the
# install.sh smoke test are Rust tests (tests/deploy.rs). Needs a built target/debug/edgeproxy
# and the tools scripts/setup.sh --test installs.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
step() { echo "deploy/validate.sh: $*"; }
fail() {
    echo "deploy/validate.sh: FAILED: $*" >&2
    failed=1
}

step "shellcheck"
mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
shellcheck "${scripts[@]}" || fail "shellcheck"

step "docker-compose config"
docker-compose -f deploy/docker/docker-compose.yml config -q || fail "docker-compose config"

step "systemd-analyze verify"
# The units name the installed paths; point them at this tree's files so that verify checks
# everything else (keys, values, sandboxing options) without an install.
units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
for unit in deploy/ec2/*.service deploy/ec2/*.timer; do
    sed -e "s#/usr/local/bin/edgeproxy-config-sync#$PWD/deploy/ec2/config-sync.sh#" \
        -e "s#/usr/local/bin/edgeproxy#$PWD/target/debug/edgeproxy#" \
        "$unit" >"$units/$(basename "$unit")"
done
out=$(systemd-analyze verify "$units"/* 2>&1) || fail "systemd-analyze verify exited non-zero"
if [ -n "$out" ]; then
    echo "$out" >&2
    fail "systemd-analyze verify complained"
fi

step "systemd-analyze security (every service at most 3.0)"
# The exposure score systemd gives a unit's sandboxing, 0 (locked down) to 10 (none); the
# threshold is in tenths.
for unit in "$units"/*.service; do
    if ! systemd-analyze security --offline=yes --threshold=30 "$unit" >/dev/null 2>&1; then
        systemd-analyze security --offline=yes "$unit" 2>&1 | tail -n 1 >&2
        fail "$(basename "$unit") is exposed above 3.0; sandbox it as edgeproxy.service is"
    fi
done

step "terraform"
tf=deploy/ec2/terraform
if command -v terraform >/dev/null; then
    terraform fmt -check -recursive "$tf" || fail "terraform fmt -check"
    copy=$(mktemp -d)
    cp -r "$tf"/. "$copy"
    if terraform -chdir="$copy" init -backend=false -input=false >/dev/null 2>&1; then
        terraform -chdir="$copy" validate || fail "terraform validate"
    else
        step "terraform init cannot fetch the AWS provider here; validate left to the HCL parse"
    fi
    rm -rf "$copy"
else
    step "no terraform binary; format left unchecked, syntax checked by the HCL parse"
fi
"${HCL_PYTHON:-target/tools/venv/bin/python3}" - "$tf" <<'PY' || fail "HCL parse"
import glob, re, sys
import hcl2

tf = sys.argv[1]
declared, used = set(), set()
for path in sorted(glob.glob(f"{tf}/*.tf")):
    with open(path) as f:
        doc = hcl2.load(f)
    for block in doc.get("variable", []):
        declared.update(name.strip('"') for name in block)
    with open(path) as f:
        text = f.read()
    used.update(re.findall(r"\bvar\.([a-z_]+)", text))
missing = used - declared
unused = declared - used
if missing or unused:
    sys.exit(f"variables used but not declared: {sorted(missing)}; declared but unused: {sorted(unused)}")
print(f"deploy/validate.sh: {len(declared)} variables, all declared and used")
PY

if [ "$failed" -ne 0 ]; then
    exit 1
fi
step "all passed"
