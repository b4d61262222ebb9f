//! The `ecs-gateway` command. Each command lives in its own file under
//! `src/cli/`; their exit codes are named in `ecs_gateway::cli::exit`.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ecs_gateway::cli::main().await
}
