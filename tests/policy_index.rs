//! The policy index never changes a decision: on generated policy sets and
//! requests, the indexed decision (the default) equals the decision over
//! every policy of each layer — outcome, determining policies and
//! evaluation errors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ecs_gateway::identity::{Caller, CallerId, Via};
use ecs_gateway::policy::{self, decide::Evaluation};
use ecs_gateway::{pb, validate};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

const ACCOUNT: &str = "1234567890123456";
const REGIONS: [&str; 3] = ["cn-hangzhou", "cn-shanghai", "cn-beijing"];
const PRINCIPALS: [(&str, &str, &[&str]); 5] = [
    ("spiffe://t/a", "role/a", &["G0"]),
    // The same ARN as the first, other groups.
    ("spiffe://t/a2", "role/a", &["G2"]),
    ("spiffe://t/b", "role/b", &["G1", "G2"]),
    ("spiffe://t/c", "user/c", &[]),
    ("spiffe://t/d", "user/d", &["G2", "G3"]),
];
/// Known instances: id, region, and the `arn` attribute entities.json gives
/// (the last one's account differs from the one the gateway is configured
/// with).
const INSTANCES: [(&str, &str, &str); 3] = [
    (
        "i-team1-a",
        "cn-hangzhou",
        "acs:ecs:cn-hangzhou:1234567890123456:instance/i-team1-a",
    ),
    (
        "i-team2-b",
        "cn-shanghai",
        "acs:ecs:cn-shanghai:1234567890123456:instance/i-team2-b",
    ),
    (
        "i-team3-c",
        "cn-beijing",
        "acs:ecs:cn-beijing:999:instance/i-team3-c",
    ),
];
const UNKNOWN_INSTANCES: [&str; 2] = ["i-team1-z", "i-team4-q"];
const PATTERNS: [&str; 8] = [
    "acs:ecs:*:*:instance/i-team1-*",
    "acs:ecs:cn-shanghai:*:instance/*",
    "*i-team2*",
    "acs:ecs:*:999:instance/*",
    "*",
    "acs:ecs:cn-beijing:*:instance/i-team3-c",
    "*-a",
    "acs:ecs:*:*:instance/i-team4-*",
];

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(PATTERNS.to_vec()).prop_map(|p| format!("resource.arn like {p:?}")),
        prop::sample::select(INSTANCES.to_vec())
            .prop_map(|(_, _, arn)| format!("resource.arn == {arn:?}")),
        prop::sample::select(REGIONS.to_vec()).prop_map(|r| format!("resource.region == {r:?}")),
        prop::sample::select(REGIONS.to_vec()).prop_map(|r| format!("{r:?} == resource.region")),
        prop::sample::select(REGIONS.to_vec())
            .prop_map(|r| format!("context.request.region_id == {r:?}")),
        // Fails to evaluate (overflow) for 2 Mbit/s and more.
        Just(
            "(context.request has internet_max_bandwidth_out && \
             context.request.internet_max_bandwidth_out * 4611686018427387904 > 0)"
                .to_owned()
        ),
        Just("context[\"acs:SourceIp\"].isInRange(ip(\"10.0.0.0/8\"))".to_owned()),
        Just("context[\"ecs:AssociatePublicIpAddress\"]".to_owned()),
        Just("principal in Ram::Group::\"G2\"".to_owned()),
        Just("(resource.hasTag(\"env\") && resource.getTag(\"env\") == \"production\")".to_owned()),
        (0u32..200).prop_map(|n| format!(
            "(context.request has internet_max_bandwidth_out && context.request.internet_max_bandwidth_out > {n})"
        )),
    ]
}

fn clause() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.8),
        prop::collection::vec(atom(), 1..4),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(when, atoms, or)| {
            let body = atoms.join(if or { " || " } else { " && " });
            format!("{} {{ {body} }}", if when { "when" } else { "unless" })
        })
}

