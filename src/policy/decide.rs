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
//!
//! [`Query`] is what is asked (caller, request, time, where the instance's
//! attributes come from); `context` builds the Cedar context
//! from it, and `evaluate` the entities and each layer's answer.

mod context;
mod evaluate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cedar_policy::EntityUid;
use chrono::{DateTime, Utc};

pub use context::allocates_public_ip;
#[cfg(test)]
pub(crate) use context::{context, simulation_context};
use evaluate::{Call, EntityCache};

use super::catalogue::{self, Action};
use super::store::{Instance, Layer, PolicyData, Principal, Store};
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
    /// The account that owns the resource.
    pub account: String,
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

    /// The outcome in one line, as the policy tools print it:
    /// `Allow (policies)`, or `ExplicitDeny of ACTION by the LAYER layer
    /// (policies): errors`.
    pub fn summary(&self) -> String {
        match &self.outcome {
            Outcome::Allow { policies } => format!("Allow ({})", policies.join(", ")),
            Outcome::Deny(d) => format!(
                "{} of {} by the {} layer ({}){}",
                d.kind.as_str(),
                d.action,
                d.layer.as_str(),
                d.policies.join(", "),
                if d.errors.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.errors.join("; "))
                }
            ),
        }
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
    Described {
        /// The instance.
        instance: Option<&'a Instance>,
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

/// One question for the authorizer, as one value (as Cedar's
/// `Authorizer::is_authorized` takes one `Request`): who calls, what they
/// ask, when, and where the instance's attributes come from.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The authenticated caller.
    pub caller: &'a Caller,
    /// The validated request.
    pub request: &'a ModifyRequest,
    /// The time of the call (`acs:CurrentTime`).
    pub now: DateTime<Utc>,
    /// Where the instance's attributes come from.
    pub source: Source<'a>,
}

impl<'a> Query<'a> {
    /// A query decided with entities.json's instances
    /// ([`Source::Entities`]).
    pub fn new(caller: &'a Caller, request: &'a ModifyRequest, now: DateTime<Utc>) -> Self {
        Self {
            caller,
            request,
            now,
            source: Source::Entities,
        }
    }

    /// The same query, with the instance's attributes from `source`.
    #[must_use]
    pub fn with_source(self, source: Source<'a>) -> Self {
        Self { source, ..self }
    }
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

    /// The same for Explain's permission checks ([`Self::may_explain`]):
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
        let query =
            Query::new(caller, request, now).with_source(Source::Described { instance: None });
        let (decision, results) = self.run_on(&data, &query, question);
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

