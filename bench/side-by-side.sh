#!/usr/bin/env bash
# Measures the gateway against the ceilings of its own shape, side by side in
# one run (docs/benchmarks.md): a bare tonic echo server of the same proto, a
# bare forwarder (tonic + one pooled reqwest POST), and `ecs-gateway serve`
# with the shipped policies and the decision log on, as shipped.
#
# The server under test is pinned to core 0; the load generator, the
# fixed-answer upstream and the log reader share core 1. For each server:
# closed-loop throughput (64 calls in flight), open-loop latency at a series
# of fixed rates (latency from each call's scheduled start), and resident
# memory per call in flight (calls held by an upstream that answers after 2 s).
# The forwarder and the gateway also run the varied workload (10,000
# instances, varied bandwidths): throughput and latency at 1,000 calls/s.
# Prints a table with the ratios; writes the raw results and a plot of
# latency against offered load to OUT (default bench/results).
#
# Usage: bench/side-by-side.sh [SECONDS] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
out="${2:-bench/results}"
rates="${RATES:-500 1000 2000 4000 8000}"
mkdir -p "$out"
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_harness

load() { taskset -c 1 "$loadtest" load --threads 1 --seconds "$seconds" "$@"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

start 1 "$loadtest" upstream --threads 1; upstream="http://$ADDR/"
start 1 "$loadtest" upstream --threads 1 --delay-ms 2000; slow_upstream="http://$ADDR/"

declare -A addr
start 0 "$loadtest" echo --threads 1; addr[echo]="$ADDR"
start 0 "$loadtest" forwarder --threads 1 --upstream "$upstream"; addr[forwarder]="$ADDR"
start_gateway "$upstream"; addr[gateway]="$ADDR"

results="$out/results.jsonl"
: > "$results"
for server in echo forwarder gateway; do
    echo "== $server on core 0: closed loop, 64 in flight, ${seconds}s" >&2
    line="$(load --target "http://${addr[$server]}" --concurrency 64)"
    echo "{\"server\":\"$server\",\"run\":$line}" >> "$results"
    for rate in $rates; do
        echo "== $server: open loop at $rate calls/s" >&2
        line="$(load --target "http://${addr[$server]}" --rate "$rate")"
        echo "{\"server\":\"$server\",\"run\":$line}" >> "$results"
    done
done

# The varied workload: 10,000 distinct instances, bandwidths 1–100 Mbit/s,
# so that nothing decided or sent can be reused from an identical call.
for server in forwarder gateway; do
    echo "== $server, varied workload: closed loop and 1,000 calls/s" >&2
    line="$(load --target "http://${addr[$server]}" --instances 10000 --concurrency 64)"
    echo "{\"server\":\"$server, varied\",\"run\":$line}" >> "$results"
    line="$(load --target "http://${addr[$server]}" --instances 10000 --rate 1000)"
    echo "{\"server\":\"$server, varied\",\"run\":$line}" >> "$results"
done

# Tracing on: the gateway exporting every span (and a tenth of the traces)
# to a real OTLP/gRPC receiver on core 1.
start 1 "$loadtest" otlp --threads 1; otlp="http://$ADDR"
for ratio in 1.0 0.1; do
    GATEWAY_ENV="OTEL_EXPORTER_OTLP_ENDPOINT=$otlp OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=$ratio" \
        start_gateway "$upstream"
    echo "== gateway, traces sampled at $ratio: closed loop and 1,000 calls/s" >&2
    line="$(load --target "http://$ADDR" --concurrency 64)"
    echo "{\"server\":\"gateway, traces $ratio\",\"run\":$line}" >> "$results"
    line="$(load --target "http://$ADDR" --rate 1000)"
    echo "{\"server\":\"gateway, traces $ratio\",\"run\":$line}" >> "$results"
    kill "$PID" 2> /dev/null || true
done

# Memory per call in flight: N calls held for 2 s by the slow upstream.
for server in forwarder gateway; do
    if [ "$server" = forwarder ]; then
        start 0 "$loadtest" forwarder --threads 1 --upstream "$slow_upstream"
    else
        start_gateway "$slow_upstream"
    fi
    a="$ADDR" p="$PID"
    load --target "http://$a" --concurrency 10 --seconds 3 --warmup 0 > /dev/null
    idle="$(rss_kib "$p")"
    taskset -c 1 "$loadtest" load --threads 1 --target "http://$a" --concurrency 1000 --seconds 4 --warmup 0 > /dev/null &
    loader=$!
    sleep 3
    busy="$(rss_kib "$p")"
    wait "$loader"
    echo "{\"server\":\"$server\",\"memory\":{\"in_flight\":1000,\"idle_kib\":$idle,\"busy_kib\":$busy}}" >> "$results"
done

python3 bench/report.py "$results" "$out"
