//! Offers far more load than the gateway can serve and reports what
//! happened: calls served and shed per second, latency of each, and the
//! process's resident memory. The gateway, the ECS simulator (with a fixed
//! round-trip latency) and the load generator each run on a runtime with
//! one worker thread, in one process.
//!
//! ```sh
//! cargo run --release --example overload -- --limit 64 --callers 2000 --seconds 10 --latency-ms 20
//! ```

use std::time::{Duration, Instant};

use ecs_gateway::credentials::{self, Credentials, Secret};
use ecs_gateway::pb::instance_network_service_client::InstanceNetworkServiceClient;
use ecs_gateway::simulator::{self, Chaos, Simulator};
use ecs_gateway::{config, pb, server};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let limit = arg("--limit", 64) as usize;
    let callers = arg("--callers", 2000);
    let seconds = arg("--seconds", 10);
    let latency = Duration::from_millis(arg("--latency-ms", 20));
    ecs_gateway::install_crypto_provider();

    let upstream_rt = runtime("simulator");
    let sim_url = upstream_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sim = Simulator::new(simulator::Config::demo());
        sim.set_chaos(Chaos {
            latency,
            ..Chaos::default()
        });
        tokio::spawn(sim.serve(listener, std::future::pending()));
        url
    });

    let gateway_rt = runtime("gateway");
    let addr = gateway_rt.block_on(async {
        // The demo's settings, through the production wiring.
        let mut config = config::load(&config::Flags::default(), |_| None).unwrap();
        config.upstream.endpoint = sim_url;
        config.credentials = Some(credentials::Config::Static(Credentials {
            access_key_id: simulator::DEMO_ACCESS_KEY_ID.into(),
            access_key_secret: Secret::new(simulator::DEMO_ACCESS_KEY_SECRET),
            security_token: None,
        }));
        config.identity.trust_forwarded_client_cert = true;
        config.policy.dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into();
        config.policy.account_id = Some(simulator::DEMO_ACCOUNT_ID.into());
        config.admission.max_calls = limit;
        let stack = server::build(&config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server::serve_on(
            stack,
            listener,
            None,
            std::future::pending(),
        ));
        addr
    });

    let load_rt = runtime("load");
    let rss_before = status_kib("VmRSS:");
    let (served, shed, other, elapsed) = load_rt.block_on(async move {
        let mut channels = Vec::new();
        for _ in 0..8 {
            channels.push(
                tonic::transport::Channel::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            );
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for i in 0..callers {
            let channel = channels[i as usize % channels.len()].clone();
            tasks.push(tokio::spawn(async move {
                let mut client = InstanceNetworkServiceClient::new(channel);
                let (mut served, mut shed, mut other) = (Vec::new(), Vec::new(), 0u64);
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let mut request = tonic::Request::new(pb::ModifyInstanceNetworkSpecRequest {
                        region_id: "cn-hangzhou".into(),
                        instance_id: "i-demo-postpaid".into(),
                        internet_max_bandwidth_out: Some(1 + ((i + n) % 50) as i32),
                        ..Default::default()
                    });
                    request.metadata_mut().insert(
                        "x-forwarded-client-cert",
                        "URI=spiffe://demo.local/sa/netops".parse().unwrap(),
                    );
                    request
                        .metadata_mut()
                        .insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
                    let t = Instant::now();
                    match client.modify_instance_network_spec(request).await {
                        Ok(_) => served.push(t.elapsed()),
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            shed.push(t.elapsed());
                            // A polite client backs off as RetryInfo says.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(_) => other += 1,
                    }
                }
                (served, shed, other)
            }));
        }
        let (mut served, mut shed, mut other) = (Vec::new(), Vec::new(), 0);
        for task in tasks {
            let (a, b, c) = task.await.unwrap();
            served.extend(a);
            shed.extend(b);
            other += c;
        }
        (served, shed, other, started.elapsed())
    });
    let peak = status_kib("VmHWM:");
    let (mut served, mut shed) = (served, shed);
    served.sort();
    shed.sort();
    let secs = elapsed.as_secs_f64();
    println!("| setting | value |\n|---|---|");
    println!(
        "| concurrency limit | {limit} |\n| callers | {callers} |\n| ECS round trip | {latency:?} |\n| duration | {secs:.1} s |"
    );
    println!("\n| figure | value |\n|---|---|");
    println!(
        "| served | {} ({:.0}/s) |",
        served.len(),
        served.len() as f64 / secs
    );
    println!(
        "| shed (RESOURCE_EXHAUSTED) | {} ({:.0}/s) |",
        shed.len(),
        shed.len() as f64 / secs
    );
    println!("| other errors | {other} |");
    println!(
        "| served latency p50 / p99 / max | {:?} / {:?} / {:?} |",
        percentile(&served, 0.5),
        percentile(&served, 0.99),
        served.last().copied().unwrap_or_default()
    );
    println!(
        "| shed latency p50 / p99 | {:?} / {:?} |",
        percentile(&shed, 0.5),
        percentile(&shed, 0.99)
    );
    println!(
        "| RSS before load / peak (whole process) | {} KiB / {} KiB |",
        rss_before, peak
    );
}
