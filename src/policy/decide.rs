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

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use cedar_policy::{Context, Entities, Entity, EntityUid, Request, RestrictedExpression};
use chrono::{DateTime, Utc};

use super::catalogue::{self, Action};
use super::index::Probe;
use super::store::{Instance, Layer, PolicyData, Store};
use super::{DependentRule, When};
use crate::identity::{Caller, CallerId};
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

/// One action in one layer, as an explanation shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerResult {
    /// The action.
    pub action: &'static str,
    /// The layer.
    pub layer: Layer,
    /// `None` when the layer allows; otherwise how it denies.
    pub denied: Option<DenyKind>,
    /// The determining policies: the permits that allow, the forbids that
    /// deny, or the policies that failed to evaluate.
    pub policies: Vec<String>,
    /// Evaluation errors.
    pub errors: Vec<String>,
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
    instance_type: cedar_policy::EntityTypeName,
    cedar: cedar_policy::Authorizer,
    evaluation: Evaluation,
    entities: Mutex<EntityCache>,
    /// What each layer's policies read of an instance, for the version in
    /// force (made on first use: only the instance lookup needs it).
    reads: Mutex<Option<(String, Arc<[super::reads::LayerReads; 2]>)>>,
}

/// Request entities by principal, resource and region, for one policy
/// version.
#[derive(Default)]
struct EntityCache {
    version: String,
    map: HashMap<(CallerId, EntityUid, String, u64), Arc<Entities>>,
}

/// Entity sets kept before the cache is emptied.
const ENTITY_SETS_KEPT: usize = 4096;

/// Which policies a decision evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// Those the layer's index finds can apply (the default).
    Indexed,
    /// Every policy of each layer: the reference the index is tested
    /// against.
    Full,
}

/// Where the resource's attributes come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// `entities.json`: the instance lookup is off.
    Entities,
    /// ECS's answer (`DescribeInstances`): the instance, or `None` when the
    /// region holds no such instance (unknown to the policies).
    /// `generation` tells answers apart.
    Described {
        /// The instance.
        instance: Option<&'a Instance>,
        /// The answer's number.
        generation: u64,
    },
    /// The lookup failed: the decision denies, saying why.
    Failed(&'a str),
}

/// What is asked of the policies.
#[derive(Clone, Copy)]
enum Question<'a> {
    /// May this call go ahead? Stops at the first denial.
    Decide,
    /// The same, every action and layer evaluated.
    Explain,
    /// May the caller explain it (for `simulated`, when set)?
    MayExplain { simulated: Option<&'a CallerId> },
}

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

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("store", &self.store)
            .field("account_id", &self.account_id)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
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

impl Authorizer {
    /// An authorizer over `store`'s policies.
    pub fn new(store: Arc<Store>, account_id: String, rules: Vec<DependentRule>) -> Self {
        Self {
            store,
            account_id,
            rules,
            action_uids: catalogue::ACTIONS
                .iter()
                .map(|a| (a.name, catalogue::action_uid(a.name)))
                .collect(),
            instance_type: "Ecs::Instance"
                .parse()
                .unwrap_or_else(|_| unreachable!("a fixed type name parses")),
            cedar: cedar_policy::Authorizer::new(),
            evaluation: Evaluation::Indexed,
            entities: Mutex::new(EntityCache::default()),
            reads: Mutex::new(None),
        }
    }

    /// What each layer's policies of `data` read of an instance.
    fn reads(&self, data: &PolicyData) -> Arc<[super::reads::LayerReads; 2]> {
        let mut kept = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        match &*kept {
            Some((version, reads)) if *version == data.version => reads.clone(),
            _ => {
                let reads = Arc::new([
                    super::reads::LayerReads::new(&data.control),
                    super::reads::LayerReads::new(&data.identity),
                ]);
                *kept = Some((data.version.clone(), reads.clone()));
                reads
            }
        }
    }

