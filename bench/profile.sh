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
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_harness

start 1 "$loadtest" upstream --threads 1; upstream="http://$ADDR/"

start_gateway "$upstream"
gateway="$PID"

taskset -c 1 "$loadtest" load --threads 1 --target "http://$ADDR" \
    --concurrency 64 --seconds $((seconds + 2)) > /dev/null &
pids+=("$!")
sleep 1
perf record -q --call-graph dwarf,16384 -F 999 -p "$gateway" -o "$data" -- sleep "$seconds" 2> /dev/null
perf report -i "$data" --children --stdio -g none --percent-limit 2 2> /dev/null |
    grep -E '^ +[0-9]' | grep -v '(inlined)' | cut -c1-160 | head -70
