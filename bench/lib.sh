# Shared by the benchmark scripts (sourced, not run): building the harness,
# starting the roles and the gateway under test as side-by-side.sh measures
# it, and stopping them all when the script exits.

# Builds the gateway and the load-test harness in release; sets bin (the
# release directory) and loadtest; every process recorded in `pids` is
# killed when the script exits.
bench_harness() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    cargo build --release --quiet --bin ecs-gateway --example loadtest
    bin="$CARGO_TARGET_DIR/release"
    loadtest="$bin/examples/loadtest"
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
}

# Starts COMMAND… in the background, pinned to CORE, and waits for the
# address it prints on its first line; sets ADDR and PID.
start() {
    local core="$1"; shift
    local addr_file
    addr_file="$(mktemp)"
    taskset -c "$core" "$@" > "$addr_file" 2> /dev/null &
    PID=$!
    pids+=("$PID")
    for _ in $(seq 100); do [ -s "$addr_file" ] && break; sleep 0.05; done
    ADDR="$(head -1 "$addr_file")"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# `ecs-gateway serve` against UPSTREAM, pinned to core 0, with the shipped
# policies, identity from x-forwarded-client-cert as behind a mesh, and its
# JSON logs read through a pipe on core 1 (as a container runtime reads
# them). Extra environment in GATEWAY_ENV; log level in GATEWAY_LOG. Sets
# ADDR and PID once /readyz answers.
start_gateway() {
    local upstream="$1"
    local port admin
    port="$(free_port)"
    admin="$(free_port)"
    env ECS_GATEWAY_LISTEN="127.0.0.1:$port" ECS_GATEWAY_ADMIN_LISTEN="127.0.0.1:$admin" \
        ECS_GATEWAY_UPSTREAM_ENDPOINT="$upstream" ECS_GATEWAY_ACCOUNT_ID=1234567890123456 \
        ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchKey ALIBABA_CLOUD_ACCESS_KEY_SECRET=bench-secret \
        ECS_GATEWAY_TRUST_FORWARDED_CLIENT_CERT=true ECS_GATEWAY_POLICY_DIR=policies \
        ECS_GATEWAY_MAX_CONCURRENT_CALLS=2048 ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_CALLER=2048 \
        RUST_LOG="${GATEWAY_LOG:-info}" ${GATEWAY_ENV:-} \
        taskset -c 0 "${GATEWAY_BIN:-$bin/ecs-gateway}" serve 2>&1 | taskset -c 1 cat > /dev/null &
    pids+=("$!")
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$admin/readyz" > /dev/null 2>&1 && break
        sleep 0.05
    done
    PID="$(pgrep -n -f "${GATEWAY_BIN:-$bin/ecs-gateway} serve")"
    pids+=("$PID")
    ADDR="127.0.0.1:$port"
}
