//! `ecs-gateway demo`: the gateway with its built-in ECS simulator, the
//! sample policies and identities.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{env, fail};
use crate::config::{self, table};
use crate::demo;

/// `demo`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// gRPC listen address.
    #[arg(long, default_value = demo::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Admin HTTP address: /metrics, /healthz, /readyz.
    #[arg(long, default_value = demo::DEFAULT_ADMIN_LISTEN)]
    admin_listen: SocketAddr,
    /// Forward to this ECS endpoint instead of the built-in simulator
    /// (credentials from ALIBABA_CLOUD_* variables).
    #[arg(long)]
    upstream_endpoint: Option<String>,
    /// The policy directory (as `serve`, from ECS_GATEWAY_POLICY_DIR when
    /// set: the image sets it to its sample policies).
    #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
    policies: PathBuf,
    /// The demo's settings file (account, dependent actions), read when
    /// it exists; its built-in ones otherwise.
    #[arg(long, env = "ECS_GATEWAY_CONFIG", default_value = demo::SETTINGS_FILE)]
    config: PathBuf,
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(args: Args) -> ExitCode {
    let Args {
        listen,
        admin_listen,
        upstream_endpoint,
        policies,
        config,
    } = args;
    let external = upstream_endpoint.is_some();
    // The default file only when it is there (the binary may run outside
    // the repository); a file named on purpose must be.
    let named = config != std::path::Path::new(demo::SETTINGS_FILE);
    let settings_file = named || config.is_file();
    let mut flags =
        config::Flags::default().with(table::POLICY_DIR, policies.display().to_string());
    if settings_file {
        flags = flags.with(table::CONFIG, config.display().to_string());
    }
    if let Some(endpoint) = upstream_endpoint {
        flags = flags.with(table::UPSTREAM_ENDPOINT, endpoint);
    }
    let settings = match config::load(&flags, env) {
        Ok(settings) => settings,
        Err(error) => return fail(&error, true),
    };
    match demo::run(listen, admin_listen, settings, external, settings_file).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error, error.is_config()),
    }
}
