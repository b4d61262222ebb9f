//! The load-test harness behind docs/benchmarks.md, one binary with four
//! roles, so that the gateway is measured against the ceilings of its own
//! shape, side by side, on the same proto:
//!
//! - `upstream`: a fixed-answer ECS stand-in (HTTP/1.1, answers
//!   `{"RequestId":…}` at once or after `--delay-ms`); no signature check, so
//!   that it costs as little as possible;
//! - `echo`: a bare tonic server of `ecsgateway.v1` answering at once: the
//!   ceiling of any tonic service;
//! - `forwarder`: a bare tonic server whose handler sends one pooled reqwest
//!   form POST to the upstream and parses the JSON: the ceiling of any
//!   gateway of this shape;
//! - `otlp`: an OTLP/gRPC trace receiver that counts the spans it gets
//!   (printed on stderr every 5 s), for the cost of tracing on;
//! - `load`: the load generator. `--rate N` is open loop: a thread paces one
//!   call every 1/N s and latency counts from each call's scheduled start,
//!   so a slow server cannot hide its queueing (coordinated omission);
//!   `--concurrency N` is closed loop: N callers, each calling again at once.
//!   It reports calls/s, p50/p90/p99/p99.9 (HDR histograms) and errors by
//!   gRPC code, as one line of JSON.
//!
//! bench/side-by-side.sh runs them all, pinned to cores, and prints the
//! ratios. Every call of `load` names the demo's network admin through
//! `x-forwarded-client-cert` (the gateway under test trusts it, as behind a
//! mesh) and changes `i-demo-postpaid`'s bandwidth, or, with `--instances N`,
//! goes round N distinct instances with varied bandwidths (the varied
//! workload).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecs_gateway::pb;
use ecs_gateway::pb::instance_network_service_client::InstanceNetworkServiceClient;
use ecs_gateway::pb::instance_network_service_server::{
    InstanceNetworkService, InstanceNetworkServiceServer,
};
use hdrhistogram::Histogram;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn required<T: std::str::FromStr>(name: &str) -> T {
    arg(name).unwrap_or_else(|| panic!("{name} is required"))
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    let role = std::env::args().nth(1).unwrap_or_default();
    let threads = arg("--threads").unwrap_or(1);
    let rt = runtime(threads);
    match role.as_str() {
        "upstream" => rt.block_on(upstream()),
        "echo" => rt.block_on(echo()),
        "forwarder" => rt.block_on(forwarder()),
        "load" => rt.block_on(load()),
        "otlp" => rt.block_on(otlp()),
        _ => {
            eprintln!(
                "usage: loadtest upstream|echo|forwarder|otlp|load [--listen ADDR] [--upstream URL] \
                 [--target URL] [--rate N | --concurrency N] [--seconds S] [--connections C]"
            );
            std::process::exit(2);
        }
    }
}

/// Prints the bound address on stdout (the script reads it), then serves.
async fn bind() -> tokio::net::TcpListener {
    let listen: SocketAddr = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    println!("{}", listener.local_addr().expect("address"));
    listener
}

async fn upstream() {
    let delay = Duration::from_millis(arg("--delay-ms").unwrap_or(0));
    let next = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move || {
            let n = next.fetch_add(1, Ordering::Relaxed);
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                (
                    [("content-type", "application/json")],
                    format!("{{\"RequestId\":\"00000000-0000-4000-8000-{n:012X}\"}}"),
                )
            }
        }),
    );
    axum::serve(bind().await, app).await.expect("serve");
}

/// The bare tonic service: answers at once.
struct Echo;

#[tonic::async_trait]
impl InstanceNetworkService for Echo {
    async fn modify_instance_network_spec(
        &self,
        request: tonic::Request<pb::ModifyInstanceNetworkSpecRequest>,
    ) -> Result<tonic::Response<pb::ModifyInstanceNetworkSpecResponse>, tonic::Status> {
        Ok(tonic::Response::new(
            pb::ModifyInstanceNetworkSpecResponse {
                order_id: String::new(),
                request_id: "00000000-0000-4000-8000-000000000000".into(),
                client_token: request.into_inner().client_token,
            },
        ))
    }
}

