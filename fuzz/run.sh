#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each). Outside CI:
# the regression inputs under fuzz/regressions/ run in CI through
# tests/fuzz_regressions.rs. cargo-fuzz needs nightly features; the stable
# toolchain provides them with RUSTC_BOOTSTRAP=1. cargo-fuzz is installed
# into fuzz/.tools, not system-wide.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
if [ ! -x .tools/bin/cargo-fuzz ]; then
  cargo install --locked cargo-fuzz --root .tools
fi
for target in validate explain canonical_query simulator_auth error_body credentials_file credential_answers xfcc; do
  mkdir -p "corpus/$target" "regressions/$target"
  cp -n regressions/"$target"/* "corpus/$target/" 2>/dev/null || true
  echo "== $target for ${seconds}s"
  .tools/bin/cargo-fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4096
done
echo "Crashes are under fuzz/artifacts/: fix them, then copy each input to fuzz/regressions/<target>/."