    /// The call's denial when the policies deny it whatever ECS would say
    /// of the instance, so that asking ECS (`DescribeInstances`) is not
    /// needed; `None` when the instance's attributes can change the
    /// decision.
    ///
    /// The call is decided as for an unknown instance. Its denial holds for
    /// every instance when it is for an action every instance needs, and
    /// rests on what the lookup cannot change: a forbid (or an erroring
    /// policy) that reads none of the instance's looked-up attributes, tags
    /// or `ecs:AssociatePublicIpAddress` (unless that key is the same for
    /// every instance); or, for an implicit deny, a layer none of whose
    /// permits reads them. A principal missing, or a context that cannot be
    /// built, denies whatever the instance is.
    pub fn deny_before_lookup(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        now: DateTime<Utc>,
    ) -> Option<Decision> {
        self.denied_whatever_the_instance(caller, request, now, Question::Decide)
    }

    /// The same for Explain's permission checks ([`Self::decide_explain`]):
    /// a caller who may not explain the call, whatever the instance is,
    /// spends no lookup.
    pub fn deny_explain_before_lookup(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        simulated: Option<&CallerId>,
        now: DateTime<Utc>,
    ) -> Option<Decision> {
        let simulated = simulated.filter(|s| **s != caller.identity);
        self.denied_whatever_the_instance(caller, request, now, Question::MayExplain { simulated })
    }

    fn denied_whatever_the_instance(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        now: DateTime<Utc>,
        question: Question<'_>,
    ) -> Option<Decision> {
        // One snapshot for the decision and the analysis of its policies: a
        // reload in between must not pair one version's ids with another's.
        let data = self.store.current();
        let (decision, results) = self.run_on(
            &data,
            caller,
            request,
            now,
            Source::Described {
                instance: None,
                generation: u64::MAX,
            },
            question,
        );
        let Outcome::Deny(_) = &decision.outcome else {
            return None;
        };
        // Denied before any policy ran: no principal, or the context.
        let Some(denied) = results.last().filter(|r| r.denied.is_some()) else {
            return Some(decision);
        };
        // ecs:AssociatePublicIpAddress is true for every instance when the
        // call asks for a public IP, and false for all when it raises no
        // outbound bandwidth.
        let associate_fixed = request.allocate_public_ip == Some(true)
            || request.bandwidth_out.is_none_or(|out| out == 0);
        // Explain's actions are the same for every instance; a call's
        // dependent actions may depend on that key.
        let always_needed = associate_fixed
            || matches!(question, Question::MayExplain { .. })
            || self
                .actions(&catalogue::MODIFY_INSTANCE_NETWORK_SPEC, false)
                .contains(&denied.action);
        if !always_needed {
            return None;
        }
        let reads = self.reads(&data);
        let layer = &reads[denied.layer as usize];
        let holds = match denied.denied {
            Some(DenyKind::ImplicitDeny) => !layer.permits().depends(associate_fixed),
            _ => !super::reads::independent(layer, &denied.policies, associate_fixed).is_empty(),
        };
        holds.then_some(decision)
    }

    /// The same authorizer, evaluating `evaluation`'s policies.
    #[must_use]
    pub fn with_evaluation(mut self, evaluation: Evaluation) -> Self {
        self.evaluation = evaluation;
        self
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
        self.decide_with(caller, request, now, Source::Entities)
    }

    /// Decides a call with the instance's attributes from `source`.
    pub fn decide_with(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        now: DateTime<Utc>,
        source: Source<'_>,
    ) -> Decision {
        self.run(caller, request, now, source, Question::Decide).0
    }

    /// The decision, with the result of every action (the call's and its
    /// dependent actions) in every layer, evaluated on past the first
    /// denial: what a policy author needs to see. Nothing is forwarded.
    pub fn explain(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        now: DateTime<Utc>,
        source: Source<'_>,
    ) -> (Decision, Vec<LayerResult>) {
        self.run(caller, request, now, source, Question::Explain)
    }

    /// May `caller` ask how `request` would be decided
    /// (`ecsgateway:Explain`), and for another identity
    /// (`ecsgateway:SimulatePrincipal` too, when `simulated` is set and not
    /// the caller)? Decided like a call: same layers, resource and context.
    pub fn decide_explain(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        simulated: Option<&CallerId>,
        now: DateTime<Utc>,
        source: Source<'_>,
    ) -> Decision {
        let simulated = simulated.filter(|s| **s != caller.identity);
        self.run(
            caller,
            request,
            now,
            source,
            Question::MayExplain { simulated },
        )
        .0
    }

