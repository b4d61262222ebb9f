#!/usr/bin/env bash
# Runs the generated clients against a real `ecs-gateway demo`, as CI does:
# Python (grpcio, stubs generated now with grpcio-tools, and server
# reflection through grpcio-reflection) and TypeScript on Node (protoc-gen-es
# stubs, Connect's gRPC transport). Python packages go to a venv outside the
# clone (.ci/venv.sh); npm packages to clients/typescript/node_modules, from
# npm's cache.
# Usage: clients/run.sh [ECS_GATEWAY_BINARY]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$(realpath "${1:-${CARGO_TARGET_DIR:-$here/../target}/debug/ecs-gateway}")"
. "$here/../.ci/venv.sh"
venv="$(tool_venv py-clients "$(grep -v '^#' "$here/python/requirements.txt" | tr '\n' ' ' | xargs)")"
work="$(mktemp -d)"
demo_pid=""
cleanup() {
    [ -n "$demo_pid" ] && kill "$demo_pid" 2> /dev/null && wait "$demo_pid" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The demo on free loopback ports; its first line says where.
(cd "$here/.." && exec "$binary" demo --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0) \
    > "$work/demo.out" 2> "$work/demo.log" &
demo_pid=$!
for _ in $(seq 100); do
    grep -q "gRPC on" "$work/demo.out" 2> /dev/null && break
    sleep 0.1
done
address="$(sed -n 's/^ecs-gateway demo: gRPC on //p' "$work/demo.out" | head -1)"
[ -n "$address" ] || { echo "the demo did not start:" >&2; cat "$work/demo.log" >&2; exit 1; }
echo "demo on $address"

echo "-- Python"
PATH="$venv/bin:$PATH" "$here/python/generate.sh" "$work/py"
PYTHONPATH="$work/py:$here/python" "$venv/bin/python" "$here/python/check_demo.py" "$address"
# The README's Python example, as a newcomer runs it.
example="$(PYTHONPATH="$work/py" "$venv/bin/python" "$here/python/example.py" "$address")"
echo "$example"
grep -q "^applied: request_id" <<< "$example"
grep -q "^refused: INVALID_ARGUMENT" <<< "$example"
grep -q "field: internet_max_bandwidth_out InvalidInternetMaxBandwidthOut.ValueNotSupported" <<< "$example"

echo "-- TypeScript"
cd "$here/typescript"
npm ci --no-audit --no-fund --silent
PATH="$PWD/node_modules/.bin:$PATH" npm run --silent generate
PATH="$PWD/node_modules/.bin:$PATH" npm run --silent build
node dist/check-demo.js "http://$address"
# The README's TypeScript example, as a newcomer runs it.
example="$(node dist/example.js "http://$address")"
echo "$example"
grep -q "^applied: requestId" <<< "$example"
grep -q "^refused: InvalidArgument" <<< "$example"
grep -q "field: internet_max_bandwidth_out InvalidInternetMaxBandwidthOut.ValueNotSupported" <<< "$example"
