//! `ecs-gateway demo`: the whole flow on one machine with one command. The
//! ECS simulator runs in-process on a loopback port with the demo world
//! ([`simulator::Config::demo`]) and the gateway signs with the simulator's
//! demo key. Given `--upstream-endpoint` (and credentials in the
//! environment), the gateway forwards there instead.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::{self, Config};
use crate::credentials::{self, Credentials, Secret};
use crate::policy::{DependentRule, When};
use crate::server::{self, RunError};
use crate::simulator::{
    self, DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, DEMO_ACCOUNT_ID, DEMO_REGION,
};

/// Default gRPC listen address of the demo.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default admin listen address of the demo.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The gateway failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The simulator could not bind its port.
    #[error("cannot start the ECS simulator")]
    Simulator(#[source] std::io::Error),
    /// The demo trusts whatever identity a caller claims: loopback only.
    #[error(
        "the demo trusts the identity callers claim (x-forwarded-client-cert), so it listens on loopback only, not {0}"
    )]
    NotLoopback(SocketAddr),
}

impl Error {
    /// True when the settings are at fault (exit code 64).
    pub fn is_config(&self) -> bool {
        match self {
            Self::Config(_) | Self::NotLoopback(_) => true,
            Self::Run(e) => e.is_config(),
            Self::Simulator(_) => false,
        }
    }
}

/// Runs the demo until SIGINT or SIGTERM.
///
/// # Errors
///
/// A port is taken, or settings for an external endpoint are wrong.
pub async fn run(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    mut settings: Config,
    external: bool,
    settings_file: bool,
) -> Result<(), Error> {
    for addr in [listen, admin_listen] {
        if !addr.ip().is_loopback() {
            return Err(Error::NotLoopback(addr));
        }
    }
    // Registered before anything is said to be up (see shutdown_signal).
    let shutdown = server::shutdown_signal();
    let simulator_addr = if external {
        None
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::Simulator)?;
        let addr = listener.local_addr().map_err(Error::Simulator)?;
        let sim = simulator::Simulator::new(simulator::Config::demo());
        tokio::spawn(sim.serve(listener, server::shutdown_signal()));
        settings.upstream.endpoint = format!("http://{addr}");
        settings.credentials = Some(credentials::Config::Static(Credentials {
            access_key_id: DEMO_ACCESS_KEY_ID.into(),
            access_key_secret: Secret::new(DEMO_ACCESS_KEY_SECRET),
            security_token: None,
        }));
        // The second account, in the folder "production", through its role
        // (STS AssumeRole at the simulator, with the role's ExternalId).
        settings.sts.endpoint = format!("http://{addr}");
        if settings.accounts.is_empty() {
            settings.accounts = vec![demo_second_account()];
        }
        Some(addr)
    };
    // The demo stands in for a mesh sidecar: callers name themselves in
    // x-forwarded-client-cert (`call --as`).
    settings.identity.trust_forwarded_client_cert = true;
    // grpcurl and the clients' checks list the services.
    settings.server.reflection = true;
    settings
        .policy
        .account_id
        .get_or_insert_with(|| DEMO_ACCOUNT_ID.to_owned());
    // Without its settings file, the demo's own dependent action.
    if !settings_file {
        settings.policy.dependent_actions = vec![demo_dependent_action()];
    }
    let stack = server::build(&settings)?;
    let _watchers = server::watch_policies(&stack);
    let listener = server::bind(listen, server::LISTEN_SETTING).await?;
    let admin = server::bind(admin_listen, server::ADMIN_LISTEN_SETTING).await?;
    // With port 0 the system picks the port: show the one bound.
    let listen = listener.local_addr().unwrap_or(listen);
    let admin_listen = admin.local_addr().unwrap_or(admin_listen);
    println!(
        "{}",
        banner(
            listen,
            simulator_addr,
            &settings.upstream.endpoint,
            &settings.policy.dir
        )
    );
    println!("Metrics: http://{admin_listen}/metrics (also /healthz, /readyz)");
    server::serve_on(stack, listener, Some(admin), shutdown).await?;
    Ok(())
}

/// The demo's second account: `2234567890123456`, reached through the
/// role `ecs-gateway` in it, which trusts the demo's account with an
/// ExternalId.
pub fn demo_second_account() -> credentials::Account {
    credentials::Account {
        id: simulator::SECOND_ACCOUNT_ID.into(),
        role_arn: simulator::SECOND_ACCOUNT_ROLE_ARN.into(),
        external_id: Some(simulator::DEMO_EXTERNAL_ID.into()),
    }
}

/// The demo's settings file, read by `demo` when it exists (from the
/// repository's root).
pub const SETTINGS_FILE: &str = "examples/demo.toml";

/// The demo requires `ecs:AllocatePublicIpAddress` whenever a call would
/// allocate a public IP, as an operator would; the same as
/// [`SETTINGS_FILE`]'s, for a demo run where that file is not.
pub fn demo_dependent_action() -> DependentRule {
    DependentRule {
        action: "ecs:ModifyInstanceNetworkSpec".into(),
        requires: "ecs:AllocatePublicIpAddress".into(),
        when: When::AllocatesPublicIp,
    }
}

fn banner(
    listen: SocketAddr,
    simulator: Option<SocketAddr>,
    endpoint: &str,
    policies: &Path,
) -> String {
    let upstream = match simulator {
        Some(addr) => format!(
            "ECS simulator on http://{addr}: region {DEMO_REGION}, account {DEMO_ACCOUNT_ID}\n\
             \x20 i-demo-prepaid   subscription, VPC, 0 Mbit/s, no public IP\n\
             \x20 i-demo-postpaid  pay-as-you-go, VPC, 5 Mbit/s, public IP 47.96.10.20\n\
             \x20 i-demo-eip       pay-as-you-go, VPC, EIP bound (bandwidth changes refused)\n\
             \x20 i-demo-stopped   pay-as-you-go, VPC, Stopped"
        ),
        None => format!("forwarding to {endpoint}"),
    };
    let endpoint_flag = if listen.to_string() == DEFAULT_LISTEN {
        String::new()
    } else {
        format!(" --endpoint http://{listen}")
    };
    // The binary as it was started: cargo builds it where CARGO_TARGET_DIR
    // says, not always target/release.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let cwd = std::env::current_dir().ok()?;
            Some(
                exe.strip_prefix(&cwd)
                    .map_or(exe.clone(), Path::to_path_buf),
            )
        })
        .map_or_else(|| "ecs-gateway".to_owned(), |p| p.display().to_string());
    let policies = policies.display();
    format!(
        "ecs-gateway demo: gRPC on {listen}\n{upstream}\n\n\
         Callers (--as): spiffe://demo.local/sa/netops (NetworkAdmins), spiffe://demo.local/sa/webapp (AppTeams),\n\
         \x20 spiffe://demo.local/sa/capacity (CapacityPlanners); policies in {policies}, reloaded on change.\n\n\
         In another terminal:\n\
         \x20 {binary} call{endpoint_flag} --as spiffe://demo.local/sa/netops --instance-id i-demo-prepaid --bandwidth-out 20\n\
         \x20 {binary} call{endpoint_flag} --as spiffe://demo.local/sa/webapp --instance-id i-demo-postpaid --bandwidth-out 8\n\
         \x20 {binary} call{endpoint_flag} --as spiffe://demo.local/sa/webapp --instance-id i-demo-stopped --bandwidth-out 5 --allocate-public-ip true\n\
         Ctrl-C stops the demo."
    )
}
