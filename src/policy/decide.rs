//! The decision, as RAM makes it.
//!
//! For the called action and each of its dependent actions (the catalogue's,
//! and the operator's), with the same principal, resource and context: the
//! control layer must allow, then the identity layer must allow. Inside a
//! layer Cedar's rule applies: an explicit `forbid` wins, and nothing
//! permitted is an implicit deny. A policy that fails to evaluate denies
//! (Cedar alone would skip it, which for a `forbid` would allow): the
//! erroring policy is reported as what denied. An identity with no principal
//! mapping, or a request the model cannot express, denies too.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Context, Entity, EntityUid, Request, RestrictedExpression};
use chrono::{DateTime, Utc};

use super::catalogue::{self, Action};
use super::store::{Instance, Layer, PolicyData, Store};
use super::{DependentRule, When};
use crate::identity::Caller;
use crate::validate::ModifyRequest;

/// How a call was denied, in RAM's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyKind {
    /// A `forbid` matched (or a policy failed to evaluate).
    ExplicitDeny,
    /// No `permit` matched.
    ImplicitDeny,
}

impl DenyKind {
    /// RAM's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExplicitDeny => "ExplicitDeny",
            Self::ImplicitDeny => "ImplicitDeny",
        }
    }
}

/// What denied a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The denied action (RAM's `AuthAction`).
    pub action: &'static str,
    /// The layer that denied.
    pub layer: Layer,
    /// Explicit or implicit.
    pub kind: DenyKind,
    /// `@id`s of the determining policies (the forbids, or the erroring ones).
    pub policies: Vec<String>,
    /// Evaluation errors, or why the request could not be evaluated.
    pub errors: Vec<String>,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every action allowed by both layers.
    Allow {
        /// `@id`s of the permits that allowed, every layer and action.
        policies: Vec<String>,
    },
    /// Denied.
    Deny(Denial),
}

/// One authorization decision, for the decision log and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The caller's identity.
    pub identity: String,
    /// The principal's ARN (the identity when it has no mapping).
    pub principal: String,
    /// The resource's ARN.
    pub resource: String,
    /// The actions authorized: the call's, then its dependent actions.
    pub actions: Vec<&'static str>,
    /// The value of `ecs:AssociatePublicIpAddress`.
    pub allocates_public_ip: bool,
    /// The policy version decided with.
    pub policy_version: String,
    /// Allowed or denied.
    pub outcome: Outcome,
}

impl Decision {
    /// True when allowed.
    pub fn allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow { .. })
    }
}

