//! The decision the gateway enforces, as one Cedar policy: what `policy
//! diff` compares, since comparing the layers' policy sets one by one would
//! miss how they combine.
//!
//! For a call of action `A` the gateway allows when, for `A` and each of its
//! dependent actions `D` (the catalogue's, and the operator's
//! `[[policy.dependent_actions]]`, some only when the call allocates a
//! public IP), the control layer allows and then the identity layer allows,
//! and no policy that applies fails to evaluate (an error denies; Cedar
//! alone would skip the policy). That is one boolean of the request, written
//! here as the condition of a single `permit`, which Cedar allows exactly
//! when the gateway would:
//!
//! ```text
//! permit (principal, action == A, resource) when {
//!   W                                   // what every real call satisfies
//!   && (P1 || true) && (P2 || true) …   // no applicable policy errors
//!   && (permits of control for A) && !(forbids of control for A)
//!   && (permits of identity for A) && !(forbids of identity for A)
//!   && (if GUARD then … the same for D … else true) …
//! };
//! ```
//!
//! where each `Pi` is a policy's principal and resource scope and its
//! `when`/`unless` clauses, in Cedar's order (its action scope is decided
//! here, through the action hierarchy). `Pi || true` errors exactly when
//! `Pi` does; after them, no `Pi` can error, so the rest is Cedar's own
//! decision of each layer. `W` states what the gateway guarantees of every
//! request (the instance's region is the request's, its account the
//! gateway's, `ecs:AssociatePublicIpAddress` follows from the request and the
//! instance, validated bandwidths, …), so that a counterexample is a call
//! that can happen. What Cedar cannot state (the ARN is built from region,
//! account and ID) is left free: a proof over more requests than can happen
//! still holds for those that can.
//!
//! The gateway makes three decisions ([`DECIDED`]), each written this way
//! over the requests of its action: a ModifyInstanceNetworkSpec call; an
//! Explain of one's own call (`ecsgateway:Explain` alone); and an Explain
//! for another identity, where `A` is `ecsgateway:SimulatePrincipal` and
//! `ecsgateway:Explain` is decided first, as a dependent action is, but with
//! the explained call's context, which lacks the simulation keys
//! ([`decide`](crate::policy::decide) evaluates it so). An Explain is decided on the
//! explained call, validated as a call is, so `W` holds for it too.

use serde_json::{Value, json};

use crate::policy::catalogue::{self, Action};
use crate::policy::store::PolicyData;
use crate::policy::{DependentRule, When};
use expr::{all, any, attr, binary, boolean, entity, ite, not, var};
use well_formed::well_formed;

mod expr;
mod well_formed;

/// Why the enforced decision cannot be written as one policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

fn unsupported(message: impl Into<String>) -> Unsupported {
    Unsupported(message.into())
}

/// A principal or resource scope constraint as an expression on `var`.
fn scope(var_name: &str, constraint: &Value, policy: &str) -> Result<Value, Unsupported> {
    let op = constraint.get("op").and_then(Value::as_str).unwrap_or("");
    let target = || {
        constraint
            .get("entity")
            .map(entity)
            .ok_or_else(|| unsupported(format!("policy {policy}: a template slot in its scope")))
    };
    Ok(match op {
        "All" | "all" => boolean(true),
        "==" => binary("==", var(var_name), target()?),
        "in" => binary("in", var(var_name), target()?),
        "is" => {
            let mut is = json!({ "left": var(var_name), "entity_type": constraint["entity_type"] });
            if let Some(inside) = constraint.get("in") {
                let uid = inside.get("entity").ok_or_else(|| {
                    unsupported(format!("policy {policy}: a template slot in its scope"))
                })?;
                is["in"] = entity(uid);
            }
            json!({ "is": is })
        }
        other => {
            return Err(unsupported(format!(
                "policy {policy}: scope constraint {other:?}"
            )));
        }
    })
}

/// The uids an action is in: itself, its wildcard groups and its access
/// level, as the schema's generated block declares them.
fn ancestors(action: &Action) -> Vec<&'static str> {
    let mut names = vec![action.name, action.access_level.as_str()];
    names.extend(action.wildcards.iter().copied());
    names
}

