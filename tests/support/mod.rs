//! Starts the ECS simulator and the gateway on `127.0.0.1:0` and hands out a
//! real tonic client over TCP. Both servers stop when the harness drops.
//!
//! Every gateway a test starts is built from a [`config`] (the shipped
//! policies, the demo's account and identity trust, a simulator to forward
//! to) with the fields the test needs changed, and served by [`spawn`]
//! through the production wiring: `server::build`, then `server::serve_on`
//! with a shutdown future, as `ecs-gateway serve` does.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ecs_gateway::config::{self, Config};
use ecs_gateway::credentials::{self, Credentials, Secret};
use ecs_gateway::pb::instance_network_service_client::InstanceNetworkServiceClient;
use ecs_gateway::simulator::{self, Simulator};
use ecs_gateway::telemetry::Metrics;
use ecs_gateway::{pb, server, upstream};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use ecs_gateway::simulator::{
    DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, DEMO_ACCOUNT_ID, DEMO_REGION,
};

/// The demo's network admin, allowed almost everything in cn-hangzhou.
pub const NETOPS: &str = "spiffe://demo.local/sa/netops";
/// The demo's application team.
pub const WEBAPP: &str = "spiffe://demo.local/sa/webapp";

/// The shipped policy directory.
pub fn policies_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The settings of a test's gateway, as the demo has them: the shipped
/// policies with the demo's account and dependent action, callers named in
/// `x-forwarded-client-cert` (trusted), signing with the demo key and
/// forwarding to `endpoint`; both ports on `127.0.0.1:0`. The rest are
/// `serve`'s defaults. Change what the test is about, then [`spawn`].
pub fn config(endpoint: &str) -> Config {
    let mut config = config::load(&config::Flags::default(), |_| None).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_listen = "127.0.0.1:0".parse().unwrap();
    config.upstream.endpoint = endpoint.to_owned();
    config.credentials = Some(credentials::Config::Static(demo_credentials()));
    config.identity.trust_forwarded_client_cert = true;
    config.policy.dir = policies_dir();
    config.policy.account_id = Some(DEMO_ACCOUNT_ID.into());
    config.policy.dependent_actions = vec![ecs_gateway::demo::demo_dependent_action()];
    config
}

/// A gateway serving on loopback ports; it stops (as on SIGTERM) when
/// dropped.
pub struct Gateway {
    pub addr: std::net::SocketAddr,
    /// The admin port: /metrics, /healthz, /readyz.
    pub admin_addr: std::net::SocketAddr,
    pub metrics: Arc<Metrics>,
    /// A client connected to `addr`.
    pub client: InstanceNetworkServiceClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), server::RunError>>,
}

/// Builds the gateway `config` describes and serves it on the ports it
/// names, as `ecs-gateway serve` does (without its policy watchers). The
/// gateway's logs go to the test's captured output.
pub async fn spawn(config: Config) -> Gateway {
    let stack = server::build(&config).unwrap();
    capture_logs();
    let metrics = stack.metrics.clone();
    let listener = server::bind(config.listen, server::LISTEN_SETTING)
        .await
        .unwrap();
    let admin = server::bind(config.admin_listen, server::ADMIN_LISTEN_SETTING)
        .await
        .unwrap();
    let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server::serve_on(stack, listener, Some(admin), async {
        let _ = stopped.await;
    }));
    Gateway {
        addr,
        admin_addr,
        metrics,
        client: InstanceNetworkServiceClient::new(channel(addr).await),
        stop: Some(stop),
        served,
    }
}

impl Gateway {
    /// Asks it to stop, as SIGTERM does, without waiting: readiness turns
    /// false and calls in flight drain.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops it and waits until it has: what `serve_on` returned.
    pub async fn stopped(mut self) -> Result<(), server::RunError> {
        self.stop();
        self.served.await.unwrap()
    }

    /// Calls as the network admin.
    pub async fn call(
        &self,
        request: pb::ModifyInstanceNetworkSpecRequest,
    ) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
        self.call_as(NETOPS, request).await
    }

    /// Calls as `identity`, named in x-forwarded-client-cert.
    pub async fn call_as(
        &self,
        identity: &str,
        request: pb::ModifyInstanceNetworkSpecRequest,
    ) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
        let mut request = tonic::Request::new(request);
        with_identity(&mut request, identity);
        self.client
            .clone()
            .modify_instance_network_spec(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// The ECS simulator on a loopback port, holding `world`; it stops when
/// the returned sender is dropped.
pub async fn simulator(world: simulator::Config) -> (Simulator, String, oneshot::Sender<()>) {
    let sim = Simulator::new(world);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(sim.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    (sim, url, stop)
}

/// The simulator and a gateway forwarding to it.
pub struct Harness {
    pub sim: Simulator,
    pub sim_url: String,
    pub gateway: Gateway,
    _stop_sim: oneshot::Sender<()>,
}

impl Harness {
    /// Calls as the network admin.
    pub async fn call(
        &self,
        request: pb::ModifyInstanceNetworkSpecRequest,
    ) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
        self.gateway.call(request).await
    }

    /// Calls as `identity`, named in x-forwarded-client-cert.
    pub async fn call_as(
        &self,
        identity: &str,
        request: pb::ModifyInstanceNetworkSpecRequest,
    ) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
        self.gateway.call_as(identity, request).await
    }
}

