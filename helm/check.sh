#!/usr/bin/env bash
# Checks the Helm chart with the real Helm engine and the Kubernetes schemas
# (helm/check.py says what). Tools go to a venv outside the clone, made once:
# ECS_GATEWAY_TOOLS (default /tmp/ecs-gateway-tools).
# Usage: helm/check.sh [ECS_GATEWAY_BINARY]
set -euo pipefail
cd "$(dirname "$0")"
tools="${ECS_GATEWAY_TOOLS:-/tmp/ecs-gateway-tools}"
venv="$tools/helm-venv"
requirements="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4"
if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$requirements" ]; then
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements
    echo "$requirements" > "$venv/.installed"
fi
binary="${1:-${CARGO_TARGET_DIR:-../target}/debug/ecs-gateway}"
exec "$venv/bin/python" check.py "$(realpath "$binary")"
