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
//!
//! The account's `DescribeInstances` quota is shared by every caller, so
//! calls to ECS are bounded (cache hits are free): `max_per_second` in all,
//! and `max_per_second_per_caller` for each identity, so that one identity
//! cannot spend what the others need. A caller over either is refused with
//! RESOURCE_EXHAUSTED, which it may retry; nothing is denied for it. And the
//! gateway asks only when the answer can change the decision: a call the
//! policies deny whatever the instance is is denied first
//! ([`crate::policy::Authorizer::deny_before_lookup`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use cedar_policy::{Entity, EntityUid, RestrictedExpression};

use crate::credentials;
use crate::identity::CallerId;
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
    /// Calls to ECS per second, in all (bursts of as many).
    pub max_per_second: u32,
    /// Calls to ECS per second for one identity.
    pub max_per_second_per_caller: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            max_instances: 10_000,
            // Well under DescribeInstances' usual per-account quota, which
            // other tools of the account share.
            max_per_second: 20,
            max_per_second_per_caller: 5,
        }
    }
}

/// Why the instance's attributes are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// ECS could not tell (its error, a timeout, an unreadable answer): the
    /// decision denies.
    #[error("{0}")]
    Failed(String),
    /// The caller, or all callers together, asked ECS as often as they may
    /// for now: the call is refused, not decided, and may be retried.
    #[error("instance lookups are limited to {limit} per second {scope}")]
    Throttled {
        /// The rate.
        limit: u32,
        /// `per caller` or `in all`.
        scope: &'static str,
    },
}

/// One answer, as the policies see it.
#[derive(Debug)]
pub struct Answer {
    /// The instance, or `None` when ECS has no such instance in the region.
    pub instance: Option<Instance>,
}

impl Answer {
    /// The decision's view of this answer.
    pub fn source(&self) -> Source<'_> {
        Source::Described {
            instance: self.instance.as_ref(),
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

/// The decision's view of an instance the gateway did not ask about: unknown
/// (used when the policies deny the call whatever the instance is).
pub const UNASKED: Source<'static> = Source::Described { instance: None };

/// The lookup.
pub struct Lookup {
    cache: moka::future::Cache<Key, Arc<Answer>>,
    config: Config,
    all: DefaultDirectRateLimiter,
    per_caller: DefaultKeyedRateLimiter<CallerId>,
    /// Instances a call to ECS is in flight for.
    asking: std::sync::Mutex<std::collections::HashSet<Key>>,
    upstream: Arc<upstream::Client>,
    account_id: String,
    metrics: Arc<Metrics>,
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
        let quota = |n: u32| Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            all: governor::RateLimiter::direct(quota(config.max_per_second)),
            per_caller: governor::RateLimiter::keyed(quota(config.max_per_second_per_caller)),
            config: config.clone(),
            asking: std::sync::Mutex::new(std::collections::HashSet::new()),
            cache: moka::future::Cache::builder()
                .max_capacity(config.max_instances)
                .time_to_live(config.ttl)
                .build(),
            upstream,
            account_id,
            metrics,
        }
    }

