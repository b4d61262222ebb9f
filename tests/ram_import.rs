//! `policy import-ram`: each operator, wildcard and negation, each refusal,
//! and a differential test — a reference evaluator written from RAM's
//! documented semantics over the JSON documents, against the imported Cedar
//! evaluated by Cedar with the shipped schema, on generated documents and
//! requests (fixed seed): zero disagreements on instances the gateway knows,
//! and on an instance it does not know never more permissive than RAM is for
//! any of the instances it could really be.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityUid, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use ecs_gateway::policy::decide::allocates_public_ip;
use ecs_gateway::policy::store::Instance;
use ecs_gateway::policy_tools::ram::{self, Target};
use ecs_gateway::validate::{ClientToken, ModifyRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

const ROLE: &str = "acs:ram::1234567890123456:role/app";

fn schema() -> Schema {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/schema.cedarschema"
    ))
    .unwrap();
    Schema::from_cedarschema_str(&text).unwrap().0
}

/// A request, and the instance as it really is (what RAM sees).
#[derive(Debug, Clone)]
struct Call {
    action: &'static str,
    region: &'static str,
    instance: &'static str,
    ip: [u8; 4],
    /// Seconds after 2026-12-01T00:00:00Z.
    time: i64,
    secure: bool,
    mfa: bool,
    /// The request's AllocatePublicIpAddress.
    allocate_public_ip: Option<bool>,
    /// The request's InternetMaxBandwidthOut.
    bandwidth_out: Option<u32>,
    /// The instance's billing, `PrePaid` or `PostPaid`.
    charge_type: &'static str,
    /// Whether the instance has a public IP.
    has_public_ip: bool,
    /// The instance's tags.
    tags: Vec<(&'static str, &'static str)>,
    /// Whether the gateway knows the instance (entities.json or a lookup).
    /// An unknown one has, for the policies, no tags and no billing.
    known: bool,
}

impl Call {
    fn arn(&self) -> String {
        format!(
            "acs:ecs:{}:1234567890123456:instance/{}",
            self.region, self.instance
        )
    }

    /// `ecs:AssociatePublicIpAddress` as RAM has it, from the real instance:
    /// the caller asks for a public IP, or raises a subscription instance
    /// without one above 0 Mbit/s (ECS then allocates one by itself).
    fn associate(&self) -> bool {
        self.allocate_public_ip == Some(true)
            || (self.bandwidth_out.is_some_and(|out| out > 0)
                && self.charge_type == "PrePaid"
                && !self.has_public_ip)
    }

    fn modify_request(&self) -> ModifyRequest {
        ModifyRequest {
            region_id: self.region.into(),
            instance_id: self.instance.into(),
            bandwidth_out: self.bandwidth_out,
            bandwidth_in: None,
            network_charge_type: None,
            allocate_public_ip: self.allocate_public_ip,
            temporary: None,
            auto_pay: None,
            client_token: ClientToken {
                value: "t".into(),
                generated: true,
            },
            account_id: None,
        }
    }

    fn time(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::seconds(self.time)
    }
}

/// RAM's decision for one document: Some(true) allow, Some(false) explicit
/// deny, None implicit deny.
fn reference(doc: &Value, call: &Call) -> Option<bool> {
    let statements: Vec<&Value> = match &doc["Statement"] {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut allowed = false;
    for statement in statements {
        if applies(statement, call) {
            if statement["Effect"] == "Deny" {
                return Some(false);
            }
            allowed = true;
        }
    }
    allowed.then_some(true)
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => vec![scalar(other)],
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// RAM's `*`/`?` match, written independently of the importer's.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &text.chars().collect::<Vec<_>>(),
    )
}

fn applies(statement: &Value, call: &Call) -> bool {
    let action_ok = match (statement.get("Action"), statement.get("NotAction")) {
        (Some(a), _) => list(a)
            .iter()
            .any(|p| glob(&p.to_lowercase(), &call.action.to_lowercase())),
        (_, Some(a)) => !list(a)
            .iter()
            .any(|p| glob(&p.to_lowercase(), &call.action.to_lowercase())),
        _ => false,
    };
    let arn = call.arn();
    let resource_ok = match (statement.get("Resource"), statement.get("NotResource")) {
        (Some(r), _) => list(r).iter().any(|p| glob(p, &arn)),
        (_, Some(r)) => !list(r).iter().any(|p| glob(p, &arn)),
        _ => false,
    };
    action_ok
        && resource_ok
        && statement
            .get("Condition")
            .and_then(Value::as_object)
            .is_none_or(|ops| {
                ops.iter().all(|(op, keys)| {
                    keys.as_object()
                        .unwrap()
                        .iter()
                        .all(|(key, values)| holds(op, key, &list(values), call))
                })
            })
}

