#!/usr/bin/env bash
# Times `policy diff` (and `policy lint`) on the shipped policies plus N
# synthetic ones (bench/synthetic-policies.py), for N in 0 30 100 300: the
# directory against itself (equivalent), the bandwidth cap lowered from 100
# to 80 Mbit/s (narrows), a region added to control.allowed-regions
# (widens). Needs cvc5 (.ci/cvc5.sh). Figures: docs/benchmarks.md.
# Usage: bench/policy-proofs.sh [ECS_GATEWAY_BINARY] [COUNTS...]
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
bin="$(realpath "${1:-${CARGO_TARGET_DIR:-$root/target}/debug/ecs-gateway}")"
shift || true
counts="${*:-0 30 100 300}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/gateway.toml" <<'TOML'
[policy]
account_id = "1234567890123456"

[[policy.dependent_actions]]
action = "ecs:ModifyInstanceNetworkSpec"
requires = "ecs:AllocatePublicIpAddress"
when = "allocates_public_ip"
TOML
run() {
    /usr/bin/time -f "%e s wall, %M KB max RSS" "$bin" policy diff --active "$1" --candidate "$2" \
        --config "$work/gateway.toml" > "$work/out" 2> "$work/err"
    echo "  exit $?: $(head -1 "$work/out")"
    echo "  $(tail -1 "$work/err")"
}
cd "$root"
for n in $counts; do
    base="$work/base-$n"
    if [ "$n" = 0 ]; then cp -r policies "$base"; else python3 bench/synthetic-policies.py "$n" "$base"; fi
    widened="$work/widened-$n" narrowed="$work/narrowed-$n"
    cp -r "$base" "$widened"
    cp -r "$base" "$narrowed"
    sed -i 's/"cn-beijing"\]/"cn-beijing", "us-west-1"]/' "$widened/control/guardrails.cedar"
    sed -i 's/internet_max_bandwidth_out > 100/internet_max_bandwidth_out > 80/' "$narrowed/control/guardrails.cedar"
    echo "== $n synthetic (+14 shipped): the directory against itself"; run "$base" "$base"
    echo "== $n: the cap lowered from 100 to 80 Mbit/s (narrows)"; run "$base" "$narrowed"
    echo "== $n: a region added to control.allowed-regions (widens)"; run "$base" "$widened"
done
echo "== policy lint, shipped"
/usr/bin/time -f "%e s wall" "$bin" policy lint --policies policies 2>&1 | tail -2
