#!/usr/bin/env bash
# Accounts for the CPU the gateway spends per call beyond the bare forwarder
# (docs/benchmarks.md, "Where the time goes"). One run, on the varied
# workload (10,000 instances, bandwidths 1–100):
#
# 1. the forwarder and the gateway, each pinned to core 0 under the same
#    closed loop, profiled with `perf record` (call stacks by DWARF); each
#    sample's stack names its part (bench/account.py), and each part's CPU
#    per call is its samples' time over the calls served meanwhile; the
#    gateway's stacks are drawn as a flame graph (bench/flamegraph.py);
# 2. the gateway with parts switched off, one at a time, in the same run:
#    each part's cost as the difference of two measured throughputs.
#
# Usage: bench/account.sh [SECONDS] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}"
out="${2:-bench/results}"
instances="${INSTANCES:-10000}"
mkdir -p "$out"
# The profiles (tens of MB) stay out of OUT.
work="$(mktemp -d)"
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_harness

load() {
    taskset -c 1 "$loadtest" load --threads 1 --instances "$instances" --concurrency 64 \
        --warmup 1 --seconds "$seconds" --target "http://$1"
}
calls() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert set(r["codes"])=={"OK"}, r["codes"]; print(r["calls"])' "$1"; }
rate() { python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["calls_per_second"]))' "$1"; }

start 1 "$loadtest" upstream --threads 1; upstream="http://$ADDR/"

# 1. Profiles.
profile() {
    local name="$1" addr="$2" pid="$3" result
    load "$addr" > "$out/account-$name.json" &
    local loader=$!
    sleep 1
    perf record -q --call-graph dwarf,16384 -F 999 -p "$pid" -o "$work/$name.perf.data" -- sleep "$seconds" 2> /dev/null
    wait "$loader"
    result="$(cat "$out/account-$name.json")"
    perf script --no-inline -F comm,tid,period,ip,sym -i "$work/$name.perf.data" 2> /dev/null > "$work/$name.perf.txt"
    rm -f "$work/$name.perf.data"
    echo "$name=$work/$name.perf.txt:$(calls "$result")"
}
start 0 "$loadtest" forwarder --threads 1 --upstream "$upstream"
forwarder="$(profile forwarder "$ADDR" "$PID")"
start_gateway "$upstream"
gateway="$(profile gateway "$ADDR" "$PID")"
kill "$PID" 2> /dev/null || true
python3 bench/account.py "$forwarder" "$gateway" --json "$out/account.json" \
    --folded "$work/gateway.folded" | tee "$out/account.md"
python3 bench/flamegraph.py "$work/gateway.folded" "$out/gateway-profile.svg" \
    "ecs-gateway serve, varied workload: CPU by part and call stack (perf, DWARF)"

# 2. Parts switched off, one at a time (throughput, no profiler).
echo | tee -a "$out/account.md"
echo "| gateway (same run, varied workload) | calls/s | µs of a core per call |" | tee -a "$out/account.md"
echo "|---|---|---|" | tee -a "$out/account.md"
variant() {
    local name="$1" result
    shift
    GATEWAY_ENV="$*" start_gateway "$upstream"
    result="$(load "$ADDR")"
    kill "$PID" 2> /dev/null || true
    echo "| $name | $(rate "$result") | $(python3 -c "print(round(1e6/$(rate "$result"), 1))") |" | tee -a "$out/account.md"
}
start 0 "$loadtest" forwarder --threads 1 --upstream "$upstream"
result="$(load "$ADDR")"
kill "$PID" 2> /dev/null || true
echo "| the bare forwarder | $(rate "$result") | $(python3 -c "print(round(1e6/$(rate "$result"), 1))") |" | tee -a "$out/account.md"
variant "as shipped (decision log on)"
variant "no decision log (RUST_LOG=info,decision=off)" RUST_LOG=info,decision=off
variant "no log lines and no spans (RUST_LOG=off)" RUST_LOG=off
rm -rf "$work"