/// The bare forwarder: one pooled form POST per call, its JSON parsed.
struct Forwarder {
    http: reqwest::Client,
    url: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    request_id: String,
}

#[tonic::async_trait]
impl InstanceNetworkService for Forwarder {
    async fn modify_instance_network_spec(
        &self,
        request: tonic::Request<pb::ModifyInstanceNetworkSpecRequest>,
    ) -> Result<tonic::Response<pb::ModifyInstanceNetworkSpecResponse>, tonic::Status> {
        let request = request.into_inner();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "ModifyInstanceNetworkSpec")
            .append_pair("RegionId", &request.region_id)
            .append_pair("InstanceId", &request.instance_id)
            .append_pair(
                "InternetMaxBandwidthOut",
                &request.internet_max_bandwidth_out.unwrap_or(0).to_string(),
            )
            .append_pair("ClientToken", &request.client_token)
            .finish();
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let answer: Answer =
            serde_json::from_slice(&bytes).map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(
            pb::ModifyInstanceNetworkSpecResponse {
                order_id: String::new(),
                request_id: answer.request_id,
                client_token: request.client_token,
            },
        ))
    }
}

async fn serve(service: impl InstanceNetworkService) {
    let listener = bind().await;
    tonic::transport::Server::builder()
        .add_service(InstanceNetworkServiceServer::new(service))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .expect("serve");
}

async fn echo() {
    serve(Echo).await;
}

async fn forwarder() {
    ecs_gateway::install_crypto_provider();
    let url: String = required("--upstream");
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("client");
    serve(Forwarder { http, url }).await;
}

/// Counts the spans exported to it.
#[derive(Clone, Default)]
struct Sink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn otlp() {
    let sink = Sink::default();
    let count = sink.0.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!("otlp: {} spans received", count.load(Ordering::Relaxed));
        }
    });
    let listener = bind().await;
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .expect("serve");
}

/// What the load generator saw.
struct Tally {
    latency: Histogram<u64>,
    codes: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
            codes: BTreeMap::new(),
        }
    }

    fn record(&mut self, started: Instant, result: &Result<(), tonic::Code>) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
        let code = match result {
            Ok(()) => "OK".to_owned(),
            Err(code) => format!("{code:?}"),
        };
        *self.codes.entry(code).or_default() += 1;
    }
}

/// The `n`th call's message. With `--instances N` (the varied workload),
/// calls go round N distinct instances (`i-bench-00000`…) with bandwidths
/// varied from 1 to 100 Mbit/s, so that no two calls in a row, and no two
/// within 100 × N calls, ask the same: nothing decided or sent can be reused
/// from an identical earlier call. Without it, every call changes
/// `i-demo-postpaid` to 10 Mbit/s.
fn request(n: u64) -> tonic::Request<pb::ModifyInstanceNetworkSpecRequest> {
    let (instance_id, bandwidth) = match instances() {
        0 => ("i-demo-postpaid".to_owned(), 10),
        instances => (
            format!("i-bench-{:05}", n % instances),
            // For N a multiple of 100, an (instance, bandwidth) pair comes
            // back only after 100 × N calls.
            1 + i32::try_from((n / instances + n * 37) % 100).expect("bandwidth"),
        ),
    };
    let mut request = tonic::Request::new(pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id,
        internet_max_bandwidth_out: Some(bandwidth),
        ..Default::default()
    });
    let metadata = request.metadata_mut();
    metadata.insert(
        "x-forwarded-client-cert",
        "URI=spiffe://demo.local/sa/netops".parse().expect("header"),
    );
    metadata.insert("x-forwarded-for", "127.0.0.1".parse().expect("header"));
    request
}

/// `--instances N`: how many distinct instances the calls go round (0: one).
fn instances() -> u64 {
    static INSTANCES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INSTANCES.get_or_init(|| arg("--instances").unwrap_or(0))
}

