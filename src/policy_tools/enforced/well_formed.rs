//! `W`, the request's facts every real call satisfies (what the validator
//! and the gateway guarantee), as one Cedar condition: so that a
//! counterexample of `policy diff` is a call that can happen.

use serde_json::Value;

use super::expr::{
    all, any, attr, between, binary, boolean, entity, extension, has, ite, long, method, not,
    string, var,
};
use crate::validate::{MAX_BANDWIDTH_OUT, MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC, SMALL_BANDWIDTH_OUT};

fn request() -> Value {
    attr(var("context"), "request")
}

fn field(name: &str) -> Value {
    attr(request(), name)
}

fn has_field(name: &str) -> Value {
    has(request(), name)
}

fn resource() -> Value {
    var("resource")
}

fn known() -> Value {
    attr(resource(), "known")
}

fn out() -> Value {
    field("internet_max_bandwidth_out")
}

fn bandwidth_in() -> Value {
    field("internet_max_bandwidth_in")
}

/// `if a then b else true`: the strict validator follows `has` into the
/// `then` branch (not through `!a || b`).
fn implies(a: Value, b: Value) -> Value {
    ite(a, b, boolean(true))
}

/// The request's facts every real call satisfies, as a Cedar condition;
/// the instance's account is `account_id`'s when given. The terms are
/// joined in this order (and so into the same tree) whatever the steps.
pub(super) fn well_formed(accounts: Option<&[String]>) -> Value {
    let mut terms = placement(accounts);
    terms.extend(bandwidths());
    terms.extend(shape());
    terms.extend(times());
    all(terms)
}

