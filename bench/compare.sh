#!/usr/bin/env bash
# Before and after, in one run: the throughput of several builds of
# `ecs-gateway serve` (each as bench/lib.sh starts it, decision log on),
# measured in turn, ROUNDS times, on the varied workload (10,000 instances)
# and on the same call repeated; prints each build's median calls/s and its
# ratio to the first build's.
#
# Usage: bench/compare.sh NAME=BINARY NAME=BINARY… (env SECONDS_EACH, ROUNDS)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_EACH:-5}"
rounds="${ROUNDS:-3}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_harness

start 1 "$loadtest" upstream --threads 1; upstream="http://$ADDR/"
results="$(mktemp)"
for round in $(seq "$rounds"); do
    for build in "$@"; do
        name="${build%%=*}"
        GATEWAY_BIN="$(realpath "${build#*=}")" start_gateway "$upstream"
        for workload in 10000 0; do
            line="$(taskset -c 1 "$loadtest" load --threads 1 --instances "$workload" \
                --concurrency 64 --seconds "$seconds" --target "http://$ADDR")"
            echo "{\"build\":\"$name\",\"instances\":$workload,\"round\":$round,\"run\":$line}" >> "$results"
        done
        kill "$PID" 2> /dev/null || true
        sleep 0.2
    done
done
python3 - "$results" "$@" << 'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
names = [b.split("=", 1)[0] for b in sys.argv[2:]]
for instances, label in [(10000, "varied (10,000 instances)"), (0, "same call")]:
    print(f"\n| build | {label}: median calls/s | vs {names[0]} | runs |")
    print("|---|---|---|---|")
    base = None
    for name in names:
        rates = [r["run"]["calls_per_second"] for r in runs
                 if r["build"] == name and r["instances"] == instances]
        bad = [r["run"]["codes"] for r in runs if r["build"] == name and set(r["run"]["codes"]) != {"OK"}]
        median = statistics.median(rates)
        base = base or median
        note = f" (errors: {bad})" if bad else ""
        print(f"| {name} | {median:,.0f} | {100 * median / base:.0f} % | {', '.join(f'{r:,.0f}' for r in rates)}{note} |")
PY
