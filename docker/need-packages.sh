#!/usr/bin/env bash
# Installs Debian packages only when what they provide is missing, as
# .ci/cvc5.sh does for cvc5: each argument is COMMAND=PACKAGE (installed when
# COMMAND is not on PATH) or /PATH=PACKAGE (installed when the file is
# missing). A machine that has them all changes nothing and reaches no
# registry; one that lacks some installs them in one apt-get call.
# Usage: docker/need-packages.sh buildah=buildah /etc/ssl/certs/ca-certificates.crt=ca-certificates
set -euo pipefail
missing=()
for want in "$@"; do
    what="${want%%=*}"
    package="${want#*=}"
    case "$what" in
        /*) [ -e "$what" ] || missing+=("$package") ;;
        *) command -v "$what" > /dev/null || missing+=("$package") ;;
    esac
done
if [ "${#missing[@]}" = 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "need-packages: installing ${missing[*]} (Debian)" >&2
# The package lists may be missing or stale on a fresh machine.
$sudo apt-get install -y --no-install-recommends "${missing[@]}" > /dev/null 2>&1 || {
    $sudo apt-get update > /dev/null
    $sudo apt-get install -y --no-install-recommends "${missing[@]}" > /dev/null
}
