#!/usr/bin/env bash
# Checks the Helm chart with the real Helm engine and the Kubernetes schemas
# (helm/check.py says what). Its Python tools live in a venv outside the
# clone (.ci/venv.sh).
# Usage: helm/check.sh [ECS_GATEWAY_BINARY]
set -euo pipefail
cd "$(dirname "$0")"
. ../.ci/venv.sh
venv="$(tool_venv helm-venv "helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4")"
binary="${1:-${CARGO_TARGET_DIR:-../target}/debug/ecs-gateway}"
exec "$venv/bin/python" check.py "$(realpath "$binary")"