fn in_range(ip: IpAddr, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let (IpAddr::V4(ip), Ok(IpAddr::V4(net))) = (ip, net.parse::<IpAddr>()) else {
        return false;
    };
    let bits: u32 = bits.parse().unwrap();
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// One operator over one key: the values OR; a negated operator holds when
/// no value matches (and, for a missing tag, always).
fn holds(op: &str, key: &str, values: &[String], call: &Call) -> bool {
    let negated = op.contains("Not");
    let matched = match key {
        "acs:SourceIp" => values.iter().any(|v| in_range(IpAddr::from(call.ip), v)),
        "acs:CurrentTime" => values.iter().any(|v| {
            let t = chrono::DateTime::parse_from_rfc3339(v).unwrap().to_utc();
            let now = call.time();
            match op {
                "DateEquals" | "DateNotEquals" => now == t,
                "DateLessThan" => now < t,
                "DateLessThanEquals" => now <= t,
                "DateGreaterThan" => now > t,
                "DateGreaterThanEquals" => now >= t,
                _ => unreachable!(),
            }
        }),
        "acs:SecureTransport" | "acs:MFAPresent" | "ecs:AssociatePublicIpAddress" => {
            let actual = match key {
                "acs:SecureTransport" => call.secure,
                "acs:MFAPresent" => call.mfa,
                _ => call.associate(),
            };
            values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&actual.to_string()))
        }
        tag_key => {
            let tag = tag_key.strip_prefix("acs:ResourceTag/").unwrap();
            let Some((_, actual)) = call.tags.iter().find(|(k, _)| *k == tag) else {
                return negated;
            };
            values.iter().any(|v| match op {
                "StringEquals" | "StringNotEquals" => v == actual,
                "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
                    v.to_lowercase() == actual.to_lowercase()
                }
                "StringLike" | "StringNotLike" => glob(v, actual),
                _ => unreachable!(),
            })
        }
    };
    matched != negated
}

/// The imported Cedar's decision, evaluated by Cedar against the shipped
/// schema (strictly validated first), on what the gateway knows: a known
/// instance with its billing and tags, an unknown one as the gateway builds
/// it (`known` false, nothing else), with `ecs:AssociatePublicIpAddress` as
/// the gateway computes it from either.
fn cedar(policies: &PolicySet, schema: &Schema, call: &Call) -> Option<bool> {
    let principal = EntityUid::from_str(&format!("Ram::Role::{ROLE:?}")).unwrap();
    let group = EntityUid::from_str("Ram::Group::\"AppTeams\"").unwrap();
    let resource = EntityUid::from_str(&format!("Ecs::Instance::{:?}", call.instance)).unwrap();
    let actions = schema.action_entities().unwrap();
    let mut attrs = HashMap::from([
        ("arn".into(), RestrictedExpression::new_string(call.arn())),
        (
            "region".into(),
            RestrictedExpression::new_string(call.region.into()),
        ),
        (
            "account".into(),
            RestrictedExpression::new_string("1234567890123456".into()),
        ),
        ("known".into(), RestrictedExpression::new_bool(call.known)),
    ]);
    let mut tags = Vec::new();
    if call.known {
        attrs.insert(
            "chargeType".into(),
            RestrictedExpression::new_string(call.charge_type.into()),
        );
        attrs.insert(
            "hasPublicIp".into(),
            RestrictedExpression::new_bool(call.has_public_ip),
        );
        tags.clone_from(&call.tags);
    }
    let instance = Entity::new_with_tags(
        resource.clone(),
        attrs,
        HashSet::new(),
        tags.iter().map(|(k, v)| {
            (
                (*k).to_owned(),
                RestrictedExpression::new_string((*v).into()),
            )
        }),
    )
    .unwrap();
    let request = call.modify_request();
    let associate = allocates_public_ip(
        &request,
        call.known
            .then(|| Instance {
                entity: instance.clone(),
                arn: call.arn(),
                region: call.region.into(),
                account: "1234567890123456".into(),
                charge_type: Some(call.charge_type.into()),
                has_public_ip: Some(call.has_public_ip),
            })
            .as_ref(),
    );
    let entities = Entities::from_entities(
        actions.iter().cloned().chain([
            Entity::new(
                principal.clone(),
                HashMap::from([
                    ("arn".into(), RestrictedExpression::new_string(ROLE.into())),
                    (
                        "account".into(),
                        RestrictedExpression::new_string("1234567890123456".into()),
                    ),
                ]),
                [group].into(),
            )
            .unwrap(),
            instance,
        ]),
        None,
    )
    .unwrap();
    let time = call.time().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let context = Context::from_pairs([
        (
            "acs:SourceIp".to_owned(),
            RestrictedExpression::new_ip(IpAddr::from(call.ip).to_string()),
        ),
        (
            "acs:CurrentTime".to_owned(),
            RestrictedExpression::new_datetime(time),
        ),
        (
            "acs:SecureTransport".to_owned(),
            RestrictedExpression::new_bool(call.secure),
        ),
        (
            "acs:MFAPresent".to_owned(),
            RestrictedExpression::new_bool(call.mfa),
        ),
        (
            "ecs:AssociatePublicIpAddress".to_owned(),
            RestrictedExpression::new_bool(associate),
        ),
        (
            "request".to_owned(),
            RestrictedExpression::new_record(
                [
                    (
                        "region_id".to_owned(),
                        RestrictedExpression::new_string(call.region.into()),
                    ),
                    (
                        "instance_id".to_owned(),
                        RestrictedExpression::new_string(call.instance.into()),
                    ),
                    (
                        "temporary_upgrade".to_owned(),
                        RestrictedExpression::new_bool(false),
                    ),
                ]
                .into_iter()
                .chain(call.allocate_public_ip.map(|a| {
                    (
                        "allocate_public_ip".to_owned(),
                        RestrictedExpression::new_bool(a),
                    )
                }))
                .chain(call.bandwidth_out.map(|out| {
                    (
                        "internet_max_bandwidth_out".to_owned(),
                        RestrictedExpression::new_long(out.into()),
                    )
                })),
            )
            .unwrap(),
        ),
    ])
    .unwrap();
    let action = EntityUid::from_str(&format!("Action::{:?}", call.action)).unwrap();
    let request = Request::new(principal, action, resource, context, Some(schema)).unwrap();
    let response = Authorizer::new().is_authorized(&request, policies, &entities);
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "imported policies must not fail: {errors:?}"
    );
    match response.decision() {
        Decision::Allow => Some(true),
        Decision::Deny if response.diagnostics().reason().next().is_some() => Some(false),
        Decision::Deny => None,
    }
}

