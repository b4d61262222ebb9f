//! N decisions with the shipped policies, for counting their instructions
//! with `valgrind --tool=callgrind` (docs/benchmarks.md): instruction
//! counts do not depend on what else the machine is doing, so two builds
//! compare exactly where timings on a shared machine do not.
//!
//! ```sh
//! bench/instructions.sh [NAME=BINARY…]   # instructions per decision
//! target/release/examples/decisions same|varied N
//! ```
//!
//! `same` decides one call N times (netops on `i-demo-postpaid`); `varied`
//! goes round 10,000 instances entities.json does not list, with varied
//! bandwidths, as the load test's varied workload does.

use std::net::SocketAddr;

use ecs_gateway::identity::{Caller, CallerId, Via};
use ecs_gateway::{pb, policy, validate};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let varied = args.get(1).map(String::as_str) == Some("varied");
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let authorizer = policy::Config {
        dir: "policies".into(),
        account_id: "1234567890123456".into(),
        dependent_actions: vec![],
    }
    .build()
    .expect("the shipped policies load");
    let caller = Caller {
        identity: CallerId::Spiffe("spiffe://demo.local/sa/netops".into()),
        via: Via::Mtls,
        mfa: false,
        secure_transport: true,
        peer: Some(SocketAddr::from(([10, 0, 0, 7], 40000))),
    };
    let requests: Vec<validate::ModifyRequest> = (0..if varied { 10_000 } else { 1 })
        .map(|n| {
            validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
                region_id: "cn-hangzhou".into(),
                instance_id: if varied {
                    format!("i-bench-{n:05}")
                } else {
                    "i-demo-postpaid".into()
                },
                internet_max_bandwidth_out: Some(if varied { 1 + n % 100 } else { 10 }),
                client_token: "bench".into(),
                ..Default::default()
            })
            .expect("a valid request")
        })
        .collect();
    let now = chrono::Utc::now();
    let mut allowed = 0;
    for request in requests.iter().cycle().take(count) {
        allowed += usize::from(authorizer.decide(&caller, request, now).allowed());
    }
    assert_eq!(allowed, count, "every decision allows");
}