fn policy_text() -> impl Strategy<Value = (bool, String)> {
    let principal = prop_oneof![
        Just("principal".to_owned()),
        prop::sample::select(PRINCIPALS.to_vec()).prop_map(|(_, arn, _)| {
            let kind = if arn.starts_with("role") {
                "Role"
            } else {
                "User"
            };
            format!("principal == Ram::{kind}::\"acs:ram::{ACCOUNT}:{arn}\"")
        }),
        (0..5).prop_map(|g| format!("principal in Ram::Group::\"G{g}\"")),
        Just("principal is Ram::User".to_owned()),
        (0..4).prop_map(|g| format!("principal is Ram::Role in Ram::Group::\"G{g}\"")),
    ];
    let action = prop::sample::select(vec![
        "action",
        "action == Action::\"ecs:ModifyInstanceNetworkSpec\"",
        "action == Action::\"ecs:AllocatePublicIpAddress\"",
        "action in [Action::\"ecs:AllocatePublicIpAddress\", Action::\"ecs:ModifyInstanceNetworkSpec\"]",
        "action in Action::\"ecs:*\"",
        "action in Action::\"ecs:Allocate*\"",
        "action in Action::\"update\"",
        "action == Action::\"ecs:*\"",
    ]);
    let resource = prop_oneof![
        4 => Just("resource".to_owned()),
        1 => prop::sample::select(vec!["i-team1-a", "i-team1-z", "i-team3-c"])
            .prop_map(|id| format!("resource == Ecs::Instance::{id:?}")),
    ];
    (
        prop::bool::weighted(0.3),
        prop::bool::ANY,
        principal,
        action,
        resource,
        prop::collection::vec(clause(), 0..3),
    )
        .prop_map(|(forbid, control, principal, action, resource, clauses)| {
            let effect = if forbid { "forbid" } else { "permit" };
            (
                control,
                format!(
                    "{effect} ({principal}, {action}, {resource})\n{};\n",
                    clauses.join("\n")
                ),
            )
        })
}

fn write_dir(dir: &Path, policies: &[(bool, String)]) {
    let _ = std::fs::remove_dir_all(dir);
    for layer in ["control", "identity"] {
        std::fs::create_dir_all(dir.join(layer)).unwrap();
    }
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::copy(
        shipped.join("schema.cedarschema"),
        dir.join("schema.cedarschema"),
    )
    .unwrap();
    let mut principals = String::new();
    for (spiffe, arn, groups) in PRINCIPALS {
        principals.push_str(&format!(
            "[[principal]]\nspiffe_id = {spiffe:?}\narn = \"acs:ram::{ACCOUNT}:{arn}\"\ngroups = {groups:?}\n\n"
        ));
    }
    std::fs::write(dir.join("principals.toml"), principals).unwrap();
    let entities: Vec<serde_json::Value> = INSTANCES
        .iter()
        .map(|(id, region, arn)| {
            serde_json::json!({
                "uid": {"type": "Ecs::Instance", "id": id},
                "attrs": {"arn": arn, "region": region, "account": arn.split(':').nth(3).unwrap()},
                "parents": [],
                "tags": if id.ends_with('a') { serde_json::json!({"env": "production"}) } else { serde_json::json!({}) },
            })
        })
        .collect();
    std::fs::write(
        dir.join("entities.json"),
        serde_json::to_string(&entities).unwrap(),
    )
    .unwrap();
    let (mut control, mut identity) = (String::new(), String::new());
    for (i, (in_control, text)) in policies.iter().enumerate() {
        let target = if *in_control {
            &mut control
        } else {
            &mut identity
        };
        target.push_str(&format!("@id(\"p{i}\")\n{text}"));
    }
    std::fs::write(dir.join("control/generated.cedar"), control).unwrap();
    std::fs::write(dir.join("identity/generated.cedar"), identity).unwrap();
}

#[derive(Debug, Clone)]
struct Call {
    principal: usize,
    instance: String,
    region: &'static str,
    bandwidth: Option<i32>,
    allocate: Option<bool>,
    ip: [u8; 4],
}

