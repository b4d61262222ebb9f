//! The request context a call is decided with: RAM's global condition keys
//! (`acs:SourceIp`, `acs:CurrentTime`, …), the action's
//! `ecs:AssociatePublicIpAddress`, the request's parameters, and the
//! context keys `ecsgateway:SimulatePrincipal` adds. The extension values
//! are prepared once per thread and second or address: building them was
//! the dearest part of a decision.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use cedar_policy::{Context, EntityUid, RestrictedExpression};
use chrono::{DateTime, Utc};

use crate::identity::{Caller, CallerId};
use crate::policy::store::{Instance, PolicyData};
use crate::validate::ModifyRequest;

/// `ecsgateway:SimulatePrincipal`'s own context keys: the simulated
/// identity's principal ARN (its identity when principals.toml has no entry
/// for it) and its groups.
pub(crate) fn simulation_context(
    data: &PolicyData,
    identity: &CallerId,
) -> [(String, RestrictedExpression); 2] {
    let (arn, groups) = match data.principals.get(identity) {
        Some(p) => (p.arn.clone(), p.groups.clone()),
        None => (identity.to_string(), Vec::new()),
    };
    let groups = groups.into_iter().map(|g| {
        RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
            "Ram::Group"
                .parse()
                .unwrap_or_else(|_| unreachable!("a fixed type name parses")),
            cedar_policy::EntityId::new(g),
        ))
    });
    [
        (
            "ecsgateway:SimulatedPrincipal".to_owned(),
            RestrictedExpression::new_string(arn),
        ),
        (
            "ecsgateway:SimulatedGroups".to_owned(),
            RestrictedExpression::new_set(groups),
        ),
    ]
}

/// `ecs:AssociatePublicIpAddress`: the call allocates a public IP when it
/// asks for one, or when it raises a subscription instance that has none
/// above 0 Mbit/s (ECS then allocates one by itself). An instance
/// entities.json does not describe might be such an instance: true.
pub fn allocates_public_ip(request: &ModifyRequest, instance: Option<&Instance>) -> bool {
    if request.allocate_public_ip == Some(true) {
        return true;
    }
    request.bandwidth_out.is_some_and(|out| out > 0)
        && instance.is_none_or(|i| {
            i.charge_type.as_deref() != Some("PostPaid") && i.has_public_ip != Some(true)
        })
}

fn datetime(t: DateTime<Utc>) -> RestrictedExpression {
    RestrictedExpression::new_datetime(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn long(v: u32) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::from(v))
}

/// Distinct source addresses kept per thread before the cache is emptied.
const SOURCE_IPS_KEPT: usize = 1024;

thread_local! {
    /// `acs:CurrentTime` for the current second.
    static CURRENT_TIME: RefCell<Option<(i64, RestrictedExpression)>> = const { RefCell::new(None) };
    /// `acs:SourceIp` by address.
    static SOURCE_IPS: RefCell<HashMap<IpAddr, RestrictedExpression>> = RefCell::new(HashMap::new());
}

/// The same extension value, with its function's name already resolved.
/// `RestrictedExpression::new_ip` and `new_datetime` parse the function's
/// name on every call, which cost more than the rest of the decision; an
/// evaluated value turned back into an expression carries the parsed name,
/// so only its argument is parsed again.
fn resolved(expr: RestrictedExpression) -> RestrictedExpression {
    match Context::from_pairs([("v".to_owned(), expr.clone())]) {
        Ok(context) => context.into_iter().next().map_or(expr, |(_, v)| v),
        Err(_) => expr,
    }
}

/// `acs:CurrentTime`, to the second as RAM gives it (ISO 8601 without
/// fractions), prepared once per second and thread.
fn current_time(now: DateTime<Utc>) -> RestrictedExpression {
    let second = now.timestamp();
    CURRENT_TIME.with_borrow_mut(|cached| match cached {
        Some((at, expr)) if *at == second => expr.clone(),
        _ => {
            let expr = resolved(RestrictedExpression::new_datetime(
                now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ));
            *cached = Some((second, expr.clone()));
            expr
        }
    })
}

/// `acs:SourceIp`, prepared once per address and thread.
fn source_ip(ip: IpAddr) -> RestrictedExpression {
    SOURCE_IPS.with_borrow_mut(|cached| {
        if let Some(expr) = cached.get(&ip) {
            return expr.clone();
        }
        if cached.len() >= SOURCE_IPS_KEPT {
            cached.clear();
        }
        let expr = resolved(RestrictedExpression::new_ip(ip.to_string()));
        cached.insert(ip, expr.clone());
        expr
    })
}

/// The context: RAM's condition keys, the action's key and the request.
pub(crate) fn context(
    caller: &Caller,
    request: &ModifyRequest,
    associate: bool,
    now: DateTime<Utc>,
) -> Result<Context, String> {
    let peer = caller.peer.ok_or(
        "the caller's address is unknown, so acs:SourceIp cannot be set: behind a sidecar, \
             the sidecar must send the caller's address (x-forwarded-for, or the header \
             identity.source_address_header names)",
    )?;
    let mut params = vec![
        (
            "region_id".to_owned(),
            RestrictedExpression::new_string(request.region_id.clone()),
        ),
        (
            "instance_id".to_owned(),
            RestrictedExpression::new_string(request.instance_id.clone()),
        ),
        (
            "temporary_upgrade".to_owned(),
            RestrictedExpression::new_bool(request.temporary.is_some()),
        ),
    ];
    let optional = [
        (
            "internet_max_bandwidth_out",
            request.bandwidth_out.map(long),
        ),
        ("internet_max_bandwidth_in", request.bandwidth_in.map(long)),
        (
            "effective_bandwidth_in",
            request.effective_bandwidth_in().map(long),
        ),
        (
            "network_charge_type",
            request
                .network_charge_type
                .map(|c| RestrictedExpression::new_string(c.as_str().to_owned())),
        ),
        (
            "allocate_public_ip",
            request
                .allocate_public_ip
                .map(RestrictedExpression::new_bool),
        ),
        (
            "auto_pay",
            request.auto_pay.map(RestrictedExpression::new_bool),
        ),
        ("start_time", request.temporary.map(|t| datetime(t.start))),
        ("end_time", request.temporary.map(|t| datetime(t.end))),
    ];
    params.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
    );
    let params = RestrictedExpression::new_record(params).map_err(|e| e.to_string())?;
    Context::from_pairs([
        (
            "acs:SourceIp".to_owned(),
            source_ip(peer.ip().to_canonical()),
        ),
        ("acs:CurrentTime".to_owned(), current_time(now)),
        (
            "acs:SecureTransport".to_owned(),
            RestrictedExpression::new_bool(caller.secure_transport),
        ),
        (
            "acs:MFAPresent".to_owned(),
            RestrictedExpression::new_bool(caller.mfa),
        ),
        (
            "ecs:AssociatePublicIpAddress".to_owned(),
            RestrictedExpression::new_bool(associate),
        ),
        ("request".to_owned(), params),
    ])
    .map_err(|e| e.to_string())
}
