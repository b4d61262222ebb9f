//! Sessions named after callers (`credentials.session_name_from_caller`):
//! each caller's calls to another account are signed with a session of that
//! account's role of its own, named after the caller (its SPIFFE ID or
//! subject, sanitized to STS's rules, with a hash of the whole identity),
//! so that ECS's audit trail (ActionTrail) shows which internal service
//! made each change. Sessions are made on a caller's first call, refreshed
//! when a call finds them stale, and forgotten after an hour without a call
//! (at most 1,024 kept, the least recently used forgotten first; at most 5
//! new ones a second, beyond which the account's shared session signs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::cache::Provider;
use super::role::{Account, AssumeRole};
use super::sts::{self, Sts};
use crate::telemetry::Metrics;

/// The most sessions kept.
const KEPT: u64 = 1024;
/// A session without a call this long is forgotten.
const IDLE: Duration = Duration::from_secs(3600);
/// New sessions made per second, in all: beyond, a caller's call is signed
/// with the account's shared session, so that many identities cannot spend
/// the account's STS quota (which the shared sessions' refreshes need).
const NEW_PER_SECOND: u32 = 5;

/// Each caller's sessions of the other accounts' roles.
pub(crate) struct Sessions {
    chain: Arc<Provider>,
    sts: Arc<Sts>,
    accounts: HashMap<String, Account>,
    metrics: Arc<Metrics>,
    sessions: moka::future::Cache<(String, String), Arc<Provider>>,
    /// Bounds the sessions made per second.
    new: governor::DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("kept", &self.sessions.entry_count())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub(crate) fn new(
        chain: Arc<Provider>,
        sts: Arc<Sts>,
        accounts: &[Account],
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            chain,
            sts,
            accounts: accounts.iter().map(|a| (a.id.clone(), a.clone())).collect(),
            metrics,
            // LRU: a new caller always gets its session kept (TinyLFU may
            // refuse to admit it, and it would be assumed anew per call).
            sessions: moka::future::Cache::builder()
                .max_capacity(KEPT)
                .time_to_idle(IDLE)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
            new: governor::RateLimiter::direct(governor::Quota::per_second(
                std::num::NonZeroU32::new(NEW_PER_SECOND).unwrap_or(std::num::NonZeroU32::MIN),
            )),
        }
    }

    /// The provider of `account`'s role for `caller`, made on the caller's
    /// first call; `None` when the account is not one of the listed ones,
    /// or when more new sessions than 5 a second were asked for (the call
    /// is then signed with the account's shared session).
    pub(crate) async fn provider(&self, account: &str, caller: &str) -> Option<Arc<Provider>> {
        let listed = self.accounts.get(account)?;
        let key = (account.to_owned(), caller.to_owned());
        if let Some(kept) = self.sessions.get(&key).await {
            return Some(kept);
        }
        if self.new.check().is_err() {
            tracing::debug!(%account, "too many new sessions this second: the shared session signs");
            return None;
        }
        let session = sts::session_name_for(caller);
        let provider = self
            .sessions
            .get_with(key, async {
                let fetch = AssumeRole {
                    chain: self.chain.clone(),
                    sts: self.sts.clone(),
                    account: listed.clone(),
                    session_name: session,
                };
                // Refreshed when a call needs it, with no task of its own:
                // nothing outlives a forgotten session.
                Arc::new(Provider::new(
                    Box::new(fetch),
                    account.to_owned(),
                    self.metrics.clone(),
                ))
            })
            .await;
        Some(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Credentials, Secret};

    #[tokio::test]
    async fn new_sessions_are_bounded_per_second_and_kept_ones_always_served() {
        let metrics = Arc::new(Metrics::default());
        let chain = Arc::new(Provider::fixed(
            Credentials {
                access_key_id: "AK".into(),
                access_key_secret: Secret::new("s"),
                security_token: None,
            },
            "1".into(),
            metrics.clone(),
        ));
        let account = Account {
            id: "2".into(),
            role_arn: "acs:ram::2:role/r".into(),
            external_id: None,
        };
        let sts = Arc::new(Sts::new(sts::Config::default()).unwrap());
        let sessions = Sessions::new(chain, sts, std::slice::from_ref(&account), metrics);
        assert!(
            sessions.provider("3", "caller-0").await.is_none(),
            "not listed"
        );
        let mut made = 0;
        for i in 0..20 {
            if sessions
                .provider("2", &format!("caller-{i}"))
                .await
                .is_some()
            {
                made += 1;
            }
        }
        assert_eq!(made, NEW_PER_SECOND, "at most the burst in one go");
        // The first callers' sessions are kept: served beyond the limit.
        let first = sessions.provider("2", "caller-0").await.unwrap();
        let again = sessions.provider("2", "caller-0").await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }
}
