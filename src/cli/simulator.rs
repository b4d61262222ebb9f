//! `ecs-gateway simulator`: the ECS simulator alone, with the demo instances
//! and key.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::fail;
use crate::{server, simulator};

/// `simulator`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Answer `Throttling` above this many calls per second.
    #[arg(long)]
    throttle_per_second: Option<u32>,
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(args: Args) -> ExitCode {
    let mut config = simulator::Config::demo();
    config.throttle_per_second = args.throttle_per_second;
    let shutdown = server::shutdown_signal();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(&error, false),
    };
    let bound = listener.local_addr().unwrap_or(args.listen);
    out!(
        "ECS simulator on http://{bound} (AccessKey {})",
        simulator::DEMO_ACCESS_KEY_ID
    );
    match simulator::Simulator::new(config)
        .serve(listener, shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error, false),
    }
}
