#!/usr/bin/env bash
# Prepares the patched Pingora crates that Cargo.toml's [patch.crates-io] points at: copies the
# crates.io sources of the versions locked in Cargo.lock into patched/, then applies
# patches/pingora/*.patch in name order. Only the patches are kept in git, never the sources.
#
# Run again whenever the patches or the locked versions change; it does nothing while they have
# not (so that cargo does not rebuild Pingora for nothing). A patch that no longer applies stops
# it with an error that names the patch. scripts/setup.sh runs it, so both README commands do.
set -euo pipefail
cd "$(dirname "$0")/.."

out=patched
queue=patches/pingora

die() { echo "patch-pingora: error: $*" >&2; exit 1; }

# The crates to patch are those Cargo.toml redirects to patched/: one list, kept there.
mapfile -t crates < <(sed -n 's/^\(pingora-[a-z-]*\) *= *{ *path *= *"patched\/\1" *}.*/\1/p' Cargo.toml)
((${#crates[@]})) || die "Cargo.toml has no [patch.crates-io] entry pointing at $out/"

# The version of each, as Cargo.lock has it (a patched crate is locked without a source).
locked_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

# What the prepared tree is made of; when it is unchanged, the tree is left alone.
stamp() {
  for crate in "${crates[@]}"; do echo "$crate $(locked_version "$crate")"; done
  cat "$queue"/*.patch 2>/dev/null
}
want=$(stamp | sha256sum | cut -d' ' -f1)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$want" ]; then
  exit 0
fi

command -v patch >/dev/null 2>&1 || die "'patch' is not installed (apt-get install patch)"
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup first"

# Cargo itself downloads and checks the exact crates: a throw-away package that depends on each
# locked version, fetched into the usual registry cache.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fetch/src"
: > "$work/fetch/src/lib.rs"
{
  printf '[package]\nname = "pingora-sources"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n'
  for crate in "${crates[@]}"; do
    version=$(locked_version "$crate")
    [ -n "$version" ] || die "Cargo.lock has no $crate; run 'cargo generate-lockfile' first"
    echo "$crate = \"=$version\""
  done
} > "$work/fetch/Cargo.toml"
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" \
  || die "could not fetch ${crates[*]} from crates.io"

registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
mkdir -p "$work/tree"
for crate in "${crates[@]}"; do
  version=$(locked_version "$crate")
  source=""
  for dir in "$registry"/*/"$crate-$version"; do
    [ -f "$dir/.cargo-ok" ] && source=$dir && break
  done
  [ -n "$source" ] || die "cargo fetched $crate $version but its sources are not under $registry"
  cp -Rp "$source" "$work/tree/$crate"
  # The lock a crate is published with plays no part in edgeproxy's build, and it may pin
  # versions the registry no longer serves; scripts/test-pingora.sh starts from edgeproxy's.
  rm -f "$work/tree/$crate/.cargo-ok" "$work/tree/$crate/Cargo.lock"
done

shopt -s nullglob
patches=("$queue"/*.patch)
for p in "${patches[@]}"; do
  if ! patch -d "$work/tree" -p1 --batch --forward --silent --no-backup-if-mismatch < "$p"; then
    die "$p does not apply to $(for c in "${crates[@]}"; do printf '%s %s ' "$c" "$(locked_version "$c")"; done)(Cargo.lock); rebase it on those sources"
  fi
done

rm -rf "$out"
mkdir -p "$out"
for crate in "${crates[@]}"; do mv "$work/tree/$crate" "$out/$crate"; done
printf '# Prepared by scripts/patch-pingora.sh; not kept in git.\n*\n' > "$out/.gitignore"
echo "$want" > "$out/.stamp"
echo "patch-pingora: ${crates[*]} prepared in $out/ with ${#patches[@]} patch(es)" >&2