fn imported(doc: &Value) -> Result<PolicySet, String> {
    let text = ram::import(
        &doc.to_string(),
        &Target::Group("AppTeams".into()),
        "identity.ram",
    )
    .map_err(|e| e.to_string())?;
    let set = PolicySet::from_str(&text).map_err(|e| format!("{e:?}\n{text}"))?;
    let result = Validator::new(schema()).validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        let errors: Vec<String> = result
            .validation_errors()
            .map(ToString::to_string)
            .collect();
        return Err(format!("{errors:?}\n{text}"));
    }
    Ok(set)
}

const ACTIONS: [&str; 2] = [
    "ecs:ModifyInstanceNetworkSpec",
    "ecs:AllocatePublicIpAddress",
];

/// The tag keys and values of the generated instances and conditions.
const TAG_KEYS: [&str; 3] = ["env", "team", "Env"];
const TAG_VALUES: [&str; 5] = ["prod", "Prod", "production", "dev", "prod1"];

fn call() -> impl Strategy<Value = Call> {
    (
        prop::sample::select(ACTIONS.to_vec()),
        prop::sample::select(vec!["cn-hangzhou", "cn-shanghai", "us-west-1"]),
        prop::sample::select(vec!["i-abc1", "i-abc12", "i-xyz9", "i-abd1"]),
        prop::sample::select(vec![[10, 1, 2, 3], [192, 168, 1, 7], [127, 0, 0, 1]]),
        prop::sample::select(vec![-86_400i64, -1, 0, 1, 86_400]),
        (prop::bool::ANY, prop::bool::ANY),
        (
            prop::sample::select(vec![None, Some(false), Some(true)]),
            prop::sample::select(vec![None, Some(0), Some(5)]),
            prop::sample::select(vec!["PrePaid", "PostPaid"]),
            prop::bool::ANY,
        ),
        prop::collection::vec(
            (
                prop::sample::select(TAG_KEYS.to_vec()),
                prop::sample::select(TAG_VALUES.to_vec()),
            ),
            0..3,
        ),
        prop::bool::weighted(0.7),
    )
        .prop_map(
            |(
                action,
                region,
                instance,
                ip,
                time,
                (secure, mfa),
                (allocate_public_ip, bandwidth_out, charge_type, has_public_ip),
                tags,
                known,
            )| {
                let mut seen = std::collections::HashSet::new();
                let tags = tags.into_iter().filter(|(k, _)| seen.insert(*k)).collect();
                Call {
                    action,
                    region,
                    instance,
                    ip,
                    time,
                    secure,
                    mfa,
                    allocate_public_ip,
                    bandwidth_out,
                    charge_type,
                    has_public_ip,
                    tags,
                    known,
                }
            },
        )
}

/// Every instance an unknown one could really be, as far as the documents
/// can tell them apart: each key of `TAG_KEYS` absent or with each value of
/// `TAG_VALUES`; and, since a document reads the billing only through
/// `ecs:AssociatePublicIpAddress`, a subscription instance without a public
/// IP (ECS gives it one when raised) and a pay-as-you-go one (it does not).
fn real_instances(call: &Call) -> impl Iterator<Item = Call> + '_ {
    let choices: Vec<Option<&'static str>> = std::iter::once(None)
        .chain(TAG_VALUES.iter().copied().map(Some))
        .collect();
    let mut tag_sets: Vec<Vec<(&'static str, &'static str)>> = vec![Vec::new()];
    for key in TAG_KEYS {
        tag_sets = tag_sets
            .iter()
            .flat_map(|set| {
                choices.iter().map(move |choice| {
                    let mut set = set.clone();
                    set.extend(choice.map(|value| (key, value)));
                    set
                })
            })
            .collect();
    }
    tag_sets.into_iter().flat_map(move |tags| {
        ["PrePaid", "PostPaid"]
            .into_iter()
            .map(move |charge_type| Call {
                charge_type,
                has_public_ip: false,
                tags: tags.clone(),
                ..call.clone()
            })
    })
}

