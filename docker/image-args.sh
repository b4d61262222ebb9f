# shellcheck shell=bash disable=SC2034  # sourced: the variables are its output
# Sourced by docker/build-image.sh and docker/check-image.sh, from the
# repository's root: the Dockerfile's build arguments, as both compute them.
#   IMAGE_VERSION  Cargo.toml's version (the label org.opencontainers.image.version)
#   IMAGE_REVISION the checked-out commit, or "unknown" outside a git clone
#   IMAGE_CREATED  SOURCE_DATE_EPOCH, else the commit's time, else 0: the
#                  image's timestamps, so that a rebuild of the same commit
#                  and binary gives the same image digest
IMAGE_VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')"
IMAGE_REVISION="$(git rev-parse HEAD 2> /dev/null || echo unknown)"
IMAGE_CREATED="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2> /dev/null || echo 0)}"