pub fn demo_credentials() -> Credentials {
    Credentials {
        access_key_id: DEMO_ACCESS_KEY_ID.into(),
        access_key_secret: Secret::new(DEMO_ACCESS_KEY_SECRET),
        security_token: None,
    }
}

/// The demo world, and a gateway as [`config`] has it.
pub async fn start() -> Harness {
    start_with(simulator::Config::demo(), |_| {}).await
}

/// A simulator holding `world`, and a gateway forwarding to it with the
/// settings `tune` changes in [`config`].
pub async fn start_with(world: simulator::Config, tune: impl FnOnce(&mut Config)) -> Harness {
    let (sim, sim_url, stop_sim) = simulator(world).await;
    let mut config = config(&sim_url);
    tune(&mut config);
    Harness {
        sim,
        gateway: spawn(config).await,
        sim_url,
        _stop_sim: stop_sim,
    }
}

/// Copies a directory tree (a private copy of the shipped policies).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A valid request for `instance_id` in the demo region.
pub fn request(instance_id: &str) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        region_id: DEMO_REGION.into(),
        instance_id: instance_id.into(),
        ..Default::default()
    }
}

/// The ClientToken ECS sees for a token the network admin sent.
pub fn ecs_token(token: &str) -> String {
    upstream::ecs_client_token(NETOPS, None, token)
}

/// Names the caller in x-forwarded-client-cert, and its address (loopback)
/// in x-forwarded-for, as a trusted sidecar does.
pub fn with_identity<T>(request: &mut tonic::Request<T>, identity: &str) {
    request.metadata_mut().insert(
        "x-forwarded-client-cert",
        format!("URI={identity}").parse().unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
}

/// A log writer into the test harness's capture: a test's logs are shown
/// only when it fails.
pub fn captured_logs() -> tracing_subscriber::fmt::writer::BoxMakeWriter {
    tracing_subscriber::fmt::writer::BoxMakeWriter::new(tracing_subscriber::fmt::TestWriter::new())
}

/// Sends the logs of the gateways a test starts (info and above, or as
/// `RUST_LOG` says) to the harness's capture, once per test binary; a binary
/// that installed its own subscriber keeps it.
pub fn capture_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(captured_logs())
        .try_init();
}

/// A log writer that keeps every line, for tests that read the logs.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The logs a test reads, captured while it holds them.
pub struct JsonLogs {
    captured: Captured,
    _scope: tracing::subscriber::DefaultGuard,
}

impl JsonLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        self.captured.text()
    }
}

/// A JSON subscriber (events flattened, INFO and above) writing into the
/// returned capture, for a test that reads its logs. It is the default of
/// the test's thread until the capture drops, not of the whole binary: the
/// gateways the test starts (in a `#[tokio::test]`, on that thread) log
/// into it, whatever another test installed and in whichever order, and
/// another test's gateway never does.
pub fn capture_json_logs() -> JsonLogs {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    JsonLogs {
        captured,
        _scope: tracing::subscriber::set_default(subscriber),
    }
}

/// The fields of a status's BadRequest violations, in order.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// A channel to the gateway at `addr`.
pub async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

/// ErrorInfo's reason, or "" when the status has none.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// Whether the solver of `policy diff` and `policy lint` (cvc5) can be
/// started: from `CVC5`, else `PATH`. Without it their tests say they were
/// skipped, and `tests/tools.rs` (the last test target) fails naming it, so
/// that every other target still runs and reports.
pub fn solver_installed() -> bool {
    let installed = match std::env::var_os("CVC5") {
        Some(path) => std::path::Path::new(&path).is_file(),
        None => std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join("cvc5").is_file())
        }),
    };
    if !installed {
        eprintln!(
            "skipped: cvc5 is not installed (tests/tools.rs fails for it: .ci/cvc5.sh installs it)"
        );
    }
    installed
}

/// The built binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_ecs-gateway");

/// `ecs-gateway demo`, killed when dropped (stop it with SIGTERM to see it
/// drain).
pub struct Demo(pub std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ecs-gateway demo` from the crate's root on free loopback ports,
/// logging at `level` to `stderr`: the demo, its gRPC address and its
/// banner. Its stdout is drained from then on (a closed pipe would fail its
/// next write).
pub fn spawn_demo(level: &str, stderr: std::process::Stdio) -> (Demo, String, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", level)
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ECS_GATEWAY_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let demo = Demo(child);
    let mut banner = String::new();
    while !banner.contains("Ctrl-C") {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the demo did not start: {banner}"
        );
        banner.push_str(&line);
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = banner
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("ecs-gateway demo: gRPC on "))
        .unwrap_or_else(|| panic!("unexpected banner: {banner}"))
        .to_owned();
    (demo, addr, banner)
}