fn one_or_many(values: Vec<String>) -> Value {
    if values.len() == 1 {
        json!(values[0])
    } else {
        json!(values)
    }
}

fn condition() -> impl Strategy<Value = (String, String, Value)> {
    let times = vec![
        "2026-12-01T00:00:00Z",
        "2026-12-01T08:00:00+08:00",
        "2026-11-30T23:59:59Z",
        "2026-12-01T00:00:01Z",
    ];
    prop_oneof![
        (
            prop::sample::select(vec!["IpAddress", "NotIpAddress"]),
            prop::collection::vec(
                prop::sample::select(vec![
                    "10.0.0.0/8",
                    "192.168.1.7",
                    "127.0.0.0/8",
                    "172.16.0.0/12"
                ]),
                1..3
            )
        )
            .prop_map(|(op, v)| (
                op.to_owned(),
                "acs:SourceIp".to_owned(),
                one_or_many(v.into_iter().map(str::to_owned).collect())
            )),
        (
            prop::sample::select(vec![
                "DateEquals",
                "DateNotEquals",
                "DateLessThan",
                "DateLessThanEquals",
                "DateGreaterThan",
                "DateGreaterThanEquals"
            ]),
            prop::collection::vec(prop::sample::select(times), 1..3)
        )
            .prop_map(|(op, v)| (
                op.to_owned(),
                "acs:CurrentTime".to_owned(),
                one_or_many(v.into_iter().map(str::to_owned).collect())
            )),
        (
            prop::sample::select(vec![
                "acs:SecureTransport",
                "acs:MFAPresent",
                "ecs:AssociatePublicIpAddress"
            ]),
            prop::sample::select(vec![
                json!(true),
                json!("false"),
                json!(["true", "false"]),
                json!("TRUE")
            ])
        )
            .prop_map(|(key, v)| ("Bool".to_owned(), key.to_owned(), v)),
        (
            prop::sample::select(vec![
                "StringEquals",
                "StringNotEquals",
                "StringEqualsIgnoreCase",
                "StringNotEqualsIgnoreCase",
                "StringLike",
                "StringNotLike"
            ]),
            prop::sample::select(vec!["env", "team", "Env"]),
            prop::collection::vec(
                prop::sample::select(vec!["prod", "PROD", "prod*", "*od*", "dev"]),
                1..3
            )
        )
            .prop_map(|(op, key, v)| (
                op.to_owned(),
                format!("acs:ResourceTag/{key}"),
                one_or_many(v.into_iter().map(str::to_owned).collect())
            )),
    ]
}

fn statement() -> impl Strategy<Value = Value> {
    let actions = prop::collection::vec(
        prop::sample::select(vec![
            "ecs:*",
            "ECS:modify*",
            "ecs:Modify*",
            "ecs:Allocate*",
            "ecs:?odifyInstanceNetworkSpec",
            "ecs:ModifyInstanceNetworkSpec",
            "ecs:DescribeInstances",
            "*",
            "ecs:*Public*",
            "vpc:*",
        ]),
        1..3,
    );
    let resources = prop::collection::vec(
        prop::sample::select(vec![
            "*",
            "acs:ecs:*:*:instance/*",
            "acs:ecs:cn-hangzhou:*:instance/*",
            "acs:ecs:*:*:instance/i-abc?",
            "acs:ecs:*:1234567890123456:instance/i-ab*",
            "acs:ecs:cn-?hanghai:*:*",
            "acs:ecs:*:999:instance/*",
            "*xyz*",
        ]),
        1..3,
    );
    (
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.2),
        actions,
        prop::bool::weighted(0.2),
        resources,
        prop::collection::vec(condition(), 0..3),
        prop::option::of("[A-Za-z0-9]{1,8}"),
    )
        .prop_map(
            |(deny, not_action, actions, not_resource, resources, conditions, sid)| {
                let mut s = serde_json::Map::new();
                if let Some(sid) = sid {
                    s.insert("Sid".into(), json!(sid));
                }
                s.insert("Effect".into(), json!(if deny { "Deny" } else { "Allow" }));
                s.insert(
                    if not_action { "NotAction" } else { "Action" }.into(),
                    one_or_many(actions.into_iter().map(str::to_owned).collect()),
                );
                s.insert(
                    if not_resource {
                        "NotResource"
                    } else {
                        "Resource"
                    }
                    .into(),
                    one_or_many(resources.into_iter().map(str::to_owned).collect()),
                );
                if !conditions.is_empty() {
                    let mut block = serde_json::Map::new();
                    for (op, key, values) in conditions {
                        block
                            .entry(op)
                            .or_insert_with(|| json!({}))
                            .as_object_mut()
                            .unwrap()
                            .insert(key, values);
                    }
                    s.insert("Condition".into(), Value::Object(block));
                }
                Value::Object(s)
            },
        )
}

fn slot(decision: Option<bool>) -> usize {
    match decision {
        Some(true) => 0,
        Some(false) => 1,
        None => 2,
    }
}

