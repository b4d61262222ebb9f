#!/usr/bin/env bash
# Start-up time (docs/benchmarks.md): from process start to /readyz answering
# 200, with the shipped policies plus N synthetic ones
# (bench/synthetic-policies.py), three starts each.
#
# Usage: bench/ready.sh [N...]   (default: 0 1000 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin ecs-gateway
bin="$CARGO_TARGET_DIR/release/ecs-gateway"
# shellcheck source=bench/lib.sh
source bench/lib.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for count in "${@:-0 1000 10000}"; do
    for count_one in $count; do
        python3 bench/synthetic-policies.py "$count_one" "$work/policies"
        times=()
        for _ in 1 2 3; do
            port="$(free_port)" admin="$(free_port)"
            start="$(date +%s%N)"
            env ECS_GATEWAY_LISTEN="127.0.0.1:$port" ECS_GATEWAY_ADMIN_LISTEN="127.0.0.1:$admin" \
                ECS_GATEWAY_UPSTREAM_ENDPOINT="http://127.0.0.1:9/" ECS_GATEWAY_ACCOUNT_ID=1234567890123456 \
                ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchKey ALIBABA_CLOUD_ACCESS_KEY_SECRET=bench-secret \
                ECS_GATEWAY_POLICY_DIR="$work/policies" RUST_LOG=warn \
                "$bin" serve > /dev/null 2>&1 &
            pid=$!
            until curl -sf "http://127.0.0.1:$admin/readyz" > /dev/null 2>&1; do
                kill -0 "$pid" 2> /dev/null || { echo "the gateway exited" >&2; exit 1; }
                sleep 0.005
            done
            times+=($(( ($(date +%s%N) - start) / 1000000 )))
            kill "$pid"; wait "$pid" 2> /dev/null || true
        done
        echo "$((count_one + 11)) policies: ready in ${times[*]} ms"
    done
done
