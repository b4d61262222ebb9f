//! The accounts the gateway signs for: the default account with the
//! chain's credentials, and every account listed in `[[accounts]]` with
//! the credentials of a role in it, assumed through STS `AssumeRole`
//! (signed by the chain's credentials, with `ExternalId` when given) and
//! refreshed like any temporary credentials.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{Current, Fetch, Provider, Unavailable};
use super::file::File;
use super::metadata::Metadata;
use super::oidc::Oidc;
use super::role::{Account, AssumeRole};
use super::sessions::Sessions;
use super::sts::{self, Sts};
use super::uri::Uri;
use super::{Config, Error};
use crate::telemetry::Metrics;

/// An account the gateway does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "account {0} is not served by this gateway (it is neither policy.account_id nor in [[accounts]])"
)]
pub struct Unserved(pub String);

/// The signing credentials of every account served.
#[derive(Debug)]
pub struct Signers {
    default_account: String,
    default: Arc<Provider>,
    others: HashMap<String, Arc<Provider>>,
    /// With `credentials.session_name_from_caller`: the other accounts'
    /// sessions per caller.
    sessions: Option<Sessions>,
}

/// The chain's source, opened (a credentials file read), not yet fetching.
pub struct Opened {
    source: OpenedSource,
    sts: Arc<Sts>,
}

enum OpenedSource {
    Fixed(super::Credentials),
    Fetch(Box<dyn Fetch>),
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

impl Opened {
    /// Opens `source`: a credentials file is read, so a bad one fails at
    /// start-up.
    ///
    /// # Errors
    ///
    /// The credentials file cannot be read or lacks the profile's keys.
    pub fn new(source: Config, sts: sts::Config) -> Result<Self, Error> {
        let sts = Arc::new(Sts::new(sts)?);
        let source = match source {
            Config::Static(credentials) => OpenedSource::Fixed(credentials),
            Config::File { path, profile } => {
                OpenedSource::Fetch(Box::new(File::open(path, profile)?))
            }
            Config::Oidc(config) => OpenedSource::Fetch(Box::new(Oidc {
                config,
                sts: sts.clone(),
            })),
            Config::EcsRamRole(config) => OpenedSource::Fetch(Box::new(Metadata::new(config)?)),
            Config::Uri(config) => OpenedSource::Fetch(Box::new(Uri::new(config)?)),
        };
        Ok(Self { source, sts })
    }

    /// The signers of `default_account` (with the chain's credentials) and
    /// of every listed account (through its role).
    pub fn signers(
        self,
        default_account: &str,
        accounts: &[Account],
        metrics: Arc<Metrics>,
    ) -> Signers {
        let account = default_account.to_owned();
        let default = Arc::new(match self.source {
            OpenedSource::Fixed(credentials) => {
                Provider::fixed(credentials, account, metrics.clone())
            }
            OpenedSource::Fetch(fetch) => Provider::new(fetch, account, metrics.clone()),
        });
        Signers::with_default(default, self.sts, accounts, metrics)
    }
}

impl Signers {
    /// The default account's provider from the chain's `source`, and one
    /// per listed account.
    ///
    /// # Errors
    ///
    /// The credentials file cannot be read.
    pub fn build(
        source: Config,
        sts: sts::Config,
        default_account: &str,
        accounts: &[Account],
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        Ok(Opened::new(source, sts)?.signers(default_account, accounts, metrics))
    }

    fn with_default(
        default: Arc<Provider>,
        sts: Arc<Sts>,
        accounts: &[Account],
        metrics: Arc<Metrics>,
    ) -> Self {
        let others = accounts
            .iter()
            .map(|account| {
                let fetch = AssumeRole {
                    chain: default.clone(),
                    sts: sts.clone(),
                    account: account.clone(),
                    session_name: sts.config().session_name.clone(),
                };
                let provider = Provider::new(Box::new(fetch), account.id.clone(), metrics.clone());
                (account.id.clone(), Arc::new(provider))
            })
            .collect();
        let sessions = sts
            .config()
            .sessions_per_caller
            .then(|| Sessions::new(default.clone(), sts.clone(), accounts, metrics.clone()));
        Self {
            default_account: default.account().to_owned(),
            default,
            others,
            sessions,
        }
    }

    /// The default account.
    pub fn default_account(&self) -> &str {
        &self.default_account
    }

    /// Whether `account` is served.
    pub fn serves(&self, account: &str) -> bool {
        account == self.default_account || self.others.contains_key(account)
    }

    /// Every account served, the default first.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.default_account.as_str()).chain(self.others.keys().map(String::as_str))
    }

    fn provider(&self, account: Option<&str>) -> Result<&Arc<Provider>, Unserved> {
        match account {
            None => Ok(&self.default),
            Some(id) if id == self.default_account => Ok(&self.default),
            Some(id) => self.others.get(id).ok_or_else(|| Unserved(id.to_owned())),
        }
    }

    /// The role whose credentials sign for `account` now, when a role's.
    pub fn role(&self, account: Option<&str>) -> Option<String> {
        let current = self.provider(account).ok()?.peek()?;
        current.role().map(str::to_owned)
    }

    /// Credentials that may sign for `account` now (`None`: the default
    /// account), for `caller` (whose own session signs when sessions are
    /// named after callers), waiting at most `wait` for a refresh (the
    /// call's deadline).
    ///
    /// # Errors
    ///
    /// [`SignerError::Unserved`] for an account not served;
    /// [`SignerError::Unavailable`] when its source fails and nothing usable
    /// is cached, or no usable credentials came within `wait`.
    pub async fn get_within(
        &self,
        account: Option<&str>,
        caller: Option<&str>,
        wait: std::time::Duration,
    ) -> Result<Arc<Current>, SignerError> {
        let mut provider = self.provider(account)?.clone();
        // Another account's session of the caller's own, when sessions are
        // named after callers.
        if let (Some(sessions), Some(account), Some(caller)) = (&self.sessions, account, caller)
            && account != self.default_account
            && let Some(own) = sessions.provider(account, caller).await
        {
            provider = own;
        }
        match tokio::time::timeout(wait, provider.get()).await {
            Ok(current) => Ok(current?),
            Err(_) => Err(provider
                .unavailable(format!(
                    "no usable credentials within the call's deadline ({})",
                    humantime::format_duration(wait)
                ))
                .into()),
        }
    }

    /// Starts keeping every account's credentials fresh in the background.
    pub fn start(&self) {
        self.default.start();
        for provider in self.others.values() {
            provider.start();
        }
    }

    /// Whether the default account's credentials may sign: readiness.
    pub fn is_ready(&self) -> bool {
        self.default.is_ready()
    }

    /// Seconds each account's temporary credentials have left (none for a
    /// long-lived AccessKey).
    pub fn validity(&self) -> Vec<(String, f64)> {
        let now = chrono::Utc::now();
        std::iter::once(&self.default)
            .chain(self.others.values())
            .filter_map(|p| {
                let expiration = p.peek()?.expiration()?;
                let left = (expiration - now).num_milliseconds() as f64 / 1000.0;
                Some((p.account().to_owned(), left.max(0.0)))
            })
            .collect()
    }
}

/// Why an account's credentials cannot sign.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignerError {
    /// The account is not served.
    #[error(transparent)]
    Unserved(#[from] Unserved),
    /// Its credentials are unavailable.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl crate::telemetry::metrics::CredentialsState for Signers {
    fn ready(&self) -> bool {
        self.is_ready()
    }

    fn validity(&self) -> Vec<(String, f64)> {
        Signers::validity(self)
    }
}