/// On an instance the gateway knows, the imported Cedar decides as RAM
/// does. On one it does not know, RAM decides on the real instance, which
/// may be any of `real_instances`: the gateway allows only where RAM allows
/// each of them, and denies explicitly wherever RAM denies one explicitly
/// (in the control layer a baseline permit allows the rest, so there only
/// the forbids decide).
#[test]
fn imported_policies_decide_as_ram_decides_the_document() {
    let schema = schema();
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases: 400,
            failure_persistence: None,
            ..RunnerConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[13; 32]),
    );
    // Allow, explicit deny, implicit deny: RAM's on known instances, the
    // gateway's on unknown ones.
    let known = std::sync::Mutex::new([0usize; 3]);
    let unknown = std::sync::Mutex::new([0usize; 3]);
    let strategy = (
        prop::collection::vec(statement(), 1..4),
        prop::collection::vec(call(), 25),
    );
    runner
        .run(&strategy, |(statements, calls)| {
            let doc = json!({"Version": "1", "Statement": statements});
            let policies = imported(&doc).map_err(TestCaseError::fail)?;
            for call in &calls {
                let gateway = cedar(&policies, &schema, call);
                if call.known {
                    let expected = reference(&doc, call);
                    prop_assert_eq!(gateway, expected, "{:#}\n{:?}", doc, call);
                    known.lock().unwrap()[slot(expected)] += 1;
                    continue;
                }
                unknown.lock().unwrap()[slot(gateway)] += 1;
                // An explicit deny is as strict as it gets.
                if gateway == Some(false) {
                    continue;
                }
                for real in real_instances(call) {
                    let ram = reference(&doc, &real);
                    prop_assert!(
                        gateway != Some(true) || ram == Some(true),
                        "the gateway allows an unknown instance RAM does not allow ({:?}):\n{:#}\n{:?}",
                        ram,
                        doc,
                        real
                    );
                    prop_assert!(
                        ram != Some(false),
                        "RAM denies explicitly an instance the gateway does not know ({:?}):\n{:#}\n{:?}",
                        gateway,
                        doc,
                        real
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    let known = *known.lock().unwrap();
    let unknown = *unknown.lock().unwrap();
    assert!(
        known.iter().all(|&n| n >= 500),
        "known instances: allow, explicit deny, implicit deny: {known:?}"
    );
    // Failing closed is not failing shut: unknown instances are still
    // allowed where every real instance would be.
    assert!(
        unknown.iter().all(|&n| n >= 300),
        "unknown instances: allow, explicit deny, implicit deny: {unknown:?}"
    );
}

fn import(doc: Value) -> Result<String, String> {
    ram::import(
        &doc.to_string(),
        &Target::Group("AppTeams".into()),
        "identity.ram",
    )
    .map_err(|e| e.to_string())
}

#[test]
fn refuses_what_it_cannot_import_exactly_naming_the_statement() {
    let base = |statement: Value| {
        json!({"Version": "1", "Statement": [
            {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
            statement
        ]})
    };
    for (statement, expected) in [
        (
            json!({"Sid": "Two", "Effect": "Allow", "Action": "ecs:*", "Resource": "acs:ecs:*:*:instance/i-??"}),
            "statement 2 (Sid \"Two\"): Resource \"acs:ecs:*:*:instance/i-??\": more than one `?`",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"StringLike": {"acs:ResourceTag/env": "pro?"}}}),
            "statement 2: StringLike value \"pro?\"",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"NumericLessThan": {"acs:ResourceTag/n": "5"}}}),
            "no numeric condition key",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"StringEquals": {"acs:UserAgent": "x"}}}),
            "condition key \"acs:UserAgent\" is not known",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"StringEqualsAny": {"acs:ResourceTag/env": "x"}}}),
            "operator \"StringEqualsAny\" does not apply",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"acs:ResourceTag/env": "x"}}}),
            "qualifiers",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"StringEqualsIfExists": {"acs:ResourceTag/env": "x"}}}),
            "qualifiers",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"acs:ResourceTag/env": "abcdefghijk"}}}),
            "more than 10 letters",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"IpAddress": {"acs:SourceIp": "10.0.0.0/33"}}}),
            "not an IP address or CIDR block",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"DateLessThan": {"acs:CurrentTime": "soon"}}}),
            "not an ISO 8601 time",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"Bool": {"acs:MFAPresent": "yes"}}}),
            "expected true or false",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"IpAddress": {"acs:CurrentTime": "10.0.0.0/8"}}}),
            "does not apply to acs:CurrentTime",
        ),
        (
            json!({"Effect": "Allow", "Principal": "*", "Action": "ecs:*", "Resource": "*"}),
            "element \"Principal\" is not supported",
        ),
        (
            json!({"Effect": "Permit", "Action": "ecs:*", "Resource": "*"}),
            "Effect must be",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "NotAction": "ecs:x", "Resource": "*"}),
            "exactly one of Action and NotAction",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*"}),
            "exactly one of Resource and NotResource",
        ),
        (
            json!({"Effect": "Allow", "Action": [], "Resource": "*"}),
            "Action: an empty list",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": ""}),
            "empty Resource pattern",
        ),
        (
            json!({"Effect": "Deny", "Action": "ecs:*", "NotResource": ""}),
            "empty Resource pattern",
        ),
        (
            json!({"Effect": "Allow", "Action": "", "Resource": "*"}),
            "Action: an empty pattern",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:ModifyInstanceNetwor\u{212A}Spec", "Resource": "*"}),
            "non-ASCII characters in an action pattern",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"acs:ResourceTag/env": "stra\u{df}e"}}}),
            "non-ASCII letters",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"DateLessThan": {"acs:CurrentTime": "2026-12-01T00:00:00.500Z"}}}),
            "fractions of a second",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"DateLessThan": {"acs:CurrentTime": "2026-12-01T08:00:00"}}}),
            "with an offset",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"IpAddress": {"acs:SourceIp": "10.0.0.0/08"}}}),
            "not an IP address or CIDR block",
        ),
        (
            json!({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"IpAddress": {"acs:SourceIp": "::ffff:10.0.0.0/104"}}}),
            "not an IP address or CIDR block",
        ),
    ] {
        let error = import(base(statement.clone())).unwrap_err();
        assert!(error.contains(expected), "{statement}: {error}");
    }
    for (doc, expected) in [
        (
            json!({"Version": "2", "Statement": []}),
            "Version must be \"1\"",
        ),
        (json!({"Version": "1", "Statement": []}), "non-empty list"),
        (
            json!({"Version": "1", "Statement": [], "Id": "x"}),
            "element \"Id\"",
        ),
    ] {
        assert!(import(doc.clone()).unwrap_err().contains(expected), "{doc}");
    }
    // A repeated key: a reader sees the first, serde_json would keep the last.
    let twice = r#"{"Version": "1", "Statement": [{"Effect": "Deny", "Effect": "Allow", "Action": "ecs:*", "Resource": "*"}]}"#;
    let error = ram::import(twice, &Target::Group("G".into()), "p").unwrap_err();
    assert!(
        error.to_string().contains("\"Effect\" appears twice"),
        "{error}"
    );
    assert!(
        ram::import("{", &Target::Group("G".into()), "p")
            .unwrap_err()
            .to_string()
            .contains("not a JSON document")
    );
    let error = ram::import(
        &json!({"Version": "1", "Statement": {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}}).to_string(),
        &Target::Principal("acs:ram::123:group/x".into()),
        "p",
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("not a RAM user or role ARN"),
        "{error}"
    );
}