/// Numbers the calls, across every caller, for [`request`].
static SENT: AtomicU64 = AtomicU64::new(0);

async fn one(
    mut client: InstanceNetworkServiceClient<tonic::transport::Channel>,
) -> Result<(), tonic::Code> {
    client
        .modify_instance_network_spec(request(SENT.fetch_add(1, Ordering::Relaxed)))
        .await
        .map(|_| ())
        .map_err(|status| status.code())
}

async fn load() {
    let target: String = required("--target");
    let seconds: u64 = arg("--seconds").unwrap_or(10);
    let warmup: u64 = arg("--warmup").unwrap_or(2);
    let connections: usize = arg("--connections").unwrap_or(4);
    let mut clients = Vec::new();
    for _ in 0..connections {
        let channel = tonic::transport::Endpoint::from_shared(target.clone())
            .expect("target")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect");
        clients.push(InstanceNetworkServiceClient::new(channel));
    }
    let tally = Arc::new(Mutex::new(Tally::new()));
    let (mode, offered) = if let Some(rate) = arg::<u64>("--rate") {
        open_loop(&clients, rate, warmup, seconds, &tally).await;
        ("open", rate)
    } else {
        let concurrency: u64 = arg("--concurrency").unwrap_or(64);
        closed_loop(&clients, concurrency, warmup, seconds, &tally).await;
        ("closed", concurrency)
    };
    let tally = tally.lock().expect("tally");
    let h = &tally.latency;
    let p = |q: f64| h.value_at_quantile(q);
    let total: u64 = tally.codes.values().sum();
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "offered": offered,
            "seconds": seconds,
            "calls": total,
            "calls_per_second": total as f64 / seconds as f64,
            "p50_us": p(0.5), "p90_us": p(0.9), "p99_us": p(0.99), "p999_us": p(0.999),
            "max_us": h.max(),
            "codes": tally.codes,
        })
    );
}

/// Fixed rate: a std thread paces the schedule (tokio's timer ticks in
/// milliseconds), the runtime sends each call; latency counts from the
/// scheduled start. Calls of the warm-up are not recorded.
async fn open_loop(
    clients: &[InstanceNetworkServiceClient<tonic::transport::Channel>],
    rate: u64,
    warmup: u64,
    seconds: u64,
    tally: &Arc<Mutex<Tally>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, bool)>();
    let total = rate * (warmup + seconds);
    let pacer = std::thread::spawn(move || {
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let begin = Instant::now();
        for n in 0..total {
            let due = begin + interval.mul_f64(n as f64);
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                let left = due - now;
                if left > Duration::from_micros(200) {
                    std::thread::sleep(left - Duration::from_micros(100));
                } else {
                    std::hint::spin_loop();
                }
            }
            if tx.send((due, n >= rate * warmup)).is_err() {
                return;
            }
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while let Some((due, measured)) = rx.recv().await {
        let client = clients[n % clients.len()].clone();
        n += 1;
        let tally = tally.clone();
        tasks.spawn(async move {
            let result = one(client).await;
            if measured {
                tally.lock().expect("tally").record(due, &result);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    pacer.join().expect("pacer");
}

/// N callers, each calling again as soon as its call returns.
async fn closed_loop(
    clients: &[InstanceNetworkServiceClient<tonic::transport::Channel>],
    concurrency: u64,
    warmup: u64,
    seconds: u64,
    tally: &Arc<Mutex<Tally>>,
) {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(warmup);
    let end = measure_from + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..concurrency {
        let client = clients[n as usize % clients.len()].clone();
        let tally = tally.clone();
        tasks.spawn(async move {
            let mut local = Tally::new();
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let result = one(client.clone()).await;
                if started >= measure_from && Instant::now() <= end {
                    local.record(started, &result);
                }
            }
            let mut all = tally.lock().expect("tally");
            all.latency.add(&local.latency).expect("merge");
            for (code, count) in local.codes {
                *all.codes.entry(code).or_default() += count;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
