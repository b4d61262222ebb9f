#!/usr/bin/env bash
# Supply chain: cargo-deny over the dependency graph (deny.toml): licenses,
# bans, sources, and RustSec's advisories. cargo-deny is built once into
# ECS_GATEWAY_TOOLS (default /tmp/ecs-gateway-tools), outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${ECS_GATEWAY_TOOLS:-/tmp/ecs-gateway-tools}"
version="0.20.2"
deny="$tools/cargo-deny-$version/bin/cargo-deny"
if [ ! -x "$deny" ]; then
    CARGO_TARGET_DIR="$tools/cargo-deny-build" \
        cargo install --quiet --locked "cargo-deny@$version" --root "$tools/cargo-deny-$version"
    rm -rf "$tools/cargo-deny-build"
fi
"$deny" --version
"$deny" check bans licenses sources
# The advisory database is a git repository on github.com. Where it cannot be
# fetched (this project's CI machines reach only the package registries), the
# check is reported as not done, loudly, rather than passed.
if timeout 120 "$deny" fetch db > /dev/null 2>&1; then
    "$deny" check advisories
else
    echo "cargo-deny: ADVISORIES NOT CHECKED: the RustSec database (github.com/rustsec/advisory-db) cannot be fetched from this machine; run '$deny check advisories' where it can" >&2
fi