fn call() -> impl Strategy<Value = Call> {
    let instance = prop::sample::select(
        INSTANCES
            .iter()
            .map(|i| i.0)
            .chain(UNKNOWN_INSTANCES)
            .collect::<Vec<_>>(),
    );
    (
        0..PRINCIPALS.len() + 1,
        instance,
        prop::sample::select(REGIONS.to_vec()),
        prop::option::of(0..200i32),
        prop::option::of(prop::bool::ANY),
        prop::sample::select(vec![[10, 1, 2, 3], [127, 0, 0, 1], [192, 168, 0, 9]]),
    )
        .prop_map(
            |(principal, instance, region, bandwidth, allocate, ip)| Call {
                principal,
                instance: instance.to_owned(),
                region,
                bandwidth,
                allocate,
                ip,
            },
        )
}

/// How many decisions allowed, denied explicitly and denied on an error.
#[derive(Default)]
struct Seen {
    allowed: AtomicUsize,
    forbidden: AtomicUsize,
    errored: AtomicUsize,
}

fn decide_both(dir: &Path, calls: &[Call], seen: &Seen) -> Result<(), TestCaseError> {
    let config = policy::Config {
        dir: dir.to_owned(),
        account_id: ACCOUNT.into(),
        // As the demo configures it, so that the dependent action is decided.
        dependent_actions: vec![policy::DependentRule {
            action: "ecs:ModifyInstanceNetworkSpec".into(),
            requires: "ecs:AllocatePublicIpAddress".into(),
            when: policy::When::AllocatesPublicIp,
        }],
    };
    let indexed = config
        .clone()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let full = config.build().unwrap().with_evaluation(Evaluation::Full);
    let now = chrono::Utc::now();
    for call in calls {
        let identity = PRINCIPALS
            .get(call.principal)
            .map_or("spiffe://t/unmapped", |p| p.0);
        let caller = Caller {
            identity: CallerId::Spiffe(identity.into()),
            via: Via::Mtls,
            mfa: false,
            secure_transport: true,
            peer: Some(SocketAddr::from((call.ip, 40000))),
        };
        let Ok(request) = validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
            region_id: call.region.into(),
            instance_id: call.instance.clone(),
            internet_max_bandwidth_out: call.bandwidth,
            allocate_public_ip: call
                .allocate
                .filter(|_| call.bandwidth.is_some_and(|b| b > 0)),
            ..Default::default()
        }) else {
            continue;
        };
        let a = indexed.decide(&caller, &request, now);
        let b = full.decide(&caller, &request, now);
        let counter = match &a.outcome {
            policy::Outcome::Allow { .. } => &seen.allowed,
            policy::Outcome::Deny(d) if !d.errors.is_empty() => &seen.errored,
            policy::Outcome::Deny(d) if d.kind == policy::DenyKind::ExplicitDeny => &seen.forbidden,
            policy::Outcome::Deny(_) => {
                prop_assert_eq!(&a, &b, "{:?}", call);
                continue;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        prop_assert_eq!(a, b, "{:?}", call);
    }
    Ok(())
}

#[test]
fn indexed_and_full_evaluation_decide_alike() {
    // Each case writes the directory afresh; the guard removes it all.
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("policies");
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases: 64,
            failure_persistence: None,
            ..RunnerConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = (
        prop::collection::vec(policy_text(), 1..40),
        prop::collection::vec(call(), 40),
    );
    let seen = Seen::default();
    let result = runner.run(&strategy, |(policies, calls)| {
        write_dir(&dir, &policies);
        decide_both(&dir, &calls, &seen)
    });
    result.unwrap();
    // The generated cases reach every kind of outcome, not only denials.
    let counts = [&seen.allowed, &seen.forbidden, &seen.errored].map(|c| c.load(Ordering::Relaxed));
    assert!(
        counts.iter().all(|&c| c >= 20),
        "allowed, forbidden, errored: {counts:?}"
    );
}
