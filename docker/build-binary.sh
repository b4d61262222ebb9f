#!/usr/bin/env bash
# Builds the binary the container image carries, exactly as the Dockerfile
# does: a locked release build with the `dist` profile (no debug info,
# symbols stripped), copied to OUT. CI runs it outside Docker, so the image's
# build step is exercised on every change.
# Usage: docker/build-binary.sh OUT
set -euo pipefail
out="${1:?usage: docker/build-binary.sh OUT}"
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --profile dist --bin ecs-gateway
mkdir -p "$(dirname "$out")"
cp "$target/dist/ecs-gateway" "$out"
# The image must carry a stripped binary: no symbol table, no DWARF.
if readelf -S --wide "$out" | grep -Eq ' \.(symtab|debug_[a-z]+) '; then
    echo "build-binary: $out still has symbols or debug info" >&2
    exit 1
fi
"$out" --version
echo "build-binary: $out, $(du -h "$out" | cut -f1) stripped"