    /// The instance's attributes, from the cache or, for `caller`, from
    /// ECS within `deadline`.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`]: why ECS could not tell, and the decision must
    /// deny; [`Error::Throttled`]: the caller (or all callers) asked too
    /// often, and the call is refused.
    pub async fn get(
        &self,
        caller: &CallerId,
        (account, region_id, instance_id): (Option<&str>, &str, &str),
        deadline: Duration,
    ) -> Result<Arc<Answer>, Error> {
        let account = account.unwrap_or(&self.account_id);
        let key = (
            account.to_owned(),
            region_id.to_owned(),
            instance_id.to_owned(),
        );
        if let Some(answer) = self.cache.get(&key).await {
            self.metrics.record_lookup("hit");
            return Ok(answer);
        }
        // A miss that starts a call to ECS is charged to its caller's share
        // and to all callers'; one that joins a call in flight is not. Over
        // either, the call is refused before it spends anything.
        let asking = match self.start_asking(caller, &key) {
            Ok(asking) => asking,
            Err(error) => {
                self.metrics.record_lookup("throttled");
                return Err(error);
            }
        };
        // One call to ECS for every caller asking now, each waiting for it
        // within its own deadline; the call itself is not cut to the
        // starter's deadline (the upstream timeout bounds it). It runs in
        // the future of the caller that started it: if that caller's
        // deadline ends first, one still waiting starts (and pays for) a
        // call of its own, so a caller in a hurry does not fail the others.
        let paid = asking.is_some();
        let shared = self.cache.try_get_with(key, async {
            // A caller that joined another's call runs this only when that
            // one went away (its deadline) before ECS answered: then it
            // starts a call of its own, and pays for it.
            if !paid {
                self.charge(caller)?;
            }
            let described = self
                .upstream
                .describe_instance(Some(account), region_id, instance_id, Duration::MAX)
                .await
                .map_err(|e| Error::Failed(reason(&e)))?;
            let instance = described
                .instance
                .map(|facts| instance(&facts, account))
                .transpose()
                .map_err(Error::Failed)?;
            Ok::<_, Error>(Arc::new(Answer { instance }))
        });
        let result = match tokio::time::timeout(deadline, shared).await {
            Ok(result) => result.map_err(|e| e.as_ref().clone()),
            Err(_) => Err(Error::Failed(format!(
                "ECS did not describe the instance within the call's deadline ({})",
                humantime::format_duration(deadline)
            ))),
        };
        drop(asking);
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

    /// Marks `key` as being asked about, charging `caller` when no call for
    /// it is in flight; `None` inside when one is (the caller joins it).
    ///
    /// # Errors
    ///
    /// The caller, or all callers, are over their rate.
    fn start_asking(&self, caller: &CallerId, key: &Key) -> Result<Option<Asking<'_>>, Error> {
        let mut asking = self.asking.lock().unwrap_or_else(|e| e.into_inner());
        if asking.contains(key) {
            return Ok(None);
        }
        self.charge(caller)?;
        asking.insert(key.clone());
        Ok(Some(Asking {
            asking: &self.asking,
            key: key.clone(),
        }))
    }

    /// Charges one call to ECS to `caller`'s rate and to all callers'.
    ///
    /// # Errors
    ///
    /// The caller, or all callers, are over their rate.
    fn charge(&self, caller: &CallerId) -> Result<(), Error> {
        if self.per_caller.check_key(caller).is_err() {
            return Err(Error::Throttled {
                limit: self.config.max_per_second_per_caller,
                scope: "per caller",
            });
        }
        if self.all.check().is_err() {
            return Err(Error::Throttled {
                limit: self.config.max_per_second,
                scope: "in all",
            });
        }
        // Identities that stopped asking are forgotten now and then; the
        // map is bounded by the identities principals.toml maps anyway.
        if self.per_caller.len() > 1024 {
            self.per_caller.retain_recent();
        }
        Ok(())
    }

    /// Forgets what ECS said of an instance: after a change was sent, its
    /// bandwidth, billing or public IP may be other.
    pub async fn forget(&self, account: Option<&str>, region_id: &str, instance_id: &str) {
        let account = account.unwrap_or(&self.account_id);
        self.cache
            .invalidate(&(
                account.to_owned(),
                region_id.to_owned(),
                instance_id.to_owned(),
            ))
            .await;
    }
}

/// An instance: its account, region and ID.
type Key = (String, String, String);

/// A call to ECS in flight for an instance, until dropped.
struct Asking<'a> {
    asking: &'a std::sync::Mutex<std::collections::HashSet<Key>>,
    key: Key,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.asking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
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
        // The credentials' failure stays in the gateway's log (it names
        // servers, files and STS's answers): the caller learns only that.
        upstream::Error::Credentials(credentials::SignerError::Unavailable(u)) => format!(
            "the gateway has no usable credentials for account {} right now",
            u.account
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
    let parents = [catalogue::account_uid(account_id)];
    let entity = Entity::new_with_tags(uid, attrs, parents, tags).map_err(|e| e.to_string())?;
    Ok(Instance {
        entity,
        arn,
        region: facts.region_id.clone(),
        account: account_id.to_owned(),
        charge_type: Some(facts.instance_charge_type.clone()),
        has_public_ip: Some(has_public_ip),
    })
}
