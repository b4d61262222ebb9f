#!/usr/bin/env bash
# Instructions per decision (docs/benchmarks.md), counted by valgrind's
# callgrind: the same count whatever else the machine does, so that two
# builds compare exactly. For each workload (the same call; 10,000 varied
# instances) the example `decisions` runs 200 and 2,200 decisions; the
# difference over 2,000 is one decision's instructions, start-up excluded.
#
# Usage: bench/instructions.sh [NAME=EXAMPLE_BINARY…]  (default: this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ $# -eq 0 ]; then
    cargo build --release --quiet --example decisions
    set -- "this=$CARGO_TARGET_DIR/release/examples/decisions"
fi
count() {
    local out
    out="$(mktemp)"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" > /dev/null 2>&1
    awk '/^summary:/ {print $2}' "$out"
    rm -f "$out"
}
echo "| build | same call: instructions per decision | varied: instructions per decision |"
echo "|---|---|---|"
for build in "$@"; do
    name="${build%%=*}" binary="${build#*=}"
    row="| $name"
    for workload in same varied; do
        low="$(count "$binary" "$workload" 200)"
        high="$(count "$binary" "$workload" 2200)"
        row="$row | $(( (high - low) / 2000 ))"
    done
    echo "$row |"
done