#[test]
fn writes_one_policy_per_statement_with_its_id_and_the_statement_quoted() {
    let doc = json!({"Version": "1", "Statement": [
        {"Sid": "Allow", "Effect": "Allow", "Action": "ecs:Modify*", "Resource": "acs:ecs:cn-hangzhou:*:instance/*"},
        {"Effect": "Deny", "Action": "vpc:*", "Resource": "*"},
        {"Effect": "Deny", "NotAction": "ecs:Allocate*", "Resource": "*", "Condition": {"NotIpAddress": {"acs:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}}
    ]});
    let text = ram::import(
        &doc.to_string(),
        &Target::Principal("acs:ram::1234567890123456:role/netops".into()),
        "control.imported",
    )
    .unwrap();
    assert!(text.contains("@id(\"control.imported.1\")\npermit (\n  principal == Ram::Role::\"acs:ram::1234567890123456:role/netops\",\n  action in [Action::\"ecs:Modify*\"],"), "{text}");
    assert!(
        text.contains("// RAM statement 1 (Sid \"Allow\"): {"),
        "{text}"
    );
    assert!(
        !text.contains("control.imported.2"),
        "a statement matching no gateway action is a comment: {text}"
    );
    assert!(
        text.contains("// matches no action the gateway authorizes"),
        "{text}"
    );
    assert!(
        text.contains("@id(\"control.imported.3\")\nforbid"),
        "{text}"
    );
    assert!(text.contains("!((context[\"acs:SourceIp\"].isInRange(ip(\"10.0.0.0/8\")) || context[\"acs:SourceIp\"].isInRange(ip(\"192.168.0.0/16\"))))"), "{text}");
    PolicySet::from_str(&text).unwrap();
}

/// NotAction is a condition on any action, not a list of today's other
/// actions: an action the catalogue adds later that the patterns do not
/// name is covered, as RAM covers it (a Deny listing today's actions would
/// fail open for it). A pattern naming a group excludes the group, future
/// members included.
#[test]
fn not_action_covers_actions_the_catalogue_adds_later() {
    let text = ram::import(
        r#"{"Version":"1","Statement":{"Effect":"Deny","NotAction":["ecs:Modify*"],"Resource":"*"}}"#,
        &Target::Group("Ops".into()),
        "p",
    )
    .unwrap();
    assert!(
        text.contains(
            "forbid (\n  principal in Ram::Group::\"Ops\",\n  action,\n  resource\n)\nwhen { !(action in [Action::\"ecs:Modify*\", Action::\"ecs:ModifyInstanceNetworkSpec\"]) };"
        ),
        "{text}"
    );
    // Today's other actions are denied by it: each is outside the group.
    let set = PolicySet::from_str(&text).unwrap();
    let schema = schema();
    for (action, denied) in [
        ("ecs:ModifyInstanceNetworkSpec", false),
        ("ecs:AllocatePublicIpAddress", true),
        ("ecsgateway:Explain", true),
    ] {
        let request = Request::new(
            EntityUid::from_str(r#"Ram::Role::"acs:ram::1:role/r""#).unwrap(),
            EntityUid::from_str(&format!("Action::{action:?}")).unwrap(),
            EntityUid::from_str(r#"Ecs::Instance::"i-abc""#).unwrap(),
            Context::empty(),
            None,
        )
        .unwrap();
        let entities = Entities::from_entities(
            [Entity::new_no_attrs(
                EntityUid::from_str(r#"Ram::Role::"acs:ram::1:role/r""#).unwrap(),
                [EntityUid::from_str(r#"Ram::Group::"Ops""#).unwrap()].into(),
            )],
            None,
        )
        .unwrap()
        .add_entities(schema.action_entities().unwrap(), None)
        .unwrap();
        let answer = Authorizer::new().is_authorized(&request, &set, &entities);
        assert_eq!(
            answer.diagnostics().reason().count() == 1,
            denied,
            "{action}: {answer:?}"
        );
    }
}

/// A call from 10.1.2.3 raising `i-new` in cn-hangzhou to 5 Mbit/s.
fn call_on(known: bool, tags: &[(&'static str, &'static str)]) -> Call {
    Call {
        action: "ecs:ModifyInstanceNetworkSpec",
        region: "cn-hangzhou",
        instance: "i-new",
        ip: [10, 1, 2, 3],
        time: 0,
        secure: true,
        mfa: false,
        allocate_public_ip: None,
        bandwidth_out: Some(5),
        charge_type: "PostPaid",
        has_public_ip: false,
        tags: tags.to_vec(),
        known,
    }
}

/// Issue 20: without instance lookup an instance missing from
/// entities.json has no tags for the policies, so a Deny on a production
/// tag used to miss it, while RAM, seeing the real tag, denies. It applies
/// to an unknown instance now, and still needs its other conditions.
#[test]
fn deny_on_a_production_tag_applies_to_unknown_instances() {
    let schema = schema();
    let doc = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ecs:*", "Resource": "*",
         "Condition": {"StringEquals": {"acs:ResourceTag/env": "production"}}}
    ]});
    let policies = imported(&doc).unwrap();
    let production = [("env", "production")];
    assert_eq!(reference(&doc, &call_on(false, &production)), Some(false));
    assert_eq!(
        cedar(&policies, &schema, &call_on(false, &[])),
        Some(false),
        "an unknown instance may be production: denied explicitly"
    );
    assert_eq!(
        cedar(&policies, &schema, &call_on(true, &production)),
        Some(false)
    );
    assert_eq!(
        cedar(&policies, &schema, &call_on(true, &[("env", "dev")])),
        Some(true)
    );
    assert_eq!(cedar(&policies, &schema, &call_on(true, &[])), Some(true));

    // The README's statement, as the README shows it.
    let text = ram::import(
        &doc.to_string(),
        &Target::Group("CapacityPlanners".into()),
        "identity.ram",
    )
    .unwrap();
    assert!(
        text.contains(
            "forbid (\n  principal in Ram::Group::\"CapacityPlanners\",\n  action in [Action::\"ecs:*\"],\n  resource\n)\nwhen { (!resource.known || (resource.hasTag(\"env\") && resource.getTag(\"env\") == \"production\")) };"
        ),
        "{text}"
    );

    // Only the tag condition is assumed: from outside 10.0.0.0/8 this Deny
    // applies to no instance, known or not.
    let doc = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ecs:*", "Resource": "*",
         "Condition": {"StringEquals": {"acs:ResourceTag/env": "production"},
                       "IpAddress": {"acs:SourceIp": "10.0.0.0/8"}}}
    ]});
    let policies = imported(&doc).unwrap();
    assert_eq!(cedar(&policies, &schema, &call_on(false, &[])), Some(false));
    let outside = Call {
        ip: [192, 168, 1, 7],
        ..call_on(false, &[])
    };
    assert_eq!(cedar(&policies, &schema, &outside), Some(true));
}