/// Whether a policy's action scope takes in `action`.
fn action_applies(constraint: &Value, action: &Action, policy: &str) -> Result<bool, Unsupported> {
    let names = ancestors(action);
    let named = |uid: &Value| {
        uid.get("type").and_then(Value::as_str) == Some("Action")
            && uid
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| names.contains(&id))
    };
    match constraint.get("op").and_then(Value::as_str).unwrap_or("") {
        "All" | "all" => Ok(true),
        "==" => Ok(constraint.get("entity").is_some_and(|uid| {
            uid.get("id").and_then(Value::as_str) == Some(action.name)
                && uid.get("type").and_then(Value::as_str) == Some("Action")
        })),
        "in" => match (constraint.get("entity"), constraint.get("entities")) {
            (Some(uid), _) => Ok(named(uid)),
            (None, Some(Value::Array(uids))) => Ok(uids.iter().any(named)),
            _ => Err(unsupported(format!(
                "policy {policy}: an action scope this model does not read"
            ))),
        },
        other => Err(unsupported(format!(
            "policy {policy}: action scope constraint {other:?}"
        ))),
    }
}

/// Whether an expression reads the `action` variable.
fn reads_action(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.get("Var").and_then(Value::as_str) == Some("action")
                || map.values().any(reads_action)
        }
        Value::Array(items) => items.iter().any(reads_action),
        _ => false,
    }
}

/// Whether an expression reads an attribute or tag of (or asks `in` of)
/// an entity other than the request's principal and resource. The gateway
/// holds only those (and the actions): reading another one fails, which
/// denies, while the solver takes every entity to exist.
fn reads_other_entities(value: &Value) -> bool {
    /// The variable a chain of `.`/`has` reads from, if any.
    fn base(value: &Value) -> Option<&str> {
        if let Some(var) = value.get("Var").and_then(Value::as_str) {
            return Some(var);
        }
        let inner = value.get(".").or_else(|| value.get("has"))?;
        base(inner.get("left")?)
    }
    let entity_base = |left: &Value| matches!(base(left), Some("principal" | "resource"));
    match value {
        Value::Object(map) => map.iter().any(|(key, inner)| {
            let left = match key.as_str() {
                "." | "has" | "in" | "getTag" | "hasTag" => inner.get("left"),
                _ => None,
            };
            let foreign = left.is_some_and(|left| {
                // `context.…` reads the context record, not an entity.
                let from_context = matches!(base(left), Some("context"));
                !from_context && !entity_base(left)
            });
            foreign || reads_other_entities(inner)
        }),
        Value::Array(items) => items.iter().any(reads_other_entities),
        _ => false,
    }
}

/// One policy, as the model reads it.
struct Rule {
    id: String,
    permit: bool,
    /// The action scope constraint.
    action: Value,
    /// Principal and resource scope, then the clauses, in Cedar's order; or
    /// why the model cannot write them, which matters only to the actions
    /// the policy applies to.
    condition: Result<Value, Unsupported>,
}

fn rule(policy: &cedar_policy::Policy) -> Result<Rule, Unsupported> {
    let id = policy
        .annotation("id")
        .map_or_else(|| policy.id().to_string(), str::to_owned);
    let est = policy
        .to_json()
        .map_err(|e| unsupported(format!("policy {id}: {e}")))?;
    let permit = match est.get("effect").and_then(Value::as_str) {
        Some("permit") => true,
        Some("forbid") => false,
        _ => return Err(unsupported(format!("policy {id}: no effect"))),
    };
    Ok(Rule {
        condition: condition(&est, &id),
        id,
        permit,
        action: est["action"].clone(),
    })
}

/// A policy's principal and resource scope and its clauses, as one
/// expression.
fn condition(est: &Value, id: &str) -> Result<Value, Unsupported> {
    let mut terms = vec![
        scope("principal", &est["principal"], id)?,
        scope("resource", &est["resource"], id)?,
    ];
    for clause in est
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let body = clause["body"].clone();
        terms.push(match clause.get("kind").and_then(Value::as_str) {
            Some("when") => body,
            Some("unless") => not(body),
            _ => {
                return Err(unsupported(format!(
                    "policy {id}: a clause of unknown kind"
                )));
            }
        });
    }
    // Scope terms that are `true` are left out: they change nothing.
    terms.retain(|t| *t != boolean(true));
    if terms.iter().any(reads_other_entities) {
        return Err(unsupported(format!(
            "policy {id} reads an attribute or tag of, or asks `in` of, an entity other than the \
             principal and the resource: the gateway holds no other entity (the read fails, which \
             denies), while the solver would take it to exist"
        )));
    }
    Ok(all(terms))
}

