//! Criterion micro-benchmarks of the hot path's stages (docs/benchmarks.md):
//! the authorization decision with 10, 100, 1,000 and 10,000 policies of
//! mixed scopes, conditions and ARN patterns; signing; validation; the
//! decision-log line; and the mapping of an error to a gRPC status.
//!
//! ```sh
//! cargo bench --bench stages
//! cargo bench --bench stages -- decision   # one group
//! ```

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ecs_gateway::credentials::{Credentials, Secret};
use ecs_gateway::identity::{Caller, CallerId, Via};
use ecs_gateway::{error, pb, policy, upstream, validate};

fn copy_dir(from: &Path, to: &Path) {
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

/// The shipped policies plus `count` synthetic ones, of three kinds in turn:
/// identity permits scoped to another team's group, with a bandwidth
/// condition; identity permits scoped to everyone, matching an ARN pattern
/// of another team's instances; and guardrail forbids scoped to everyone,
/// matching another team's source range. None applies to the benchmark's
/// caller and instance, so the decision stays the shipped one (an Allow)
/// while every policy scoped to everyone is still evaluated. The directory
/// is removed when the returned guard drops.
fn policies_with(count: usize) -> tempfile::TempDir {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let policies = tempfile::Builder::new()
        .prefix(&format!("ecs-gw-bench-{count}-"))
        .tempdir()
        .unwrap();
    let dir = policies.path();
    copy_dir(&shipped, dir);
    let (mut identity, mut control) = (String::new(), String::new());
    for i in 0..count {
        match i % 3 {
            0 => identity.push_str(&format!(
                "@id(\"identity.team-{i}\")\npermit (principal in Ram::Group::\"Team{i}\", action == Action::\"ecs:ModifyInstanceNetworkSpec\", resource)\n\
                 when {{ resource.region == \"cn-hangzhou\" && context.request has internet_max_bandwidth_out && context.request.internet_max_bandwidth_out <= {} }};\n",
                i % 200
            )),
            1 => identity.push_str(&format!(
                "@id(\"identity.instances-{i}\")\npermit (principal, action == Action::\"ecs:ModifyInstanceNetworkSpec\", resource)\n\
                 when {{ resource.arn like \"acs:ecs:*:*:instance/i-team{i}-*\" }};\n"
            )),
            _ => control.push_str(&format!(
                "@id(\"control.range-{i}\")\nforbid (principal, action, resource)\n\
                 when {{ resource.arn like \"acs:ecs:cn-shanghai:*:instance/i-team{i}-*\" && context[\"acs:SourceIp\"].isInRange(ip(\"172.{}.0.0/16\")) }};\n",
                i % 256
            )),
        }
    }
    std::fs::write(dir.join("identity/synthetic.cedar"), identity).unwrap();
    std::fs::write(dir.join("control/synthetic.cedar"), control).unwrap();
    policies
}

fn request() -> validate::ModifyRequest {
    validate::modify_request(raw()).unwrap()
}

fn raw() -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: "i-demo-postpaid".into(),
        internet_max_bandwidth_out: Some(20),
        client_token: "bench-token".into(),
        ..Default::default()
    }
}

fn caller() -> Caller {
    Caller {
        identity: CallerId::Spiffe("spiffe://demo.local/sa/netops".into()),
        via: Via::Mtls,
        mfa: false,
        secure_transport: true,
        peer: Some(SocketAddr::from(([10, 0, 0, 7], 40000))),
    }
}

