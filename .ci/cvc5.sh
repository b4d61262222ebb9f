#!/usr/bin/env bash
# The SMT solver `policy diff` and `policy lint` drive (cedar-policy-symcc):
# Debian's package `cvc5` (/usr/bin/cvc5), installed when neither `cvc5` is
# on PATH nor CVC5 names one. apt keeps the downloaded .deb files in its own
# cache (/var/cache/apt/archives), outside the clone.
set -euo pipefail
if [ -n "${CVC5:-}" ] && [ -x "$CVC5" ]; then
    echo "cvc5: $CVC5 ($("$CVC5" --version | head -1))"
    exit 0
fi
if command -v cvc5 > /dev/null; then
    echo "cvc5: $(command -v cvc5) ($(cvc5 --version | head -1))"
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine.
$sudo apt-get install -y --no-install-recommends cvc5 > /dev/null 2>&1 || {
    $sudo apt-get update > /dev/null
    $sudo apt-get install -y --no-install-recommends cvc5 > /dev/null
}
echo "cvc5: installed $(command -v cvc5) ($(cvc5 --version | head -1))"
