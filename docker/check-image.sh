#!/usr/bin/env bash
# Checks the image docker/build-image.sh built (ARCHIVE, an oci-archive), then
# starts it as the Helm chart runs it and calls it:
#   1. its settings and files (skopeo inspect, docker/image.py inspect): user
#      65532, the entrypoint, no shell nor any program but the gateway and
#      shared objects, everything root's but nonroot's home, nothing
#      world-writable or setuid, the CA bundle, a size bound;
#   2. against the Dockerfile (docker/image.py compare): USER, WORKDIR,
#      ENTRYPOINT, CMD, EXPOSE, ENV, LABEL, every COPY's destination and
#      contents, the version and licence as Cargo.toml says;
#   3. started with podman, read-only root and no /tmp, no capabilities: the
#      demo (the gateway, its ECS simulator, the sample policies under
#      /etc/ecs-gateway/policies) answers /readyz 200, runs as 65532, a write
#      to its root fails, the image's own `ecs-gateway call` from the host is
#      applied and a forbidden call denied; it stops cleanly on SIGTERM; its
#      root holds the image's files unchanged (podman diff, checksums).
# Fails on any difference; stops and removes all it started (trap). Installs
# skopeo, podman and runc when missing (docker/need-packages.sh); podman's
# storage is a temporary directory.
# Usage: docker/check-image.sh ARCHIVE
set -euo pipefail
archive="$(realpath "${1:?usage: docker/check-image.sh ARCHIVE}")"
cd "$(dirname "$0")/.."
started=$SECONDS
docker/need-packages.sh skopeo=skopeo podman=podman runc=runc
. docker/image-args.sh

work="$(mktemp -d "${TMPDIR:-/tmp}/ecs-gateway-check.XXXXXX")"
# runc, not crun: Debian 12's crun (1.8) refuses a host with cgroup v1 and v2
# mounted together ("cgroups in hybrid mode not supported"), as CI's VMs are.
# cgroupfs: no systemd to ask. vfs: no overlay mount, whatever the host's
# filesystem.
podman=(podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp"
    --storage-driver vfs --runtime runc --cgroup-manager cgroupfs --events-backend file)
container=""
cleanup() {
    if [ -n "$container" ]; then
        "${podman[@]}" rm --force --time 0 "$container" > /dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "check-image: $*" >&2
    if [ -n "$container" ]; then
        echo "check-image: the container's output:" >&2
        "${podman[@]}" logs "$container" 2>&1 | tail -20 >&2 || true
    fi
    exit 1
}
ok() {
    printf '  ok   %-44s %s\n' "$1" "$2"
}

echo "-- the image (skopeo inspect, docker/image.py inspect)"
skopeo inspect --config "oci-archive:$archive" > "$work/config.json"
skopeo inspect "oci-archive:$archive" | python3 -c '
import json, sys
i = json.load(sys.stdin)
print("  %s: manifest %s, created %s, %s/%s, %d layer(s)"
      % (sys.argv[1], i["Digest"], i["Created"], i["Os"], i["Architecture"], len(i["Layers"])))
' "$archive"
python3 docker/image.py list "$archive" > "$work/files.json"
python3 docker/image.py inspect "$work/config.json" "$work/files.json" "$archive"

echo "-- against the Dockerfile (docker/image.py compare)"
python3 docker/image.py compare Dockerfile "$work/config.json" "$work/files.json" \
    --arg "VERSION=$IMAGE_VERSION" --arg "REVISION=$IMAGE_REVISION"

echo "-- started as the chart runs it (podman, read-only root), called from the host"
read -r grpc admin < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
# The demo listens on loopback only (it trusts the identity callers claim),
# so the container shares the host's network. The chart's securityContext:
# a read-only root without even a /tmp, no capabilities, no privilege gain;
# the image's own USER, not --user, so that it is what is tested. Limits:
# podman asks for 1048576 open files and processes by default, which root
# without CAP_SYS_RESOURCE (as in CI's VMs) cannot grant: "setrlimit
# RLIMIT_NOFILE: Operation not permitted".
container="$("${podman[@]}" create --quiet --read-only --read-only-tmpfs=false \
    --network host --cap-drop all --security-opt no-new-privileges \
    --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    "oci-archive:$archive" \
    demo --listen "127.0.0.1:$grpc" --admin-listen "127.0.0.1:$admin")"