/// An authorizer over [`policies_with`]`(count)`, and the guard of its
/// directory (keep it while the authorizer is used).
fn authorizer(count: usize) -> (policy::Authorizer, tempfile::TempDir) {
    let policies = policies_with(count);
    let authorizer = policy::Config {
        dir: policies.path().to_owned(),
        account_id: "1234567890123456".into(),
        dependent_actions: vec![],
    }
    .build()
    .unwrap();
    (authorizer, policies)
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    let (caller, request) = (caller(), request());
    for count in [10, 100, 1_000, 10_000] {
        let (authorizer, _policies) = authorizer(count);
        let now = chrono::Utc::now();
        assert!(authorizer.decide(&caller, &request, now).allowed());
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| black_box(authorizer.decide(&caller, &request, now)));
        });
    }
    group.finish();
    // The varied workload: each decision on another of 10,000 instances
    // entities.json does not list, with another bandwidth, so that nothing
    // made for one call is reused for the next.
    let mut group = c.benchmark_group("decision_varied");
    let requests: Vec<validate::ModifyRequest> = (0..10_000)
        .map(|n| {
            validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
                instance_id: format!("i-bench-{n:05}"),
                internet_max_bandwidth_out: Some(1 + n % 100),
                ..raw()
            })
            .unwrap()
        })
        .collect();
    for count in [100, 10_000] {
        let (authorizer, _policies) = authorizer(count);
        let now = chrono::Utc::now();
        assert!(authorizer.decide(&caller, &requests[0], now).allowed());
        let mut next = requests.iter().cycle();
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| {
                let request = next.next().unwrap_or(&requests[0]);
                black_box(authorizer.decide(&caller, request, now))
            });
        });
    }
    group.finish();
}

fn signing(c: &mut Criterion) {
    let credentials = Credentials {
        access_key_id: "LTAI5tBench".into(),
        access_key_secret: Secret::new("bench-secret"),
        security_token: None,
    };
    let (request, now) = (request(), chrono::Utc::now());
    c.bench_function("signing", |b| {
        b.iter(|| {
            black_box(upstream::signed_body(
                &request,
                &credentials,
                "5f2b1c7e-0000-4000-8000-000000000000",
                now,
            ))
        });
    });
}

fn validation(c: &mut Criterion) {
    let raw = raw();
    c.bench_function("validation", |b| {
        b.iter(|| black_box(validate::modify_request(raw.clone()).unwrap()));
    });
}

/// The decision's log line, formatted as JSON into a sink, as the gateway's
/// subscriber formats it.
fn decision_log(c: &mut Criterion) {
    let (authorizer, _policies) = authorizer(10);
    let decision = authorizer.decide(&caller(), &request(), chrono::Utc::now());
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function("decision_log_line", |b| {
            b.iter(|| {
                policy::log::record(
                    black_box(&decision),
                    "0af7651916cd43dd8448eb211c80319c",
                    "bench-token",
                    policy::log::UpstreamResult {
                        request_id: Some("473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"),
                        error_code: None,
                        ecs_client_token: Some(
                            "e6486f4c6c22af92b11026efa1bf69eac742a6547a13b65ffb116f70b978e715",
                        ),
                        role: None,
                    },
                );
            });
        });
    });
}

/// A denial and an ECS error turned into gRPC statuses with their details.
fn error_mapping(c: &mut Criterion) {
    let (authorizer, _policies) = authorizer(10);
    let webapp = Caller {
        identity: CallerId::Spiffe("spiffe://demo.local/sa/webapp".into()),
        ..caller()
    };
    let mut big = raw();
    big.internet_max_bandwidth_out = Some(50);
    let denied = authorizer.decide(
        &webapp,
        &validate::modify_request(big).unwrap(),
        chrono::Utc::now(),
    );
    assert!(!denied.allowed());
    c.bench_function("error_mapping/denied", |b| {
        b.iter(|| {
            let status: tonic::Status = error::Error::Denied(Box::new(denied.clone())).into();
            black_box(status)
        });
    });
    c.bench_function("error_mapping/ecs", |b| {
        b.iter(|| {
            let status: tonic::Status = error::Error::Upstream {
                source: upstream::Error::Ecs(Box::new(upstream::EcsError {
                    http_status: 403,
                    request_id: "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E".into(),
                    host_id: "ecs.cn-hangzhou.aliyuncs.com".into(),
                    code: "InvalidInstance.EipNotSupport".into(),
                    message: "The specified instance with eip is not supported.".into(),
                    recommend: "https://api.aliyun.com/troubleshoot".into(),
                })),
                client_token: "bench-token".into(),
            }
            .into();
            black_box(status)
        });
    });
}

criterion_group!(
    stages,
    decision,
    signing,
    validation,
    decision_log,
    error_mapping
);
criterion_main!(stages);
