#!/usr/bin/env bash
# Proto hygiene with buf (npm's @bufbuild/buf, installed once into
# ECS_GATEWAY_TOOLS, outside the clone): `buf lint` (STANDARD) and
# `buf breaking` (FILE) against the last release tag, or else the previous
# commit. proto/buf.yaml holds the rules.
# Usage: .ci/buf.sh [AGAINST_GIT_REF]
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${ECS_GATEWAY_TOOLS:-/tmp/ecs-gateway-tools}"
version="1.75.0"
buf="$tools/npm-buf-$version/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
    mkdir -p "$tools/npm-buf-$version"
    npm install --prefix "$tools/npm-buf-$version" --no-audit --no-fund --silent "@bufbuild/buf@$version"
fi
echo "buf $("$buf" --version)"
"$buf" lint proto
echo "buf lint: clean"
against="${1:-}"
if [ -z "$against" ]; then
    against="$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null || true)"
fi
if [ -z "$against" ] && git rev-parse --verify --quiet HEAD~1 > /dev/null; then
    against="HEAD~1"
fi
if [ -z "$against" ]; then
    echo "buf breaking: no earlier commit or release tag to compare with" >&2
    exit 1
fi
"$buf" breaking proto --against ".git#ref=$against,subdir=proto"
echo "buf breaking: no breaking change against $against"