root="$("${podman[@]}" mount "$container")"
# The root as the runtime prepares it (mount points, /etc/mtab), before the
# gateway runs: what it must still be after the gateway stops.
"${podman[@]}" init "$container" > /dev/null
python3 docker/image.py snapshot "$root" > "$work/before.json"
"${podman[@]}" start "$container" > /dev/null
pid="$("${podman[@]}" inspect --format '{{.State.Pid}}' "$container")"

readyz="http://127.0.0.1:$admin/readyz"
status=0
for _ in $(seq 60); do
    status="$(python3 -c '
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print(0)
' "$readyz")"
    [ "$status" = 200 ] && break
    [ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$container")" = true ] ||
        fail "the container exited before it was ready"
    sleep 0.5
done
[ "$status" = 200 ] || fail "$readyz answered $status within 30 s"
ok "/readyz" "$readyz: $status, $(( SECONDS - started )) s after the check began"

ids="$(awk '/^[UG]id:/ { print $2, $3, $4, $5 }' "/proc/$pid/status" | tr '\n' ' ')"
[ "$ids" = "65532 65532 65532 65532 65532 65532 65532 65532 " ] || fail "the gateway runs as uid/gid $ids"
ok "runs as 65532" "real, effective, saved and filesystem uid and gid"
capabilities="$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")"
[ "$capabilities" = 0000000000000000 ] || fail "the gateway has capabilities $capabilities"
ok "no capabilities" "CapEff $capabilities"
options="$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo")"
[[ ",$options," == *,ro,* ]] || fail "its root is mounted $options"
ok "root mounted read-only" "/ $options"
probe="/proc/$pid/root/ecs-gateway-write-probe"
if : 2> "$work/probe" > "$probe"; then
    rm -f "$probe"
    fail "a write to the container's root succeeded"
fi
ok "a write to its root fails" "$(sed 's/^.*: //' "$work/probe")"

# The image's own client, run from the host.
cp "$root/usr/local/bin/ecs-gateway" "$work/ecs-gateway"
call=("$work/ecs-gateway" call --endpoint "http://127.0.0.1:$grpc")
answer="$("${call[@]}" --as spiffe://demo.local/sa/netops --instance-id i-demo-prepaid --bandwidth-out 20 2>&1)" ||
    fail "netops's call failed: $answer"
[[ "$answer" == applied:* ]] || fail "netops's call: $answer"
ok "a permitted call is applied" "$answer"
code=0
answer="$("${call[@]}" --as spiffe://demo.local/sa/webapp --instance-id i-demo-stopped \
    --bandwidth-out 5 --allocate-public-ip true 2>&1)" || code=$?
[ "$code" = 4 ] && [[ "$answer" == PermissionDenied:* ]] ||
    fail "webapp's public IP was not denied (exit $code): $answer"
ok "a forbidden call is denied" "exit $code, $(head -1 <<< "$answer" | cut -c1-90)…"

"${podman[@]}" stop --time 10 "$container" > /dev/null
exit_code="$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$container")"
[ "$exit_code" = 0 ] || fail "the gateway exited with $exit_code on SIGTERM"
ok "stops on SIGTERM" "exit 0"
"${podman[@]}" diff "$container" > "$work/diff"
python3 docker/image.py snapshot "$root" > "$work/after.json"
python3 docker/image.py unchanged "$work/files.json" "$work/before.json" "$work/after.json" \
    --diff "$work/diff" || fail "the run changed the container's root"
echo "check-image: $archive passed, $(( SECONDS - started )) s"