/// `condition` as it evaluates on a context without the `absent` keys,
/// while the request's context holds them: `context has K` is false for
/// those. Strict validation lets a policy read such a key only behind that
/// `has` (the key is not in the action's context type), so every other read
/// is the same on both contexts; a condition that uses the whole `context`
/// (comparing or passing the record) cannot be rewritten so.
fn without_keys(
    condition: &Value,
    absent: &[&str],
    policy: &str,
    action: &str,
) -> Result<Value, Unsupported> {
    let is_context = |v: &Value| v.get("Var").and_then(Value::as_str) == Some("context");
    match condition {
        Value::Object(map) => {
            if is_context(condition) {
                return Err(unsupported(format!(
                    "policy {policy} uses the whole `context` record and applies to {action}, \
                     which the model decides on a request whose context has more keys ({})",
                    absent.join(", ")
                )));
            }
            let mut out = serde_json::Map::new();
            for (key, inner) in map {
                if matches!(key.as_str(), "has" | ".") && inner.get("left").is_some_and(is_context)
                {
                    let name = inner.get("attr").and_then(Value::as_str);
                    if key == "has" && name.is_some_and(|name| absent.contains(&name)) {
                        return Ok(boolean(false));
                    }
                    out.insert(key.clone(), inner.clone());
                } else {
                    out.insert(key.clone(), without_keys(inner, absent, policy, action)?);
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| without_keys(item, absent, policy, action))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// The decisions the gateway makes, each named by the action of the
/// request it is proved over: a ModifyInstanceNetworkSpec call (with its
/// dependent actions), an Explain of one's own call, and an Explain for
/// another identity (with `ecsgateway:Explain`). `ecs:AllocatePublicIpAddress`
/// is never called: it is decided as a dependent action.
pub const DECIDED: &[&Action] = &[
    &catalogue::MODIFY_INSTANCE_NETWORK_SPEC,
    &catalogue::EXPLAIN,
    &catalogue::SIMULATE_PRINCIPAL,
];

/// One action a decision evaluates.
struct Check {
    action: &'static Action,
    /// Evaluated only when this holds (`allocates_public_ip` rules).
    guard: Option<Value>,
    /// Keys of the request's context this action's context lacks.
    absent_keys: &'static [&'static str],
}

/// The actions a request of `action` is decided with, in the gateway's
/// order (see [`decide`](crate::policy::decide)): for an Explain for another
/// identity `ecsgateway:Explain` (on the explained call's context), then
/// the action itself, then each dependent action with its guard.
fn checks(action: &'static Action, rules: &[DependentRule]) -> Result<Vec<Check>, Unsupported> {
    let guard = attr(var("context"), "ecs:AssociatePublicIpAddress");
    let mut checks = Vec::new();
    if action.name == catalogue::SIMULATE_PRINCIPAL.name {
        checks.push(Check {
            action: &catalogue::EXPLAIN,
            guard: None,
            absent_keys: catalogue::SIMULATE_PRINCIPAL.condition_keys,
        });
    }
    checks.push(Check {
        action,
        guard: None,
        absent_keys: &[],
    });
    let dependents = action
        .dependent_actions
        .iter()
        .map(|name| (*name, When::Always))
        .chain(
            rules
                .iter()
                .filter(|r| r.action == action.name)
                .map(|r| (r.requires.as_str(), r.when)),
        );
    for (name, when) in dependents {
        let dependent = catalogue::get(name)
            .ok_or_else(|| unsupported(format!("{name} is not in the action catalogue")))?;
        checks.push(Check {
            action: dependent,
            guard: match when {
                When::Always => None,
                When::AllocatesPublicIp => Some(guard.clone()),
            },
            absent_keys: &[],
        });
    }
    Ok(checks)
}

/// The other actions whose policies decide a request of `action`: its
/// dependent actions, or `ecsgateway:Explain` for
/// `ecsgateway:SimulatePrincipal`.
///
/// # Errors
///
/// A dependent action the catalogue does not know.
pub fn decided_with(
    action: &'static Action,
    rules: &[DependentRule],
) -> Result<Vec<&'static str>, Unsupported> {
    let mut names = Vec::new();
    for check in checks(action, rules)? {
        if check.action.name != action.name && !names.contains(&check.action.name) {
            names.push(check.action.name);
        }
    }
    Ok(names)
}

/// The policy that allows exactly the requests of `action` the gateway
/// would allow with `data`'s policies, `rules` and the instances of the
/// `accounts` it serves (for `ecsgateway:` actions: the Explains whose
/// permission check passes).
///
/// # Errors
///
/// A construct the model cannot write exactly (a template slot, a
/// condition that reads `action` while another action is decided), in a
/// policy that applies to one of the actions decided.
pub fn policy(
    data: &PolicyData,
    rules: &[DependentRule],
    action: &'static Action,
    accounts: &[String],
) -> Result<cedar_policy::Policy, Unsupported> {
    policy_given(data, rules, action, accounts, &|_| false)
}

/// [`policy`], leaving out the no-error term of every policy `error_free`
/// names (proved never to fail on a real call): the same decision, and a
/// smaller formula for the solver.
///
/// # Errors
///
/// As [`policy`].
pub fn policy_given(
    data: &PolicyData,
    rules: &[DependentRule],
    action: &'static Action,
    accounts: &[String],
    error_free: &dyn Fn(&str) -> bool,
) -> Result<cedar_policy::Policy, Unsupported> {
    assemble(action, terms(data, rules, action, accounts, error_free)?)
}

/// The conjuncts of [`policy_given`]'s condition, in evaluation order:
/// `W`, one no-error term per policy that may fail (per action it applies
/// to), then one term per action and layer. Each is a boolean of the
/// request; the error terms come first, so no later term can fail.
///
/// # Errors
///
/// As [`policy`].
pub fn terms(
    data: &PolicyData,
    rules: &[DependentRule],
    action: &'static Action,
    accounts: &[String],
    error_free: &dyn Fn(&str) -> bool,
) -> Result<Vec<Value>, Unsupported> {
    let layers = [&data.control, &data.identity]
        .map(|set| set.policies().map(rule).collect::<Result<Vec<_>, _>>());
    let [control, identity] = layers;
    let (control, identity) = (control?, identity?);
    let mut no_errors = Vec::new();
    let mut decisions = Vec::new();
    for check in checks(action, rules)? {
        let decided_action = check.action;
        let mut error_terms = Vec::new();
        let mut allows = Vec::new();
        for layer in [&control, &identity] {
            let mut permits = Vec::new();
            let mut forbids = Vec::new();
            for rule in layer.iter() {
                if !action_applies(&rule.action, decided_action, &rule.id)? {
                    continue;
                }
                // Only now: a policy the model cannot write matters to the
                // actions it applies to, not to the others.
                let mut condition = rule.condition.clone()?;
                if decided_action.name != action.name && reads_action(&condition) {
                    return Err(unsupported(format!(
                        "policy {} reads `action` in a condition, and applies to {}, which the \
                         model decides within a request of {}",
                        rule.id, decided_action.name, action.name
                    )));
                }
                if !check.absent_keys.is_empty() {
                    condition =
                        without_keys(&condition, check.absent_keys, &rule.id, decided_action.name)?;
                }
                if !error_free(&rule.id) {
                    error_terms.push(binary("||", condition.clone(), boolean(true)));
                }
                if rule.permit {
                    permits.push(condition);
                } else {
                    forbids.push(condition);
                }
            }
            allows.push(binary("&&", any(permits), not(any(forbids))));
        }
        // One term per policy check and per layer, so that `policy diff`
        // can tell the terms two directories share.
        let guarded = |term: Value| match &check.guard {
            None => term,
            Some(guard) => ite(guard.clone(), term, boolean(true)),
        };
        no_errors.extend(error_terms.into_iter().map(guarded));
        decisions.extend(allows.into_iter().map(guarded));
    }
    let mut body = vec![
        well_formed(Some(accounts)),
        well_formed::directory(&data.directory, accounts),
    ];
    body.extend(no_errors);
    body.extend(decisions);
    Ok(body)
}

/// The permit of `action` whose condition is `terms`, in order.
///
/// # Errors
///
/// Cedar refuses the policy (never for terms of [`terms`]).
pub fn assemble(
    action: &'static Action,
    terms: Vec<Value>,
) -> Result<cedar_policy::Policy, Unsupported> {
    let est = json!({
        "effect": "permit",
        "principal": { "op": "All" },
        "action": { "op": "==", "entity": { "type": "Action", "id": action.name } },
        "resource": { "op": "All" },
        "conditions": [ { "kind": "when", "body": all(terms) } ],
        "annotations": { "id": format!("enforced.{}", action.name) },
    });
    cedar_policy::Policy::from_json(
        Some(cedar_policy::PolicyId::new(format!(
            "enforced.{}",
            action.name
        ))),
        est,
    )
    .map_err(|e| unsupported(format!("the enforced decision of {}: {e}", action.name)))
}

/// Whether `policy` cannot fail to evaluate, seen from its text: it uses
/// no arithmetic, no `getTag`, no datetime or duration method, and builds
/// extension values from literals only (strict validation has already
/// ruled out attributes read without `has`). `false` means "maybe": the
/// solver decides those.
pub fn plainly_error_free(policy: &cedar_policy::Policy) -> bool {
    const RISKY: &[&str] = &[
        "+",
        "-",
        "*",
        "neg",
        "getTag",
        "offset",
        "durationSince",
        "toDate",
        "toTime",
    ];
    const CONSTRUCTORS: &[&str] = &["ip", "decimal", "datetime", "duration"];
    /// An expression node: `{ "<operator>": payload }`.
    fn safe(value: &Value) -> bool {
        let Value::Object(map) = value else {
            return false;
        };
        map.iter().all(|(key, inner)| match key.as_str() {
            "Value" | "Var" => true,
            "Slot" => false,
            // A record literal's keys are attribute names, its values
            // expressions.
            "Record" => inner
                .as_object()
                .is_some_and(|fields| fields.values().all(safe)),
            "Set" => inner.as_array().is_some_and(|items| items.iter().all(safe)),
            key if RISKY.contains(&key) => false,
            key if CONSTRUCTORS.contains(&key) => inner.as_array().is_some_and(|args| {
                args.iter()
                    .all(|a| a.get("Value").is_some_and(Value::is_string))
            }),
            // An operator's payload: its operands (`left`, `right`, `arg`,
            // `if`, `then`, `else`, `in`) are expressions, the rest
            // (`attr`, `pattern`, `entity_type`) names; a method call's
            // payload is its argument list.
            _ => match inner {
                Value::Array(args) => args.iter().all(safe),
                Value::Object(payload) => {
                    payload.iter().all(|(field, operand)| match field.as_str() {
                        "left" | "right" | "arg" | "if" | "then" | "else" | "in" => safe(operand),
                        _ => true,
                    })
                }
                _ => false,
            },
        })
    }
    let clauses_safe = |est: &Value| {
        est["conditions"]
            .as_array()
            .is_some_and(|clauses| clauses.iter().all(|c| safe(&c["body"])))
    };
    policy.to_json().is_ok_and(|est| clauses_safe(&est))
}

/// Whether `policy`'s action scope takes in `action`, through the action
/// hierarchy.
///
/// # Errors
///
/// An action scope the model does not read, or a scope or condition it
/// cannot write (as [`policy`]).
pub fn applies_to(policy: &cedar_policy::Policy, action: &Action) -> Result<bool, Unsupported> {
    let rule = rule(policy)?;
    // `policy lint` refuses such a policy whatever its action.
    rule.condition?;
    action_applies(&rule.action, action, &rule.id)
}

/// The same policy, applying only to requests a real call can make: `W`
/// (see the module's documentation) as its first clause. Cedar evaluates
/// clauses in order, so the policy's own conditions are evaluated (and can
/// err) only on such requests.
///
/// # Errors
///
/// The policy cannot be written back.
pub fn on_real_calls(policy: &cedar_policy::Policy) -> Result<cedar_policy::Policy, Unsupported> {
    let mut est = policy
        .to_json()
        .map_err(|e| unsupported(format!("policy {}: {e}", policy.id())))?;
    let clauses = est
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| unsupported(format!("policy {}: no conditions", policy.id())))?;
    clauses.insert(0, json!({ "kind": "when", "body": well_formed(None) }));
    cedar_policy::Policy::from_json(Some(policy.id().clone()), est)
        .map_err(|e| unsupported(format!("policy {}: {e}", policy.id())))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    use super::*;
    use crate::identity::{Caller, CallerId, Via};
    use crate::pb;

    fn shipped() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
    }

    /// The demo's dependent action: allocating a public IP also needs
    /// ecs:AllocatePublicIpAddress.
    fn demo_rule() -> DependentRule {
        DependentRule {
            action: "ecs:ModifyInstanceNetworkSpec".into(),
            requires: "ecs:AllocatePublicIpAddress".into(),
            when: When::AllocatesPublicIp,
        }
    }

    /// Calls of every shape: the demo's identities (and one without a
    /// principal), known and unknown instances in two regions, every
    /// parameter present or absent, several sources and times.
    fn call() -> impl Strategy<Value = (Caller, pb::ModifyInstanceNetworkSpecRequest, i64)> {
        let identity = prop::sample::select(vec![
            "spiffe://demo.local/sa/netops",
            "spiffe://demo.local/sa/webapp",
            "spiffe://demo.local/sa/capacity",
        ]);
        let source = prop::sample::select(vec![[10, 1, 2, 3], [127, 0, 0, 1], [192, 168, 1, 1]]);
        let instance = prop::sample::select(vec![
            "i-demo-prepaid",
            "i-demo-postpaid",
            "i-demo-stopped",
            "i-unknown",
        ]);
        let region = prop::sample::select(vec!["cn-hangzhou", "cn-hangzhou", "cn-shanghai"]);
        let bandwidth = prop::option::of(prop::sample::select(vec![0, 5, 10, 11, 50, 150]));
        (
            identity,
            source,
            prop::bool::ANY,
            instance,
            region,
            bandwidth.clone(),
            bandwidth,
            0..3i32,
            prop::option::of(prop::bool::ANY),
            prop::bool::ANY,
            prop::sample::select(vec![2u32, 9 * 24]),
        )
            .prop_map(
                |(
                    identity,
                    ip,
                    mfa,
                    instance,
                    region,
                    out,
                    inbound,
                    charge,
                    allocate,
                    temporary,
                    hours,
                )| {
                    let now = 1_780_000_000i64 - 1_780_000_000 % 3600;
                    let caller = Caller {
                        identity: CallerId::Spiffe(identity.into()),
                        via: Via::Mtls,
                        mfa,
                        secure_transport: true,
                        peer: Some(std::net::SocketAddr::from((ip, 1000))),
                    };
                    let ts = |s: i64| prost_types::Timestamp {
                        seconds: s,
                        nanos: 0,
                    };
                    let request = pb::ModifyInstanceNetworkSpecRequest {
                        region_id: region.into(),
                        instance_id: instance.into(),
                        internet_max_bandwidth_out: out,
                        internet_max_bandwidth_in: inbound.filter(|i| *i > 0),
                        network_charge_type: charge,
                        allocate_public_ip: allocate,
                        start_time: temporary.then(|| ts(now + 3600)),
                        end_time: temporary.then(|| ts(now + 3600 + i64::from(hours) * 3600)),
                        ..Default::default()
                    };
                    (caller, request, now)
                },
            )
    }

    /// The enforced policy allows exactly the calls the gateway allows, on
    /// the shipped policies with the demo's dependent action.
    #[test]
    fn the_enforced_policy_decides_every_call_as_the_gateway_does() {
        let authorizer = crate::policy::Config {
            dir: shipped(),
            account_id: "1234567890123456".into(),
            dependent_actions: vec![demo_rule()],
        }
        .build()
        .unwrap();
        let data = authorizer.store().current();
        let policy = policy(
            &data,
            &[demo_rule()],
            &catalogue::MODIFY_INSTANCE_NETWORK_SPEC,
            &["1234567890123456".into()],
        )
        .unwrap();
        let set = cedar_policy::PolicySet::from_policies([policy]).unwrap();
        let validation = cedar_policy::Validator::new(data.schema.clone())
            .validate(&set, cedar_policy::ValidationMode::Strict);
        assert!(validation.validation_passed(), "{validation:?}");
        let action =
            cedar_policy::EntityUid::from_str("Action::\"ecs:ModifyInstanceNetworkSpec\"").unwrap();
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 1500,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
        );
        let (allowed, denied) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        runner
            .run(&call(), |(caller, request, now)| {
                let Ok(request) = crate::validate::modify_request(request) else {
                    return Ok(());
                };
                let now = chrono::DateTime::from_timestamp(now, 0).unwrap();
                let gateway = authorizer.decide(&caller, &request, now).allowed();
                let Some((principal, resource, context, entities)) =
                    authorizer.concrete(&caller, &request, now)
                else {
                    return Ok(());
                };
                let cedar_request = cedar_policy::Request::new(
                    principal,
                    action.clone(),
                    resource,
                    context,
                    Some(&data.schema),
                )
                .unwrap();
                let answer =
                    cedar_policy::Authorizer::new().is_authorized(&cedar_request, &set, &entities);
                prop_assert_eq!(
                    answer.decision() == cedar_policy::Decision::Allow,
                    gateway,
                    "{:?}",
                    request
                );
                prop_assert_eq!(answer.diagnostics().errors().count(), 0);
                let counter = if gateway { &allowed } else { &denied };
                counter.set(counter.get() + 1);
                Ok(())
            })
            .unwrap();
        let (allowed, denied) = (allowed.get(), denied.get());
        assert!(
            allowed > 50 && denied > 50,
            "allowed {allowed}, denied {denied}"
        );
    }

    /// The enforced policies of the Explain rpc's permission checks allow
    /// exactly what the gateway's check allows: `ecsgateway:Explain` alone,
    /// and with `ecsgateway:SimulatePrincipal` for another identity.
    #[test]
    fn the_enforced_policies_decide_every_explain_as_the_gateway_does() {
        let authorizer = crate::policy::Config {
            dir: shipped(),
            account_id: "1234567890123456".into(),
            dependent_actions: vec![demo_rule()],
        }
        .build()
        .unwrap();
        let data = authorizer.store().current();
        // The keys the model takes away from Explain's context are those the
        // gateway adds for SimulatePrincipal.
        let added: Vec<String> = crate::policy::decide::simulation_context(
            &data,
            &CallerId::Spiffe("spiffe://demo.local/sa/webapp".into()),
        )
        .into_iter()
        .map(|(key, _)| key)
        .collect();
        assert_eq!(added, catalogue::SIMULATE_PRINCIPAL.condition_keys);
        let set = |action: &'static Action| {
            let policy =
                policy(&data, &[demo_rule()], action, &["1234567890123456".into()]).unwrap();
            let set = cedar_policy::PolicySet::from_policies([policy]).unwrap();
            let validation = cedar_policy::Validator::new(data.schema.clone())
                .validate(&set, cedar_policy::ValidationMode::Strict);
            assert!(validation.validation_passed(), "{validation:?}");
            set
        };
        let (explain, simulate) = (
            set(&catalogue::EXPLAIN),
            set(&catalogue::SIMULATE_PRINCIPAL),
        );
        let simulated = prop::option::of(prop::sample::select(vec![
            CallerId::Spiffe("spiffe://demo.local/sa/netops".into()),
            CallerId::Spiffe("spiffe://demo.local/sa/webapp".into()),
            CallerId::Spiffe("spiffe://demo.local/sa/capacity".into()),
            CallerId::Spiffe("spiffe://demo.local/sa/unmapped".into()),
            CallerId::Jwt {
                issuer: "https://idp.demo.local".into(),
                subject: "alice@demo.local".into(),
            },
        ]));
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 1500,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]),
        );
        let counts = std::cell::RefCell::new([[0u32; 2]; 2]);
        runner
            .run(
                &(call(), simulated),
                |((caller, request, now), simulated)| {
                    let Ok(request) = crate::validate::modify_request(request) else {
                        return Ok(());
                    };
                    let now = chrono::DateTime::from_timestamp(now, 0).unwrap();
                    let simulated = simulated.filter(|s| *s != caller.identity);
                    let gateway = authorizer
                        .may_explain(
                            &crate::policy::Query::new(&caller, &request, now),
                            simulated.as_ref(),
                        )
                        .allowed();
                    let Some((principal, resource, context, entities)) =
                        authorizer.concrete(&caller, &request, now)
                    else {
                        return Ok(());
                    };
                    let (action, set, context) = match &simulated {
                        None => (&catalogue::EXPLAIN, &explain, context),
                        Some(identity) => (
                            &catalogue::SIMULATE_PRINCIPAL,
                            &simulate,
                            context
                                .merge(crate::policy::decide::simulation_context(&data, identity))
                                .unwrap(),
                        ),
                    };
                    let cedar_request = cedar_policy::Request::new(
                        principal,
                        catalogue::action_uid(action.name),
                        resource,
                        context,
                        Some(&data.schema),
                    )
                    .unwrap();
                    let answer = cedar_policy::Authorizer::new().is_authorized(
                        &cedar_request,
                        set,
                        &entities,
                    );
                    prop_assert_eq!(
                        answer.decision() == cedar_policy::Decision::Allow,
                        gateway,
                        "{:?} for {:?}",
                        request,
                        simulated
                    );
                    prop_assert_eq!(answer.diagnostics().errors().count(), 0);
                    counts.borrow_mut()[usize::from(simulated.is_some())][usize::from(gateway)] +=
                        1;
                    Ok(())
                },
            )
            .unwrap();
        // Each check both allowed and denied some.
        let counts = counts.into_inner();
        assert!(
            counts.iter().flatten().all(|n| *n > 5),
            "[explain, simulate] × [denied, allowed]: {counts:?}"
        );
    }

    /// A policy of `ecsgateway:Explain`, decided within a request of
    /// `ecsgateway:SimulatePrincipal`, sees the explained call's context:
    /// the simulation keys are absent; the whole context cannot be written.
    #[test]
    fn an_explain_within_a_simulation_does_not_see_the_simulation_keys() {
        let condition = |text: &str| {
            rule(&cedar_policy::Policy::parse(None, text).unwrap())
                .unwrap()
                .condition
                .unwrap()
        };
        let keys = catalogue::SIMULATE_PRINCIPAL.condition_keys;
        let reads = condition(
            r#"permit (principal, action, resource) when { !(context has "ecsgateway:SimulatedPrincipal") && context["acs:MFAPresent"] };"#,
        );
        let seen = without_keys(&reads, keys, "p", "ecsgateway:Explain")
            .unwrap()
            .to_string();
        assert!(!seen.contains("ecsgateway:SimulatedPrincipal"), "{seen}");
        assert!(seen.contains("acs:MFAPresent"), "{seen}");
        let whole = condition(r#"permit (principal, action, resource) when { context == {} };"#);
        assert!(without_keys(&whole, keys, "p", "ecsgateway:Explain").is_err());
    }
}

