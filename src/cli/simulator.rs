//! `ecs-gateway simulator`: the ECS simulator alone, with the demo instances
//! and key, and on the same address STS, the instance metadata server and a
//! credentials URI.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Attach this RAM role (by name) to the instance the metadata server
    /// stands for, e.g. `ecs-gateway` (the second account's role).
    #[arg(long)]
    metadata_role: Option<String>,
    /// Refuse token-less metadata requests (hardened mode enforced).
    #[arg(long)]
    disable_imdsv1: bool,
    /// Hand out keys of this role ARN at `/credentials-uri`.
    #[arg(long)]
    credentials_uri_role: Option<String>,
    /// Make every issued key live this long (e.g. `30s`), to watch a client
    /// refresh them.
    #[arg(long, value_parser = humantime::parse_duration)]
    issued_lifetime: Option<Duration>,
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(args: Args) -> ExitCode {
    let mut config = simulator::Config::demo();
    config.throttle_per_second = args.throttle_per_second;
    config.metadata.role = args.metadata_role;
    config.metadata.imdsv1_allowed = !args.disable_imdsv1;
    config.credentials_uri_role = args.credentials_uri_role;
    config.issued_lifetime = args.issued_lifetime;
    let shutdown = server::shutdown_signal();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(&error, false),
    };
    let bound = listener.local_addr().unwrap_or(args.listen);
    out!(
        "ECS simulator on http://{bound} (AccessKey {}); STS there too (role {}, external ID {}), metadata under /latest/, credentials URI /credentials-uri",
        simulator::DEMO_ACCESS_KEY_ID,
        simulator::SECOND_ACCOUNT_ROLE_ARN,
        simulator::DEMO_EXTERNAL_ID
    );
    match simulator::Simulator::new(config)
        .serve(listener, shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error, false),
    }
}
