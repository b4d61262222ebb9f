#!/usr/bin/env bash
# Profiles `ecs-gateway serve` under closed-loop load (docs/benchmarks.md):
# the gateway pinned to core 0 as in side-by-side.sh, the load generator and
# a fixed-answer upstream on core 1, `perf record` on the gateway for
# SECONDS. Prints the functions with the most samples, callers included.
#
# Usage: bench/profile.sh [SECONDS] [PERF_DATA]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-6}"
data="${2:-/tmp/ecs-gateway.perf.data}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin ecs-gateway --example loadtest
bin="$CARGO_TARGET_DIR/release"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done; wait 2> /dev/null || true; }
trap cleanup EXIT
# shellcheck source=bench/lib.sh
source bench/lib.sh

addr_file="$(mktemp)"
taskset -c 1 "$bin/examples/loadtest" upstream --threads 1 > "$addr_file" 2> /dev/null &
pids+=("$!")
for _ in $(seq 100); do [ -s "$addr_file" ] && break; sleep 0.05; done
upstream="http://$(head -1 "$addr_file")/"

start_gateway "$upstream"
gateway="$PID"

taskset -c 1 "$bin/examples/loadtest" load --threads 1 --target "http://$ADDR" \
    --concurrency 64 --seconds $((seconds + 2)) > /dev/null &
pids+=("$!")
sleep 1
perf record -q --call-graph dwarf,16384 -F 999 -p "$gateway" -o "$data" -- sleep "$seconds" 2> /dev/null
perf report -i "$data" --children --stdio -g none --percent-limit 2 2> /dev/null |
    grep -E '^ +[0-9]' | grep -v '(inlined)' | cut -c1-160 | head -70