/// Issue 20: a negated operator on a tag holds for an instance without the
/// tag, so an Allow with StringNotEquals used to reach every unknown
/// instance, production ones included. It reaches only known instances now.
#[test]
fn allow_with_string_not_equals_on_a_tag_does_not_reach_unknown_instances() {
    let schema = schema();
    let doc = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*",
         "Condition": {"StringNotEquals": {"acs:ResourceTag/env": "production"}}}
    ]});
    let policies = imported(&doc).unwrap();
    assert_eq!(
        reference(&doc, &call_on(false, &[("env", "production")])),
        None
    );
    assert_eq!(
        cedar(&policies, &schema, &call_on(false, &[])),
        None,
        "an unknown instance may be production: not allowed"
    );
    assert_eq!(
        cedar(&policies, &schema, &call_on(true, &[("env", "dev")])),
        Some(true)
    );
    assert_eq!(cedar(&policies, &schema, &call_on(true, &[])), Some(true));
    assert_eq!(
        cedar(&policies, &schema, &call_on(true, &[("env", "production")])),
        None
    );
    let text = import(doc).unwrap();
    assert!(
        text.contains(
            "when { (resource.known && !((resource.hasTag(\"env\") && resource.getTag(\"env\") == \"production\"))) };"
        ),
        "{text}"
    );
}

