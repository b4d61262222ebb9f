#!/usr/bin/env bash
# Generates the Python stubs from proto/ into OUT (default: gen/).
# Usage: generate.sh [OUT]   (with grpcio-tools installed)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/gen}"
mkdir -p "$out"
python -m grpc_tools.protoc \
    -I "$here/../../proto" \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    ecsgateway/v1/instance_network.proto ecsgateway/v1/authorization.proto
