#!/usr/bin/env bash
# Builds the binary the container image carries, exactly as the Dockerfile
# does: a locked release build (the same artifacts `cargo bench` and the
# load-test harness use), stripped of its symbols and line tables into OUT. CI runs it outside Docker, so the image's
# build step is exercised on every change.
# Usage: docker/build-binary.sh OUT
set -euo pipefail
out="${1:?usage: docker/build-binary.sh OUT}"
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --release --bin ecs-gateway
mkdir -p "$(dirname "$out")"
strip --strip-all -o "$out" "$target/release/ecs-gateway"
# The image must carry a stripped binary: no symbol table, no DWARF.
if readelf -S --wide "$out" | grep -Eq ' \.(symtab|debug_[a-z]+) '; then
    echo "build-binary: $out still has symbols or debug info" >&2
    exit 1
fi
"$out" --version
echo "build-binary: $out, $(du -h "$out" | cut -f1) stripped"
