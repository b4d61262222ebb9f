//! The `ecs-gateway` command. Each command lives in its own file under
//! `src/cli/`; their exit codes are named in `ecs_gateway::cli::exit`.
#![forbid(unsafe_code)]

/// jemalloc: a call makes and frees many small short-lived allocations
/// (Cedar's values, the request's strings, the log line). Measured against
/// glibc's allocator and mimalloc in one run (docs/benchmarks.md): as fast
/// as mimalloc and 20 % faster than glibc's, holding 53 KiB per call in
/// flight against mimalloc's 79 (glibc's: 48).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ecs_gateway::cli::main().await
}