/// Makes decisions with the policies in force.
pub struct Authorizer {
    store: Arc<Store>,
    account_id: String,
    rules: Vec<DependentRule>,
    action_uids: HashMap<&'static str, EntityUid>,
    cedar: cedar_policy::Authorizer,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("store", &self.store)
            .field("account_id", &self.account_id)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn action_uid(name: &str) -> EntityUid {
    EntityUid::from_str(&format!("Action::{name:?}"))
        .unwrap_or_else(|_| unreachable!("quoted action names parse"))
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

/// The context: RAM's condition keys, the action's key and the request.
pub(crate) fn context(
    caller: &Caller,
    request: &ModifyRequest,
    associate: bool,
    now: DateTime<Utc>,
) -> Result<Context, String> {
    let peer = caller
        .peer
        .ok_or("the caller's address is unknown, so acs:SourceIp cannot be set")?;
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
            RestrictedExpression::new_ip(peer.ip().to_canonical().to_string()),
        ),
        ("acs:CurrentTime".to_owned(), datetime(now)),
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

impl Authorizer {
    /// An authorizer over `store`'s policies.
    pub fn new(store: Arc<Store>, account_id: String, rules: Vec<DependentRule>) -> Self {
        Self {
            store,
            account_id,
            rules,
            action_uids: catalogue::ACTIONS
                .iter()
                .map(|a| (a.name, action_uid(a.name)))
                .collect(),
            cedar: cedar_policy::Authorizer::new(),
        }
    }

    /// The policy store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The account that owns the instances.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The call's action and its dependent actions, in evaluation order.
    fn actions(&self, primary: &'static Action, allocates_public_ip: bool) -> Vec<&'static str> {
        let mut actions = vec![primary.name];
        let extra = self.rules.iter().filter(|r| {
            r.action == primary.name && (r.when == When::Always || allocates_public_ip)
        });
        for name in primary
            .dependent_actions
            .iter()
            .copied()
            .chain(extra.filter_map(|r| catalogue::get(&r.requires).map(|a| a.name)))
        {
            if !actions.contains(&name) {
                actions.push(name);
            }
        }
        actions
    }

    /// Decides a ModifyInstanceNetworkSpec call.
    pub fn decide(&self, caller: &Caller, request: &ModifyRequest, now: DateTime<Utc>) -> Decision {
        let data = self.store.current();
        let instance = data
            .instances
            .get(&request.instance_id)
            .filter(|i| i.region == request.region_id);
        let associate = allocates_public_ip(request, instance);
        let actions = self.actions(&catalogue::MODIFY_INSTANCE_NETWORK_SPEC, associate);
        let resource =
            catalogue::instance_arn(&request.region_id, &self.account_id, &request.instance_id);
        let principal = data.principals.get(&caller.identity);
        // An instance entities.json knows in another region: its tags would
        // not apply, so a tag-based forbid could be sidestepped by naming
        // another region. Instance IDs are unique across regions: deny.
        let misplaced = data
            .instances
            .get(&request.instance_id)
            .filter(|i| i.region != request.region_id);
        let outcome = match (principal, misplaced) {
            (_, Some(known)) => Outcome::Deny(Denial {
                action: actions[0],
                layer: Layer::Control,
                kind: DenyKind::ImplicitDeny,
                policies: Vec::new(),
                errors: vec![format!(
                    "instance {} is in {}, not {}",
                    request.instance_id, known.region, request.region_id
                )],
            }),
            (None, None) => Outcome::Deny(Denial {
                action: actions[0],
                layer: Layer::Identity,
                kind: DenyKind::ImplicitDeny,
                policies: Vec::new(),
                errors: vec![format!(
                    "identity {} has no principal in principals.toml",
                    caller.identity
                )],
            }),
            (Some(principal), None) => {
                match self.evaluate(
                    &data, caller, principal, request, instance, associate, &actions, now,
                ) {
                    Ok(outcome) => outcome,
                    Err(error) => Outcome::Deny(Denial {
                        action: actions[0],
                        layer: Layer::Control,
                        kind: DenyKind::ImplicitDeny,
                        policies: Vec::new(),
                        errors: vec![error],
                    }),
                }
            }
        };
        Decision {
            identity: caller.identity.to_string(),
            principal: principal.map_or_else(|| caller.identity.to_string(), |p| p.arn.clone()),
            resource,
            actions,
            allocates_public_ip: associate,
            policy_version: data.version.clone(),
            outcome,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        data: &PolicyData,
        caller: &Caller,
        principal: &super::store::Principal,
        request: &ModifyRequest,
        instance: Option<&Instance>,
        associate: bool,
        actions: &[&'static str],
        now: DateTime<Utc>,
    ) -> Result<Outcome, String> {
        let resource = match instance {
            Some(instance) => instance.entity.clone(),
            None => Entity::new(
                EntityUid::from_type_name_and_id(
                    "Ecs::Instance".parse().map_err(|_| "type name")?,
                    cedar_policy::EntityId::new(&request.instance_id),
                ),
                HashMap::from([
                    (
                        "arn".to_owned(),
                        RestrictedExpression::new_string(catalogue::instance_arn(
                            &request.region_id,
                            &self.account_id,
                            &request.instance_id,
                        )),
                    ),
                    (
                        "region".to_owned(),
                        RestrictedExpression::new_string(request.region_id.clone()),
                    ),
                    (
                        "account".to_owned(),
                        RestrictedExpression::new_string(self.account_id.clone()),
                    ),
                ]),
                Default::default(),
            )
            .map_err(|e| e.to_string())?,
        };
        let resource_uid = resource.uid();
        let entities = data
            .actions
            .clone()
            .add_entities([principal.entity.clone(), resource], None)
            .map_err(|e| e.to_string())?;
        let context = context(caller, request, associate, now)?;

        let mut allowed_by = Vec::new();
        for &action in actions {
            let uid = self
                .action_uids
                .get(action)
                .cloned()
                .unwrap_or_else(|| action_uid(action));
            let cedar_request = Request::new(
                principal.uid.clone(),
                uid,
                resource_uid.clone(),
                context.clone(),
                None,
            )
            .map_err(|e| e.to_string())?;
            for layer in Layer::ALL {
                let response =
                    self.cedar
                        .is_authorized(&cedar_request, principal.layer(layer), &entities);
                let diagnostics = response.diagnostics();
                let mut errored: Vec<String> = Vec::new();
                let mut errors: Vec<String> = Vec::new();
                for error in diagnostics.errors() {
                    let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
                    errored.push(e.policy_id().to_string());
                    errors.push(error.to_string());
                }
                let reasons: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
                if !errors.is_empty() {
                    return Ok(Outcome::Deny(Denial {
                        action,
                        layer,
                        kind: DenyKind::ExplicitDeny,
                        policies: errored,
                        errors,
                    }));
                }
                match response.decision() {
                    cedar_policy::Decision::Allow => allowed_by.extend(reasons),
                    cedar_policy::Decision::Deny => {
                        return Ok(Outcome::Deny(Denial {
                            action,
                            layer,
                            kind: if reasons.is_empty() {
                                DenyKind::ImplicitDeny
                            } else {
                                DenyKind::ExplicitDeny
                            },
                            policies: reasons,
                            errors: Vec::new(),
                        }));
                    }
                }
            }
        }
        allowed_by.sort();
        allowed_by.dedup();
        Ok(Outcome::Allow {
            policies: allowed_by,
        })
    }
}