#[cfg(test)]
mod error_free_tests {
    use super::plainly_error_free;

    fn policy(text: &str) -> cedar_policy::Policy {
        cedar_policy::Policy::parse(None, text).unwrap()
    }

    /// Only what cannot fail is said to: arithmetic, `getTag`, datetime
    /// methods and extension values built from expressions go to the solver.
    #[test]
    fn says_error_free_only_for_what_cannot_fail() {
        for text in [
            r#"permit (principal, action, resource) when { resource.region == "cn-hangzhou" };"#,
            r#"forbid (principal, action, resource) unless { context["acs:SourceIp"].isInRange(ip("10.0.0.0/8")) };"#,
            r#"forbid (principal, action, resource) when { resource.arn like "acs:ecs:*" && context.request has internet_max_bandwidth_out && context.request.internet_max_bandwidth_out > 100 };"#,
            r#"permit (principal, action, resource) when { resource.hasTag("env") };"#,
        ] {
            assert!(plainly_error_free(&policy(text)), "{text}");
        }
        for text in [
            r#"forbid (principal, action, resource) when { context.request.internet_max_bandwidth_out * 2 > 1 };"#,
            r#"forbid (principal, action, resource) when { resource.getTag("env") == "production" };"#,
            r#"forbid (principal, action, resource) when { context.request.end_time > context["acs:CurrentTime"].offset(duration("7d")) };"#,
            r#"forbid (principal, action, resource) when { ip(context.request.region_id).isLoopback() };"#,
            r#"forbid (principal, action, resource) when { -context.request.internet_max_bandwidth_out < 0 };"#,
            r#"forbid (principal, action, resource) when { {"Value": context.request.internet_max_bandwidth_out * 2}.Value > 1 };"#,
        ] {
            assert!(!plainly_error_free(&policy(text)), "{text}");
        }
    }
}
