//! The `ecs-gateway` command: parse the command line, load the settings, run
//! the subcommand. Exit codes: 0 success, 1 failure, 64 bad settings (before
//! any port is bound).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ecs_gateway::{client, config, demo, server, simulator, telemetry};

/// A gRPC gateway that authorizes, signs and forwards Alibaba Cloud ECS
/// ModifyInstanceNetworkSpec calls.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the gateway with its built-in ECS simulator and demo instances.
    Demo {
        /// gRPC listen address.
        #[arg(long, default_value = demo::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Forward to this ECS endpoint instead of the built-in simulator
        /// (credentials from ALIBABA_CLOUD_* variables).
        #[arg(long)]
        upstream_endpoint: Option<String>,
    },
    /// Run the ECS simulator alone, with the demo instances and key.
    Simulator {
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Answer `Throttling` above this many calls per second.
        #[arg(long)]
        throttle_per_second: Option<u32>,
    },
    /// Call a gateway and print the answer or the error with its details.
    Call(client::CallArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML settings file (also ECS_GATEWAY_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC listen address [default: 0.0.0.0:50051].
    #[arg(long)]
    listen: Option<String>,
    /// ECS endpoint; `{region}` is replaced by the region ID
    /// [default: https://ecs.{region}.aliyuncs.com].
    #[arg(long)]
    upstream_endpoint: Option<String>,
    /// Longest wait for ECS, such as 10s.
    #[arg(long)]
    upstream_timeout: Option<String>,
    /// Alibaba Cloud credentials file (INI).
    #[arg(long)]
    credentials_file: Option<PathBuf>,
}

const EXIT_CONFIG: u8 = 64;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn fail(error: &dyn std::error::Error, config: bool) -> ExitCode {
    eprintln!("ecs-gateway: {}", ecs_gateway::error::chain(error));
    ExitCode::from(if config { EXIT_CONFIG } else { 1 })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(env);
    match cli.command {
        Command::Serve(args) => {
            let overrides = config::Overrides {
                config_file: args.config,
                listen: args.listen,
                upstream_endpoint: args.upstream_endpoint,
                upstream_timeout: args.upstream_timeout,
                credentials_file: args.credentials_file,
            };
            let settings = match config::load(&overrides, env) {
                Ok(settings) => settings,
                Err(error) => return fail(&error, true),
            };
            match server::run(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error, error.is_config()),
            }
        }
        Command::Demo {
            listen,
            upstream_endpoint,
        } => {
            let external = upstream_endpoint.is_some();
            let overrides = config::Overrides {
                upstream_endpoint,
                ..config::Overrides::default()
            };
            let settings = match config::load(&overrides, env) {
                Ok(settings) => settings,
                Err(error) => return fail(&error, true),
            };
            match demo::run(listen, settings, external).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error, error.is_config()),
            }
        }
        Command::Simulator {
            listen,
            throttle_per_second,
        } => {
            let mut config = simulator::Config::demo();
            config.throttle_per_second = throttle_per_second;
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(listener) => listener,
                Err(error) => return fail(&error, false),
            };
            println!(
                "ECS simulator on http://{listen} (AccessKey {})",
                simulator::DEMO_ACCESS_KEY_ID
            );
            match simulator::Simulator::new(config)
                .serve(listener, server::shutdown_signal())
                .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error, false),
            }
        }
        Command::Call(args) => match client::call(&args).await {
            Ok(response) => {
                println!("{}", client::to_json(&response));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(1)
            }
        },
    }
}