/// Where the served accounts sit in the Resource Directory entities.json
/// describes (`directory`, with its ancestors closed): an instance of
/// account `a` is in `Ram::Account::"a"` and in exactly the folders above
/// it, so a proof about `resource in Ram::Folder::"…"` holds for the
/// accounts as they are placed, not for any placement.
pub(super) fn directory(directory: &[cedar_policy::Entity], accounts: &[String]) -> Value {
    let uid = |kind: &str, id: &str| entity(&serde_json::json!({ "type": kind, "id": id }));
    let within = |kind: &str, id: &str| binary("in", var("resource"), uid(kind, id));
    let folders: Vec<String> = directory
        .iter()
        .filter(|e| e.uid().type_name().to_string() == "Ram::Folder")
        .map(|e| e.uid().id().unescaped().to_owned())
        .collect();
    let above = |account: &str| -> Vec<String> {
        directory
            .iter()
            .find(|e| {
                e.uid().type_name().to_string() == "Ram::Account"
                    && e.uid().id().unescaped() == account
            })
            .map(|e| {
                let (_, _, ancestors) = e.clone().into_inner();
                ancestors
                    .iter()
                    .map(|a| a.id().unescaped().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let described = directory.iter().any(|e| {
        let kind = e.uid().type_name().to_string();
        kind == "Ram::Account" || kind == "Ram::Folder"
    });
    let mut terms = Vec::new();
    for account in accounts {
        let is_it = binary("==", attr(resource(), "account"), string(account));
        // The gateway denies an account the described directory does not
        // place (PolicyData::placed): no call of it is ever allowed.
        if described && above(account).is_empty() {
            terms.push(not(is_it));
            continue;
        }
        let mut placed = vec![within("Ram::Account", account)];
        placed.extend(
            accounts
                .iter()
                .filter(|other| *other != account)
                .map(|other| not(within("Ram::Account", other))),
        );
        let folders_above = above(account);
        for folder in &folders {
            let inside = within("Ram::Folder", folder);
            placed.push(if folders_above.contains(folder) {
                inside
            } else {
                not(inside)
            });
        }
        terms.push(implies(is_it, all(placed)));
    }
    all(terms)
}

/// Where the instance is, what an unknown one lacks, and
/// `ecs:AssociatePublicIpAddress`.
fn placement(accounts: Option<&[String]>) -> Vec<Value> {
    vec![
        binary("==", attr(resource(), "region"), field("region_id")),
        // One of the accounts the gateway serves.
        accounts.map_or_else(
            || boolean(true),
            |accounts| {
                any(accounts
                    .iter()
                    .map(|account| binary("==", attr(resource(), "account"), string(account)))
                    .collect())
            },
        ),
        // An instance the gateway does not know has none of these.
        implies(
            not(known()),
            all(vec![
                not(has(resource(), "chargeType")),
                not(has(resource(), "hasPublicIp")),
                not(has(resource(), "internetChargeType")),
                not(has(resource(), "internetMaxBandwidthOut")),
                not(has(resource(), "internetMaxBandwidthIn")),
            ]),
        ),
        binary(
            "==",
            attr(var("context"), "ecs:AssociatePublicIpAddress"),
            associates(),
        ),
    ]
}

/// ecs:AssociatePublicIpAddress, as decide::allocates_public_ip computes it.
fn associates() -> Value {
    let asks = binary(
        "&&",
        has_field("allocate_public_ip"),
        field("allocate_public_ip"),
    );
    let raises = all(vec![
        has_field("internet_max_bandwidth_out"),
        binary(">", out(), long(0)),
        any(vec![
            not(known()),
            binary(
                "&&",
                not(binary(
                    "&&",
                    has(resource(), "chargeType"),
                    binary("==", attr(resource(), "chargeType"), string("PostPaid")),
                )),
                not(binary(
                    "&&",
                    has(resource(), "hasPublicIp"),
                    attr(resource(), "hasPublicIp"),
                )),
            ),
        ]),
    ]);
    any(vec![asks, raises])
}

/// The bandwidths' bounds.
fn bandwidths() -> Vec<Value> {
    vec![
        implies(
            has_field("internet_max_bandwidth_out"),
            binary(
                "&&",
                binary(">=", out(), long(0)),
                binary("<=", out(), long(i64::from(MAX_BANDWIDTH_OUT))),
            ),
        ),
        implies(
            has_field("internet_max_bandwidth_in"),
            binary(
                "&&",
                binary(">=", bandwidth_in(), long(1)),
                binary("<=", bandwidth_in(), long(i64::from(MAX_BANDWIDTH_OUT))),
            ),
        ),
        // The inbound bound follows the outbound value (10 up to 10 Mbit/s).
        implies(
            binary(
                "&&",
                has_field("internet_max_bandwidth_in"),
                has_field("internet_max_bandwidth_out"),
            ),
            binary(
                "<=",
                bandwidth_in(),
                ite(
                    binary(">", out(), long(i64::from(SMALL_BANDWIDTH_OUT))),
                    out(),
                    long(i64::from(SMALL_BANDWIDTH_OUT)),
                ),
            ),
        ),
        // Pay-by-traffic caps the outbound bandwidth.
        implies(
            binary(
                "&&",
                has_field("internet_max_bandwidth_out"),
                binary(
                    "&&",
                    has_field("network_charge_type"),
                    binary("==", field("network_charge_type"), string("PayByTraffic")),
                ),
            ),
            binary(
                "<=",
                out(),
                long(i64::from(MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC)),
            ),
        ),
        // A public IP needs an outbound bandwidth above 0.
        implies(
            binary(
                "&&",
                has_field("allocate_public_ip"),
                binary(
                    "&&",
                    field("allocate_public_ip"),
                    has_field("internet_max_bandwidth_out"),
                ),
            ),
            binary(">", out(), long(0)),
        ),
    ]
}

/// Which fields a call carries together.
fn shape() -> Vec<Value> {
    let small = long(i64::from(SMALL_BANDWIDTH_OUT));
    // ECS's inbound default: 10 up to 10 Mbit/s out, else the outbound value.
    let default_in = ite(binary(">", out(), small.clone()), out(), small);
    let effective = || field("effective_bandwidth_in");
    vec![
        // A temporary upgrade is of the outbound bandwidth.
        implies(
            has_field("start_time"),
            has_field("internet_max_bandwidth_out"),
        ),
        // Something to change.
        any(vec![
            has_field("internet_max_bandwidth_out"),
            has_field("internet_max_bandwidth_in"),
            has_field("network_charge_type"),
            has_field("allocate_public_ip"),
        ]),
        // effective_bandwidth_in: the caller's inbound value, else the
        // default for the outbound one, else absent.
        ite(
            has_field("internet_max_bandwidth_in"),
            binary(
                "&&",
                has_field("effective_bandwidth_in"),
                binary("==", effective(), bandwidth_in()),
            ),
            ite(
                has_field("internet_max_bandwidth_out"),
                binary(
                    "&&",
                    has_field("effective_bandwidth_in"),
                    binary("==", effective(), default_in),
                ),
                not(has_field("effective_bandwidth_in")),
            ),
        ),
        implies(
            has_field("network_charge_type"),
            any(vec![
                binary("==", field("network_charge_type"), string("PayByBandwidth")),
                binary("==", field("network_charge_type"), string("PayByTraffic")),
            ]),
        ),
        // A temporary upgrade has both times, and only then.
        binary("==", field("temporary_upgrade"), has_field("start_time")),
        binary("==", has_field("start_time"), has_field("end_time")),
    ]
}

/// Times a call can carry: the gateway's clock reads this century or the
/// next; a temporary upgrade's times are protobuf timestamps (years 1 to
/// 9999), three hours or more apart.
fn times() -> Vec<Value> {
    vec![
        between(
            attr(var("context"), "acs:CurrentTime"),
            "2000-01-01",
            "2200-01-01",
        ),
        implies(
            has_field("start_time"),
            between(field("start_time"), "0001-01-01", "9999-12-31T23:59:59Z"),
        ),
        implies(
            has_field("end_time"),
            between(field("end_time"), "0001-01-01", "9999-12-31T23:59:59Z"),
        ),
        implies(
            binary("&&", has_field("start_time"), has_field("end_time")),
            binary(
                ">=",
                field("end_time"),
                method(
                    field("start_time"),
                    "offset",
                    vec![extension("duration", "3h")],
                ),
            ),
        ),
    ]
}
