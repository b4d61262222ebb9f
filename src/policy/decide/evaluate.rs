//! The policies asked: the request's entities (the principal's, with its
//! account's place in the directory, kept per principal and account for
//! the policy version in force; the resource added per call), one Cedar
//! request per action, each layer's answer, and the outcome they make.

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{Context, Entities, Entity, EntityUid, Request, RestrictedExpression};
#[cfg(test)]
use chrono::{DateTime, Utc};

use super::context::{context, simulation_context};
use super::{Authorizer, Denial, DenyKind, Evaluation, LayerResult, Outcome, Query};
#[cfg(test)]
use crate::identity::Caller;
use crate::identity::CallerId;
use crate::policy::catalogue;
use crate::policy::index::Probe;
use crate::policy::store::{Instance, Layer, PolicyData, Principal};
use crate::validate::ModifyRequest;

/// The entities a principal's calls on one account's instances need, by
/// the set of actions asked (a bit per action of the catalogue): the
/// principal, those actions and the groups above them (`ecs:*`, …), the
/// account and the folders above it, their transitive closure computed
/// once, for one policy version. A request adds only its resource. Every
/// other entity (another action, another account's folders) cannot be
/// reached from the request, and would only make each decision's closure
/// and lookups dearer.
#[derive(Default)]
pub(super) struct EntityCache {
    version: String,
    map: HashMap<CallerId, HashMap<(String, u32), Arc<Entities>>>,
}

/// Principals whose entity sets are kept before the cache is emptied.
const PRINCIPALS_KEPT: usize = 4096;

/// A call admitted to evaluation: the query, with what the decision
/// resolved for it.
pub(super) struct Call<'a> {
    /// The policies in force.
    pub(super) data: &'a PolicyData,
    /// What is asked.
    pub(super) query: &'a Query<'a>,
    /// The caller's principal.
    pub(super) principal: &'a Principal,
    /// The instance, when its attributes are known.
    pub(super) instance: Option<&'a Instance>,
    /// `ecs:AssociatePublicIpAddress`.
    pub(super) associate: bool,
    /// The actions to authorize, in order.
    pub(super) actions: &'a [&'static str],
    /// Evaluate past the first denial.
    pub(super) explain: bool,
    /// The identity an Explain simulates, if another.
    pub(super) simulated: Option<&'a CallerId>,
}

/// The resource a call is decided on.
struct Resource<'a> {
    /// `Ecs::Instance::"<id>"`.
    uid: EntityUid,
    /// Its ARN.
    arn: String,
    /// Its region.
    region: &'a str,
    /// Its account.
    account: &'a str,
}