/// For an unknown instance the gateway counts `ecs:AssociatePublicIpAddress`
/// as true whenever ECS might allocate a public IP by itself, so a true may
/// really be false: a Deny on false still applies, an Allow on true does
/// not, unless the caller asked for a public IP (then it is true for any
/// instance).
#[test]
fn associate_public_ip_conditions_fail_closed_on_unknown_instances() {
    let schema = schema();
    let bool_statement = |effect: &str, value: bool| {
        json!({"Effect": effect, "Action": "ecs:*", "Resource": "*",
               "Condition": {"Bool": {"ecs:AssociatePublicIpAddress": value}}})
    };
    let deny_false = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
        bool_statement("Deny", false)
    ]});
    let allow_true = json!({"Version": "1", "Statement": [bool_statement("Allow", true)]});
    let deny_false = imported(&deny_false).unwrap();
    let allow_true = imported(&allow_true).unwrap();
    // Raised above 0 Mbit/s: a pay-as-you-go instance gets no public IP, a
    // subscription one without a public IP does.
    let unknown = call_on(false, &[]);
    assert!(!unknown.associate());
    assert_eq!(cedar(&deny_false, &schema, &unknown), Some(false));
    assert_eq!(cedar(&allow_true, &schema, &unknown), None);
    // Known, the gateway has the real value.
    let known = call_on(true, &[]);
    assert_eq!(cedar(&deny_false, &schema, &known), Some(false));
    let subscription = Call {
        charge_type: "PrePaid",
        ..call_on(true, &[])
    };
    assert_eq!(cedar(&allow_true, &schema, &subscription), Some(true));
    assert_eq!(cedar(&deny_false, &schema, &subscription), Some(true));
    // Asked for: true for any instance.
    let asked = Call {
        allocate_public_ip: Some(true),
        ..call_on(false, &[])
    };
    assert_eq!(cedar(&allow_true, &schema, &asked), Some(true));
    assert_eq!(cedar(&deny_false, &schema, &asked), Some(true));
    // Not raised: false for any instance.
    let unchanged = Call {
        bandwidth_out: None,
        ..call_on(false, &[])
    };
    assert_eq!(cedar(&deny_false, &schema, &unchanged), Some(false));
    assert_eq!(cedar(&allow_true, &schema, &unchanged), None);
}

/// An imported statement whose resource names an account matches that
/// account's instances only, decided by the gateway for calls naming
/// either account.
#[test]
fn a_resource_naming_an_account_matches_only_its_instances() {
    let doc = json!({
        "Version": "1",
        "Statement": [{
            "Effect": "Allow",
            "Action": "ecs:ModifyInstanceNetworkSpec",
            "Resource": "acs:ecs:*:2234567890123456:instance/*"
        }]
    });
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for file in ["schema.cedarschema", "principals.toml", "entities.json"] {
        std::fs::copy(shipped.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::create_dir(dir.path().join("control")).unwrap();
    std::fs::write(
        dir.path().join("control/baseline.cedar"),
        "@id(\"control.baseline\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("identity")).unwrap();
    std::fs::write(dir.path().join("identity/ram.cedar"), import(doc).unwrap()).unwrap();
    let authorizer = ecs_gateway::policy::Config {
        dir: dir.path().to_owned(),
        account_id: "1234567890123456".into(),
        dependent_actions: vec![],
    }
    .build()
    .unwrap();
    let caller = ecs_gateway::identity::Caller {
        identity: ecs_gateway::identity::CallerId::Spiffe("spiffe://demo.local/sa/webapp".into()),
        via: ecs_gateway::identity::Via::Mtls,
        mfa: false,
        secure_transport: true,
        peer: Some("127.0.0.1:1".parse().unwrap()),
    };
    let decide = |account: &str, instance: &str| {
        let request = ecs_gateway::validate::modify_request(
            ecs_gateway::pb::ModifyInstanceNetworkSpecRequest {
                region_id: "cn-hangzhou".into(),
                instance_id: instance.into(),
                internet_max_bandwidth_out: Some(5),
                account_id: account.into(),
                ..Default::default()
            },
        )
        .unwrap();
        authorizer
            .decide(&caller, &request, chrono::Utc::now())
            .allowed()
    };
    assert!(decide("2234567890123456", "i-prod-web"));
    assert!(decide("2234567890123456", "i-not-listed"));
    assert!(
        !decide("", "i-demo-postpaid"),
        "the default account's instance"
    );
    assert!(!decide("1234567890123456", "i-not-listed"));
}
