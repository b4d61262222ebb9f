//! Medians of the hot-path stages, side by side in one run: the
//! authorization decision with the shipped policies and with 100 and 10,000
//! identity policies, RPC signing, and validation. Each figure is the median
//! of 31 batches of `--iterations` calls, per call.
//!
//! ```sh
//! cargo run --release --example microbench -- --iterations 2000
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ecs_gateway::credentials::{Credentials, Secret};
use ecs_gateway::identity::{Caller, Via};
use ecs_gateway::{pb, policy, upstream, validate};

fn median_per_call(iterations: u32, mut f: impl FnMut()) -> Duration {
    let mut batches: Vec<Duration> = (0..31)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                f();
            }
            started.elapsed() / iterations
        })
        .collect();
    batches.sort();
    batches[batches.len() / 2]
}

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

/// The shipped policies plus `extra` identity policies for other groups.
fn policies_with(extra: usize) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    if extra == 0 {
        return shipped;
    }
    let dir = std::env::temp_dir().join(format!("ecs-gw-bench-{extra}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&shipped, &dir);
    let mut text = String::new();
    for i in 0..extra {
        text.push_str(&format!(
            "@id(\"identity.synthetic-{i}\")\npermit (principal in Ram::Group::\"Team{i}\", action == Action::\"ecs:ModifyInstanceNetworkSpec\", resource)\n\
             when {{ resource.region == \"cn-hangzhou\" && context.request has internet_max_bandwidth_out && context.request.internet_max_bandwidth_out <= {} }};\n",
            i % 200
        ));
    }
    std::fs::write(dir.join("identity/synthetic.cedar"), text).unwrap();
    dir
}

fn main() {
    let iterations: u32 = std::env::args()
        .skip_while(|a| a != "--iterations")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let request = validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: "i-demo-postpaid".into(),
        internet_max_bandwidth_out: Some(20),
        client_token: "bench-token".into(),
        ..Default::default()
    })
    .unwrap();
    let caller = Caller {
        identity: ecs_gateway::identity::CallerId::Spiffe("spiffe://demo.local/sa/netops".into()),
        via: Via::Mtls,
        mfa: false,
        secure_transport: true,
        peer: Some(SocketAddr::from(([10, 0, 0, 7], 40000))),
    };
    println!("| stage | median per call |\n|---|---|");
    for (label, extra) in [
        ("decision, shipped policies (11)", 0),
        ("decision, +100 identity policies", 100),
        ("decision, +10,000 identity policies", 10_000),
    ] {
        let authorizer = policy::Config {
            dir: policies_with(extra),
            account_id: "1234567890123456".into(),
            dependent_actions: vec![],
        }
        .build()
        .unwrap();
        let now = chrono::Utc::now();
        assert!(authorizer.decide(&caller, &request, now).allowed());
        let n = if extra >= 10_000 {
            iterations / 100 + 1
        } else {
            iterations
        };
        let t = median_per_call(n, || {
            std::hint::black_box(authorizer.decide(&caller, &request, now));
        });
        println!("| {label} | {t:?} |");
    }
    let credentials = Credentials {
        access_key_id: "LTAI5tBench".into(),
        access_key_secret: Secret::new("bench-secret"),
        security_token: None,
    };
    let now = chrono::Utc::now();
    let t = median_per_call(iterations, || {
        std::hint::black_box(upstream::signed_body(
            &request,
            &credentials,
            "5f2b1c7e-0000-4000-8000-000000000000",
            now,
        ));
    });
    println!("| signing (parameters, canonical query, HMAC-SHA1) | {t:?} |");
    let raw = pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: "i-demo-postpaid".into(),
        internet_max_bandwidth_out: Some(20),
        client_token: "bench-token".into(),
        ..Default::default()
    };
    let t = median_per_call(iterations, || {
        std::hint::black_box(validate::modify_request(raw.clone()).unwrap());
    });
    println!("| validation | {t:?} |");
}