    /// The default account: the one that owns the instances of a call
    /// that names none.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The account that owns the request's instance: the one it names,
    /// else the default account.
    pub fn account_of<'r>(&'r self, request: &'r ModifyRequest) -> &'r str {
        request.account_id.as_deref().unwrap_or(&self.account_id)
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

    /// [`Self::authorize`] for a query with entities.json's instances (the
    /// short form the tools and tests use).
    pub fn decide(&self, caller: &Caller, request: &ModifyRequest, now: DateTime<Utc>) -> Decision {
        self.authorize(&Query::new(caller, request, now))
    }

    /// Decides a ModifyInstanceNetworkSpec call: may it go ahead?
    pub fn authorize(&self, query: &Query<'_>) -> Decision {
        self.run(query, Question::Decide).0
    }

    /// The decision, with the result of every action (the call's and its
    /// dependent actions) in every layer, evaluated on past the first
    /// denial: what a policy author needs to see. Nothing is forwarded.
    pub fn explain(&self, query: &Query<'_>) -> (Decision, Vec<LayerResult>) {
        self.run(query, Question::Explain)
    }

    /// May the query's caller ask how its request would be decided
    /// (`ecsgateway:Explain`), and for another identity
    /// (`ecsgateway:SimulatePrincipal` too, when `simulated` is set and not
    /// the caller)? Decided like a call: same layers, resource and context.
    pub fn may_explain(&self, query: &Query<'_>, simulated: Option<&CallerId>) -> Decision {
        let simulated = simulated.filter(|s| **s != query.caller.identity);
        self.run(query, Question::MayExplain { simulated }).0
    }

    fn run(&self, query: &Query<'_>, question: Question<'_>) -> (Decision, Vec<LayerResult>) {
        self.run_on(&self.store.current(), query, question)
    }

    /// [`Self::run`] on one snapshot of the policies.
    fn run_on(
        &self,
        data: &Arc<PolicyData>,
        query: &Query<'_>,
        question: Question<'_>,
    ) -> (Decision, Vec<LayerResult>) {
        let (caller, request) = (query.caller, query.request);
        let found = self.find_instance(data, query);
        let associate = allocates_public_ip(request, found.instance);
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
        let principal = data.principals.get(&caller.identity);
        let mut results = Vec::new();
        let outcome = match self.admit(data, query, &found, principal) {
            Err((layer, error)) => unevaluated(actions[0], layer, error),
            Ok(principal) => {
                let call = Call {
                    data,
                    query,
                    principal,
                    instance: found.instance,
                    associate,
                    actions: &actions,
                    explain: matches!(question, Question::Explain),
                    simulated,
                };
                match self.evaluate(&call) {
                    Ok((outcome, evaluated)) => {
                        results = evaluated;
                        outcome
                    }
                    Err(error) => unevaluated(actions[0], Layer::Control, error),
                }
            }
        };
        let decision = Decision {
            identity: caller.identity.to_string(),
            principal: principal.map_or_else(|| caller.identity.to_string(), |p| p.arn.clone()),
            resource: catalogue::instance_arn(
                &request.region_id,
                self.account_of(request),
                &request.instance_id,
            ),
            account: self.account_of(request).to_owned(),
            actions,
            allocates_public_ip: associate,
            policy_version: data.version.clone(),
            outcome,
        };
        (decision, results)
    }

    /// The instance the query's source gives, and what else it tells.
    fn find_instance<'d>(&self, data: &'d PolicyData, query: &Query<'d>) -> Found<'d> {
        let request = query.request;
        let listed = data.instances.get(&request.instance_id);
        let account = self.account_of(request);
        let placed = |i: &&Instance| i.region == request.region_id && i.account == account;
        match query.source {
            Source::Entities => Found {
                instance: listed.filter(placed),
                misplaced: listed.filter(|i| !placed(i)),
                failed: None,
            },
            Source::Described { instance } => Found {
                instance,
                misplaced: None,
                failed: None,
            },
            Source::Failed(reason) => Found {
                instance: None,
                misplaced: None,
                failed: Some(reason),
            },
        }
    }

    /// The principal the policies are asked about, or the layer and reason
    /// that deny before any policy runs.
    fn admit<'p>(
        &self,
        data: &PolicyData,
        query: &Query<'_>,
        found: &Found<'_>,
        principal: Option<&'p Principal>,
    ) -> Result<&'p Principal, (Layer, String)> {
        let request = query.request;
        // The instance's attributes are unknown: rules on them cannot be
        // decided.
        if let Some(failed) = found.failed {
            return Err((
                Layer::Control,
                format!(
                    "the attributes of instance {} could not be read from ECS (DescribeInstances): {failed}",
                    request.instance_id
                ),
            ));
        }
        // An instance entities.json knows in another region: its tags would
        // not apply, so a tag-based forbid could be sidestepped by naming
        // another region. Instance IDs are unique across regions: deny.
        // Likewise an instance entities.json gives to another account: rules
        // on this account's ARNs would miss it.
        if let Some(known) = found.misplaced {
            return Err((
                Layer::Control,
                format!(
                    "instance {} is {} (entities.json), not {}",
                    request.instance_id,
                    known.arn,
                    catalogue::instance_arn(
                        &request.region_id,
                        self.account_of(request),
                        &request.instance_id
                    )
                ),
            ));
        }
        // Once entities.json describes the Resource Directory, an account it
        // does not place in a folder would escape every folder's guardrail:
        // deny (fail closed) rather than decide as if it were in none.
        let account = self.account_of(request);
        if !data.placed(account) {
            return Err((
                Layer::Control,
                format!(
                    "account {account} is not placed in a Resource Directory folder (entities.json describes the directory, and not this account)"
                ),
            ));
        }
        principal.ok_or_else(|| {
            (
                Layer::Identity,
                format!(
                    "identity {} has no principal in principals.toml",
                    query.caller.identity
                ),
            )
        })
    }
}

/// What a query's source says of the instance.
struct Found<'a> {
    /// The instance, placed in the request's region and the account.
    instance: Option<&'a Instance>,
    /// One entities.json gives another region or account.
    misplaced: Option<&'a Instance>,
    /// Why the lookup failed.
    failed: Option<&'a str>,
}

/// A denial before (or instead of) any policy's evaluation.
fn unevaluated(action: &'static str, layer: Layer, error: String) -> Outcome {
    Outcome::Deny(Denial {
        action,
        layer,
        kind: DenyKind::ImplicitDeny,
        policies: Vec::new(),
        errors: vec![error],
    })
}
