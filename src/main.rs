//! The `ecs-gateway` command. Each command lives in its own file under
//! `src/cli/`; their exit codes are named in `ecs_gateway::cli::exit`.
#![forbid(unsafe_code)]

/// mimalloc: a call makes and frees many small short-lived allocations
/// (Cedar's values, the request's strings, the log line), which it serves
/// from per-thread pages (docs/benchmarks.md has the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ecs_gateway::cli::main().await
}
