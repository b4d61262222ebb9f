//! Sessions named after callers (`credentials.session_name_from_caller`):
//! each caller's calls to another account are signed with a session of that
//! account's role of its own, named after the caller (its SPIFFE ID or
//! subject, sanitized to STS's rules, with a hash of the whole identity),
//! so that ECS's audit trail (ActionTrail) shows which internal service
//! made each change. Sessions are made on a caller's first call, refreshed
//! when a call finds them stale, and forgotten after an hour without a call
//! (at most 1,024 kept, the least recently used forgotten first).

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

/// Each caller's sessions of the other accounts' roles.
pub(crate) struct Sessions {
    chain: Arc<Provider>,
    sts: Arc<Sts>,
    accounts: HashMap<String, Account>,
    metrics: Arc<Metrics>,
    sessions: moka::future::Cache<(String, String), Arc<Provider>>,
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
        }
    }

    /// The provider of `account`'s role for `caller`, made (and started) on
    /// the caller's first call; `None` when the account is not one of the
    /// listed ones.
    pub(crate) async fn provider(&self, account: &str, caller: &str) -> Option<Arc<Provider>> {
        let listed = self.accounts.get(account)?;
        let session = sts::session_name_for(caller);
        let key = (account.to_owned(), caller.to_owned());
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
