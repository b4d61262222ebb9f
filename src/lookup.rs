//! Instances' real attributes, for the policies: an optional signed
//! `DescribeInstances` through the upstream client, so that tag and billing
//! rules apply to every instance, not only those `entities.json` lists, and
//! `ecs:AssociatePublicIpAddress` is exact.
//!
//! Answers are kept per region and instance for a TTL, up to a bound
//! (moka's cache: least recently used beyond it); concurrent misses for one
//! instance share one call. ECS saying the region holds no such instance is
//! an answer too (the instance is then unknown to the policies, as with the
//! lookup off). A failed lookup is not kept: the decision it was for denies,
//! and the next call asks again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cedar_policy::{Entity, EntityUid, RestrictedExpression};

use crate::policy::catalogue;
use crate::policy::decide::Source;
use crate::policy::store::Instance;
use crate::telemetry::Metrics;
use crate::upstream::{self, describe::InstanceFacts};

/// Lookup settings (`[policy.instance_lookup]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long an answer is used.
    pub ttl: Duration,
    /// Most instances kept.
    pub max_instances: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            max_instances: 10_000,
        }
    }
}

/// One answer, as the policies see it.
#[derive(Debug)]
pub struct Answer {
    /// The instance, or `None` when ECS has no such instance in the region.
    pub instance: Option<Instance>,
    /// Tells answers apart (the authorizer keeps request entities per
    /// answer, so a newer answer is never decided with an older one's).
    pub generation: u64,
}

impl Answer {
    /// The decision's view of this answer.
    pub fn source(&self) -> Source<'_> {
        Source::Described {
            instance: self.instance.as_ref(),
            generation: self.generation,
        }
    }
}

/// The decision's view of a lookup: none (off), its answer, or its failure.
pub fn source(answer: Option<&Result<Arc<Answer>, String>>) -> Source<'_> {
    match answer {
        None => Source::Entities,
        Some(Ok(answer)) => answer.source(),
        Some(Err(error)) => Source::Failed(error),
    }
}

/// The lookup.
pub struct Lookup {
    cache: moka::future::Cache<(String, String), Arc<Answer>>,
    upstream: Arc<upstream::Client>,
    account_id: String,
    metrics: Arc<Metrics>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup")
            .field("account_id", &self.account_id)
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Lookup {
    /// A lookup asking ECS through `upstream` about `account_id`'s instances.
    pub fn new(
        config: &Config,
        upstream: Arc<upstream::Client>,
        account_id: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(config.max_instances)
                .time_to_live(config.ttl)
                .build(),
            upstream,
            account_id,
            metrics,
            // 0 is the entities.json source's.
            generation: AtomicU64::new(1),
        }
    }

    /// The instance's attributes, from the cache or from ECS within
    /// `deadline`.
    ///
    /// # Errors
    ///
    /// Why ECS could not tell (its error, a timeout, an unreadable answer):
    /// the decision must deny.
    pub async fn get(
        &self,
        region_id: &str,
        instance_id: &str,
        deadline: Duration,
    ) -> Result<Arc<Answer>, String> {
        let key = (region_id.to_owned(), instance_id.to_owned());
        if let Some(answer) = self.cache.get(&key).await {
            self.metrics.record_lookup("hit");
            return Ok(answer);
        }
        // One call to ECS for every caller asking now, on its own budget
        // (the upstream timeout), not the first caller's deadline: a caller
        // in a hurry must not fail the others. Each caller waits for it
        // within its own deadline.
        let shared = self.cache.try_get_with(key, async {
            let described = self
                .upstream
                .describe_instance(region_id, instance_id, Duration::MAX)
                .await
                .map_err(|e| reason(&e))?;
            let instance = described
                .instance
                .map(|facts| instance(&facts, &self.account_id))
                .transpose()?;
            Ok::<_, String>(Arc::new(Answer {
                instance,
                generation: self.generation.fetch_add(1, Ordering::Relaxed),
            }))
        });
        let result = match tokio::time::timeout(deadline, shared).await {
            Ok(result) => result.map_err(|e| e.as_ref().clone()),
            Err(_) => Err(format!(
                "ECS did not describe the instance within the call's deadline ({})",
                humantime::format_duration(deadline)
            )),
        };
        match result {
            Ok(answer) => {
                self.metrics.record_lookup("miss");
                Ok(answer)
            }
            Err(error) => {
                self.metrics.record_lookup("error");
                Err(error)
            }
        }
    }

    /// Forgets what ECS said of an instance: after a change was sent, its
    /// bandwidth, billing or public IP may be other.
    pub async fn forget(&self, region_id: &str, instance_id: &str) {
        self.cache
            .invalidate(&(region_id.to_owned(), instance_id.to_owned()))
            .await;
    }
}

/// Why a lookup failed, for the denial the caller gets and the decision
/// log: ECS's code and RequestId, never its message (ECS quotes the string
/// it signed in some, with the STS token).
fn reason(error: &upstream::Error) -> String {
    match error {
        upstream::Error::Ecs(e) => format!(
            "ECS answered HTTP {} {} (RequestId {})",
            e.http_status, e.code, e.request_id
        ),
        other => other.to_string(),
    }
}

/// The resource entity of what ECS said: the attributes `entities.json`
/// could give (`chargeType`, `hasPublicIp`, tags), the network billing and
/// bandwidth, and `known: true`.
///
/// # Errors
///
/// An attribute Cedar refuses (never for what the parser accepts).
pub fn instance(facts: &InstanceFacts, account_id: &str) -> Result<Instance, String> {
    let arn = catalogue::instance_arn(&facts.region_id, account_id, &facts.instance_id);
    let has_public_ip = !facts.public_ips.is_empty() || facts.eip.is_some();
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let mut attrs = vec![
        ("arn".to_owned(), string(&arn)),
        ("region".to_owned(), string(&facts.region_id)),
        ("account".to_owned(), string(account_id)),
        ("known".to_owned(), RestrictedExpression::new_bool(true)),
        ("chargeType".to_owned(), string(&facts.instance_charge_type)),
        (
            "hasPublicIp".to_owned(),
            RestrictedExpression::new_bool(has_public_ip),
        ),
    ];
    if let Some(charge) = &facts.internet_charge_type {
        attrs.push(("internetChargeType".to_owned(), string(charge)));
    }
    for (name, value) in [
        ("internetMaxBandwidthOut", facts.bandwidth_out),
        ("internetMaxBandwidthIn", facts.bandwidth_in),
    ] {
        if let Some(value) = value {
            attrs.push((name.to_owned(), RestrictedExpression::new_long(value)));
        }
    }
    let uid = EntityUid::from_type_name_and_id(
        "Ecs::Instance"
            .parse()
            .unwrap_or_else(|_| unreachable!("a fixed type name parses")),
        cedar_policy::EntityId::new(&facts.instance_id),
    );
    let tags = facts
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
    let entity = Entity::new_with_tags(uid, attrs, [], tags).map_err(|e| e.to_string())?;
    Ok(Instance {
        entity,
        arn,
        region: facts.region_id.clone(),
        account: account_id.to_owned(),
        charge_type: Some(facts.instance_charge_type.clone()),
        has_public_ip: Some(has_public_ip),
    })
}