impl Authorizer {
    /// The resource: entities.json's or ECS's instance, or one made from
    /// the request.
    fn resource<'a>(
        &'a self,
        request: &'a ModifyRequest,
        instance: Option<&'a Instance>,
    ) -> Resource<'a> {
        let (arn, region) = match instance {
            Some(instance) => (instance.arn.clone(), instance.region.as_str()),
            None => (
                catalogue::instance_arn(
                    &request.region_id,
                    self.account_of(request),
                    &request.instance_id,
                ),
                request.region_id.as_str(),
            ),
        };
        let uid = EntityUid::from_type_name_and_id(
            self.instance_type.clone(),
            cedar_policy::EntityId::new(&request.instance_id),
        );
        Resource {
            uid,
            arn,
            region,
            account: self.account_of(request),
        }
    }

    /// The request's entities: the principal, the actions asked and the
    /// groups above them, the resource (entities.json's or ECS's instance,
    /// or one made from the request), and its account's place in the
    /// directory. All but the resource are kept ([`EntityCache`]): adding
    /// one entity to them computes the closure of that entity only.
    fn entities(
        &self,
        data: &PolicyData,
        (identity, principal): (&CallerId, &Principal),
        (instance, actions): (Option<&Instance>, &[&'static str]),
        resource: &Resource<'_>,
    ) -> Result<Entities, String> {
        let base = self.entities_of(data, (identity, principal), resource.account, actions)?;
        let resource = match instance {
            Some(instance) => instance.entity.clone(),
            None => self.unknown_instance(resource)?,
        };
        Entities::clone(&base)
            .add_entities([resource], None)
            .map_err(|e| e.to_string())
    }

    /// The principal's entities for `actions` on `account`'s instances
    /// (see [`EntityCache`]).
    fn entities_of(
        &self,
        data: &PolicyData,
        (identity, principal): (&CallerId, &Principal),
        account: &str,
        actions: &[&'static str],
    ) -> Result<Arc<Entities>, String> {
        let asked = actions
            .iter()
            .filter_map(|a| catalogue::ACTIONS.iter().position(|c| c.name == *a))
            .fold(0u32, |bits, i| bits | 1 << i);
        let key = (account.to_owned(), asked);
        let mut cache = self.entities.lock().unwrap_or_else(|e| e.into_inner());
        if cache.version != data.version {
            cache.version.clone_from(&data.version);
            cache.map.clear();
        }
        if let Some(entities) = cache.map.get(identity).and_then(|a| a.get(&key)) {
            return Ok(Arc::clone(entities));
        }
        drop(cache);
        let mut members = vec![principal.entity.clone()];
        members.extend(self.action_entities(data, actions));
        if let Some(chain) = data.ancestry.get(account) {
            members.extend(chain.iter().cloned());
        }
        let entities = Arc::new(Entities::from_entities(members, None).map_err(|e| e.to_string())?);
        let mut cache = self.entities.lock().unwrap_or_else(|e| e.into_inner());
        // A reload may have swapped the data in while this was built: keep
        // only what belongs to the version in the cache.
        if cache.version == data.version {
            if cache.map.len() >= PRINCIPALS_KEPT {
                cache.map.clear();
            }
            cache
                .map
                .entry(identity.clone())
                .or_default()
                .insert(key, Arc::clone(&entities));
        }
        Ok(entities)
    }

    /// The entities of `actions` and of the action groups above them, as
    /// the schema's hierarchy has them.
    fn action_entities(&self, data: &PolicyData, actions: &[&'static str]) -> Vec<Entity> {
        let mut found: Vec<Entity> = Vec::new();
        let mut next: Vec<EntityUid> = actions
            .iter()
            .map(|a| {
                self.action_uids
                    .get(a)
                    .cloned()
                    .unwrap_or_else(|| catalogue::action_uid(a))
            })
            .collect();
        while let Some(uid) = next.pop() {
            if found.iter().any(|e| e.uid() == uid) {
                continue;
            }
            if let Some(entity) = data.actions.get(&uid) {
                next.extend(entity.clone().into_inner().2);
                found.push(entity.clone());
            }
        }
        found
    }

    /// An instance the gateway knows nothing about: `known` false.
    fn unknown_instance(&self, resource: &Resource<'_>) -> Result<Entity, String> {
        Entity::new(
            resource.uid.clone(),
            HashMap::from([
                (
                    "arn".to_owned(),
                    RestrictedExpression::new_string(resource.arn.clone()),
                ),
                (
                    "region".to_owned(),
                    RestrictedExpression::new_string(resource.region.to_owned()),
                ),
                (
                    "account".to_owned(),
                    RestrictedExpression::new_string(resource.account.to_owned()),
                ),
                ("known".to_owned(), RestrictedExpression::new_bool(false)),
            ]),
            std::collections::HashSet::from([catalogue::account_uid(resource.account)]),
        )
        .map_err(|e| e.to_string())
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
        let account = self.account_of(request);
        let instance = listed.filter(|i| i.region == request.region_id && i.account == account);
        // One entities.json places elsewhere is denied before any policy.
        if listed.is_some() && instance.is_none() {
            return None;
        }
        let resource = self.resource(request, instance);
        let entities = self
            .entities(
                &data,
                (&caller.identity, principal),
                (
                    instance,
                    &catalogue::ACTIONS
                        .iter()
                        .map(|a| a.name)
                        .collect::<Vec<_>>(),
                ),
                &resource,
            )
            .map(Arc::new)
            .ok()?;
        let associate = super::allocates_public_ip(request, instance);
        let context = context(caller, request, associate, now).ok()?;
        Some((principal.uid.clone(), resource.uid, context, entities))
    }

    /// Every action of the call in every layer, in order (stopping at the
    /// first denial unless explaining), and the outcome.
    pub(super) fn evaluate(&self, call: &Call<'_>) -> Result<(Outcome, Vec<LayerResult>), String> {
        let Query {
            caller, request, ..
        } = *call.query;
        let resource = self.resource(request, call.instance);
        let entities = self.entities(
            call.data,
            (&caller.identity, call.principal),
            (call.instance, call.actions),
            &resource,
        )?;
        let context = context(caller, request, call.associate, call.query.now)?;
        // ecsgateway:SimulatePrincipal's context adds the simulated identity.
        let simulation_context = call
            .simulated
            .map(|identity| {
                context
                    .clone()
                    .merge(simulation_context(call.data, identity))
                    .map_err(|e| e.to_string())
            })
            .transpose()?;

        let mut results = Vec::new();
        'actions: for &action in call.actions {
            let context = match &simulation_context {
                Some(simulation) if action == catalogue::SIMULATE_PRINCIPAL.name => {
                    simulation.clone()
                }
                _ => context.clone(),
            };
            let cedar_request = self.cedar_request(call.principal, action, &resource, context)?;
            let probe = Probe {
                member_of: &call.principal.member_of,
                action: catalogue::ACTIONS
                    .iter()
                    .position(|a| a.name == action)
                    .ok_or_else(|| format!("{action} is not in the action catalogue"))?,
                instance_id: &request.instance_id,
                arn: &resource.arn,
                region: resource.region,
                request_region: &request.region_id,
            };
            for layer in Layer::ALL {
                let result =
                    self.ask_layer(call.data, layer, &probe, &cedar_request, &entities, action);
                let denied = result.denied.is_some();
                results.push(result);
                // A decision stops at the first denial; an explanation goes on.
                if denied && !call.explain {
                    break 'actions;
                }
            }
        }
        Ok((outcome(&results), results))
    }

    /// The Cedar request for one action.
    fn cedar_request(
        &self,
        principal: &Principal,
        action: &'static str,
        resource: &Resource<'_>,
        context: Context,
    ) -> Result<Request, String> {
        let uid = self
            .action_uids
            .get(action)
            .cloned()
            .unwrap_or_else(|| catalogue::action_uid(action));
        Request::new(
            principal.uid.clone(),
            uid,
            resource.uid.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }

    /// One layer's answer to one action's request.
    fn ask_layer(
        &self,
        data: &PolicyData,
        layer: Layer,
        probe: &Probe<'_>,
        request: &Request,
        entities: &Entities,
        action: &'static str,
    ) -> LayerResult {
        let policies = match self.evaluation {
            Evaluation::Indexed => data.layer_index(layer).policies_for(probe),
            Evaluation::Full => Arc::new(match layer {
                Layer::Control => data.control.clone(),
                Layer::Identity => data.identity.clone(),
            }),
        };
        let response = self.cedar.is_authorized(request, &policies, entities);
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
        let mut reasons: Vec<String> = diagnostics
            .reason()
            .map(|id| AsRef::<str>::as_ref(id).to_owned())
            .collect();
        reasons.sort();
        LayerResult {
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
        }
    }
}

/// The first denial, or the allow with every permit that allowed.
fn outcome(results: &[LayerResult]) -> Outcome {
    match results.iter().find(|r| r.denied.is_some()) {
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
    }
}