    fn run(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        now: DateTime<Utc>,
        source: Source<'_>,
        question: Question<'_>,
    ) -> (Decision, Vec<LayerResult>) {
        self.run_on(
            &self.store.current(),
            caller,
            request,
            now,
            source,
            question,
        )
    }

    /// [`Self::run`] on one snapshot of the policies.
    fn run_on(
        &self,
        data: &Arc<PolicyData>,
        caller: &Caller,
        request: &ModifyRequest,
        now: DateTime<Utc>,
        source: Source<'_>,
        question: Question<'_>,
    ) -> (Decision, Vec<LayerResult>) {
        let mut results = Vec::new();
        let data = Arc::clone(data);
        let listed = data.instances.get(&request.instance_id);
        let placed = |i: &&Instance| i.region == request.region_id && i.account == self.account_id;
        // The instance, and one entities.json gives another region or
        // account (see below).
        let (instance, misplaced, generation, failed) = match source {
            Source::Entities => (
                listed.filter(placed),
                listed.filter(|i| !placed(i)),
                0,
                None,
            ),
            Source::Described {
                instance,
                generation,
            } => (
                instance,
                None,
                if instance.is_some() {
                    generation
                } else {
                    u64::MAX
                },
                None,
            ),
            Source::Failed(reason) => (None, None, 0, Some(reason)),
        };
        let associate = allocates_public_ip(request, instance);
        let (actions, simulated) = match question {
            Question::Decide | Question::Explain => (
                self.actions(&catalogue::MODIFY_INSTANCE_NETWORK_SPEC, associate),
                None,
            ),
            Question::MayExplain { simulated } => {
                let mut actions = vec![catalogue::EXPLAIN.name];
                actions.extend(simulated.map(|_| catalogue::SIMULATE_PRINCIPAL.name));
                (actions, simulated)
            }
        };
        let explain = matches!(question, Question::Explain);
        let resource =
            catalogue::instance_arn(&request.region_id, &self.account_id, &request.instance_id);
        let principal = data.principals.get(&caller.identity);
        // An instance entities.json knows in another region: its tags would
        // not apply, so a tag-based forbid could be sidestepped by naming
        // another region. Instance IDs are unique across regions: deny.
        // Likewise an instance entities.json gives to another account: rules
        // on this account's ARNs would miss it.
        let outcome = match (principal, misplaced) {
            // The instance's attributes are unknown: rules on them cannot
            // be decided.
            _ if failed.is_some() => Outcome::Deny(Denial {
                action: actions[0],
                layer: Layer::Control,
                kind: DenyKind::ImplicitDeny,
                policies: Vec::new(),
                errors: vec![format!(
                    "the attributes of instance {} could not be read from ECS (DescribeInstances): {}",
                    request.instance_id,
                    failed.unwrap_or_default()
                )],
            }),
            (_, Some(known)) => Outcome::Deny(Denial {
                action: actions[0],
                layer: Layer::Control,
                kind: DenyKind::ImplicitDeny,
                policies: Vec::new(),
                errors: vec![format!(
                    "instance {} is {} (entities.json), not {}",
                    request.instance_id,
                    known.arn,
                    catalogue::instance_arn(
                        &request.region_id,
                        &self.account_id,
                        &request.instance_id
                    )
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
                let simulation = simulated.map(|identity| simulation_context(&data, identity));
                match self.evaluate(
                    &data, caller, principal, request, instance, associate, &actions, now, explain,
                    simulation, generation,
                ) {
                    Ok((outcome, evaluated)) => {
                        results = evaluated;
                        outcome
                    }
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
        let decision = Decision {
            identity: caller.identity.to_string(),
            principal: principal.map_or_else(|| caller.identity.to_string(), |p| p.arn.clone()),
            resource,
            actions,
            allocates_public_ip: associate,
            policy_version: data.version.clone(),
            outcome,
        };
        (decision, results)
    }

    /// The request's entities: the action hierarchy, the principal and the
    /// resource (entities.json's, or one made from the request). Kept per
    /// principal and resource for the policy version in force: building
    /// them and their transitive closure was a fifth of a decision.
    #[allow(clippy::too_many_arguments)]
    fn entities(
        &self,
        data: &PolicyData,
        identity: &CallerId,
        principal: &super::store::Principal,
        (instance, generation): (Option<&Instance>, u64),
        uid: &EntityUid,
        arn: &str,
        region: &str,
    ) -> Result<Arc<Entities>, String> {
        // By identity, not ARN: two identities may map to one ARN with
        // different groups, and the entity carries the groups. By the
        // answer's generation too: looked-up attributes change.
        let key = (identity.clone(), uid.clone(), region.to_owned(), generation);
        let mut cache = self.entities.lock().unwrap_or_else(|e| e.into_inner());
        if cache.version != data.version {
            cache.version.clone_from(&data.version);
            cache.map.clear();
        }
        if let Some(entities) = cache.map.get(&key) {
            return Ok(Arc::clone(entities));
        }
        drop(cache);
        let resource = match instance {
            Some(instance) => instance.entity.clone(),
            None => Entity::new(
                uid.clone(),
                HashMap::from([
                    (
                        "arn".to_owned(),
                        RestrictedExpression::new_string(arn.to_owned()),
                    ),
                    (
                        "region".to_owned(),
                        RestrictedExpression::new_string(region.to_owned()),
                    ),
                    (
                        "account".to_owned(),
                        RestrictedExpression::new_string(self.account_id.clone()),
                    ),
                    ("known".to_owned(), RestrictedExpression::new_bool(false)),
                ]),
                Default::default(),
            )
            .map_err(|e| e.to_string())?,
        };
        let entities = Arc::new(
            principal
                .entities
                .clone()
                .add_entities([resource], None)
                .map_err(|e| e.to_string())?,
        );
        let mut cache = self.entities.lock().unwrap_or_else(|e| e.into_inner());
        // A reload may have swapped the data in while this was built: keep
        // only what belongs to the version in the cache.
        if cache.version != data.version {
            return Ok(entities);
        }
        if cache.map.len() >= ENTITY_SETS_KEPT {
            cache.map.clear();
        }
        cache.map.insert(key, Arc::clone(&entities));
        Ok(entities)
    }

    /// The principal, resource, context and entities a call is decided
    /// with (entities.json's instances), for tests that evaluate other
    /// policies on exactly what the gateway builds.
    #[cfg(test)]
    pub(crate) fn concrete(
        &self,
        caller: &Caller,
        request: &ModifyRequest,
        now: DateTime<Utc>,
    ) -> Option<(EntityUid, EntityUid, Context, Arc<Entities>)> {
        let data = self.store.current();
        let principal = data.principals.get(&caller.identity)?;
        let listed = data.instances.get(&request.instance_id);
        let instance =
            listed.filter(|i| i.region == request.region_id && i.account == self.account_id);
        // One entities.json places elsewhere is denied before any policy.
        if listed.is_some() && instance.is_none() {
            return None;
        }
        let (arn, region) = match instance {
            Some(i) => (i.arn.clone(), i.region.clone()),
            None => (
                catalogue::instance_arn(&request.region_id, &self.account_id, &request.instance_id),
                request.region_id.clone(),
            ),
        };
        let uid = EntityUid::from_type_name_and_id(
            self.instance_type.clone(),
            cedar_policy::EntityId::new(&request.instance_id),
        );
        let entities = self
            .entities(
                &data,
                &caller.identity,
                principal,
                (instance, 0),
                &uid,
                &arn,
                &region,
            )
            .ok()?;
        let associate = allocates_public_ip(request, instance);
        let context = context(caller, request, associate, now).ok()?;
        Some((principal.uid.clone(), uid, context, entities))
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
        explain: bool,
        simulation: Option<[(String, RestrictedExpression); 2]>,
        generation: u64,
    ) -> Result<(Outcome, Vec<LayerResult>), String> {
        let (arn, region) = match instance {
            Some(instance) => (instance.arn.clone(), instance.region.as_str()),
            None => (
                catalogue::instance_arn(&request.region_id, &self.account_id, &request.instance_id),
                request.region_id.as_str(),
            ),
        };
        let resource_uid = EntityUid::from_type_name_and_id(
            self.instance_type.clone(),
            cedar_policy::EntityId::new(&request.instance_id),
        );
        let entities = self.entities(
            data,
            &caller.identity,
            principal,
            (instance, generation),
            &resource_uid,
            &arn,
            region,
        )?;
        let context = context(caller, request, associate, now)?;
        // ecsgateway:SimulatePrincipal's context adds the simulated identity.
        let simulation_context = simulation
            .map(|extra| context.clone().merge(extra).map_err(|e| e.to_string()))
            .transpose()?;

        let mut results = Vec::new();
        'actions: for &action in actions {
            let uid = self
                .action_uids
                .get(action)
                .cloned()
                .unwrap_or_else(|| catalogue::action_uid(action));
            let context = match &simulation_context {
                Some(simulation) if action == catalogue::SIMULATE_PRINCIPAL.name => {
                    simulation.clone()
                }
                _ => context.clone(),
            };
            let cedar_request = Request::new(
                principal.uid.clone(),
                uid,
                resource_uid.clone(),
                context,
                None,
            )
            .map_err(|e| e.to_string())?;
            let probe = Probe {
                member_of: &principal.member_of,
                action: catalogue::ACTIONS
                    .iter()
                    .position(|a| a.name == action)
                    .ok_or_else(|| format!("{action} is not in the action catalogue"))?,
                instance_id: &request.instance_id,
                arn: &arn,
                region,
                request_region: &request.region_id,
            };
            for layer in Layer::ALL {
                let policies = match self.evaluation {
                    Evaluation::Indexed => data.layer_index(layer).policies_for(&probe),
                    Evaluation::Full => Arc::new(match layer {
                        Layer::Control => data.control.clone(),
                        Layer::Identity => data.identity.clone(),
                    }),
                };
                let response = self
                    .cedar
                    .is_authorized(&cedar_request, &policies, &entities);
                let diagnostics = response.diagnostics();
                // Sorted: Cedar reports in no particular order, and a
                // decision (and its log line) must not depend on it.
                let mut failed: Vec<(String, String)> = diagnostics
                    .errors()
                    .map(|error| {
                        let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
                        (e.policy_id().to_string(), error.to_string())
                    })
                    .collect();
                failed.sort();
                let (errored, errors): (Vec<String>, Vec<String>) = failed.into_iter().unzip();
                let mut reasons: Vec<String> =
                    diagnostics.reason().map(ToString::to_string).collect();
                reasons.sort();
                let result = LayerResult {
                    action,
                    layer,
                    denied: if !errors.is_empty() {
                        Some(DenyKind::ExplicitDeny)
                    } else if response.decision() == cedar_policy::Decision::Allow {
                        None
                    } else if reasons.is_empty() {
                        Some(DenyKind::ImplicitDeny)
                    } else {
                        Some(DenyKind::ExplicitDeny)
                    },
                    policies: if errors.is_empty() { reasons } else { errored },
                    errors,
                };
                let denied = result.denied.is_some();
                results.push(result);
                // A decision stops at the first denial; an explanation goes on.
                if denied && !explain {
                    break 'actions;
                }
            }
        }
        let outcome = match results.iter().find(|r| r.denied.is_some()) {
            Some(first) => Outcome::Deny(Denial {
                action: first.action,
                layer: first.layer,
                kind: first.denied.unwrap_or(DenyKind::ImplicitDeny),
                policies: first.policies.clone(),
                errors: first.errors.clone(),
            }),
            None => {
                let mut allowed_by: Vec<String> =
                    results.iter().flat_map(|r| r.policies.clone()).collect();
                allowed_by.sort();
                allowed_by.dedup();
                Outcome::Allow {
                    policies: allowed_by,
                }
            }
        };
        Ok((outcome, results))
    }
}
