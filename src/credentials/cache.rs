//! One source's credentials, cached and kept fresh.
//!
//! Temporary credentials go stale in the last 15 minutes before their
//! `Expiration` (what the Python and Java SDKs do), or in the last half of
//! a shorter lifetime; a background task refreshes them then, retrying with
//! backoff while it fails. A caller is handed the cached credentials while
//! they are usable, and waits for a refresh only when they are not (one
//! refresh at a time: callers wait for the one under way, and a refresh
//! that just failed is not repeated for each of them). Credentials are
//! never handed out in the last fifth of their lifetime (at most a minute),
//! so a request signed with them reaches ECS before they expire: a call is
//! never signed with expired credentials, it is refused with
//! [`Unavailable`].

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::BoxFuture;

use super::{Credentials, Error, Issued};
use crate::telemetry::Metrics;

/// A source of credentials: fetches them anew.
pub(crate) trait Fetch: Send + Sync + 'static {
    /// The source's name for metrics and logs (`rrsa`, `assume_role`, …).
    fn source(&self) -> &'static str;
    /// Fetches the current credentials.
    fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>>;
    /// For credentials without an expiration: how often to ask again (a
    /// file's modification time). `None`: never.
    fn recheck(&self) -> Option<Duration> {
        None
    }
}

/// The last fifth of a lifetime, at most this, is never used to sign.
const SIGN_MARGIN: Duration = Duration::from_secs(60);
/// Temporary credentials are refreshed this long before they expire, or
/// in the last half of a shorter lifetime.
const STALE_BEFORE: Duration = Duration::from_secs(15 * 60);
/// A refresh that failed is not tried again sooner than this.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest wait between failed refreshes.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Credentials living less than this are a failed refresh (remembered, so
/// callers do not fetch them anew one after another).
const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// The longest lifetime believed (STS's longest session): a source cannot
/// pin a key for longer.
const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Credentials in the cache, with when to refresh them and until when they
/// may sign.
#[derive(Debug)]
pub struct Current {
    credentials: Arc<Credentials>,
    expiration: Option<DateTime<Utc>>,
    /// From then on, a refresh is due.
    stale_at: Option<DateTime<Utc>>,
    /// From then on, they must not sign.
    usable_until: Option<DateTime<Utc>>,
    role: Option<Arc<str>>,
}

impl Current {
    fn new(issued: Issued, now: DateTime<Utc>, recheck: Option<Duration>) -> Self {
        let expiration = issued
            .expiration
            .map(|at| at.min(now + delta(MAX_LIFETIME)));
        let (stale_at, usable_until) = match expiration {
            Some(expiration) => {
                let life = (expiration - now).to_std().unwrap_or_default();
                let stale = STALE_BEFORE.min(life / 2);
                let margin = SIGN_MARGIN.min(life / 5);
                (
                    Some(expiration - delta(stale)),
                    Some(expiration - delta(margin)),
                )
            }
            None => (recheck.map(|every| now + delta(every)), None),
        };
        Self {
            credentials: Arc::new(issued.credentials),
            expiration,
            stale_at,
            usable_until,
            role: issued.role.map(Arc::from),
        }
    }

    /// The key to sign with.
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// The role whose key it is, when a role's (for the decision log).
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// When they expire, when temporary.
    pub fn expiration(&self) -> Option<DateTime<Utc>> {
        self.expiration
    }

    /// Whether they may still sign at `now`.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.usable_until.is_none_or(|until| now < until)
    }

    fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.stale_at.is_none_or(|at| now < at)
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// No credentials that may sign: the source failed and the cached ones (if
/// any) are expired. The call is answered `UNAVAILABLE`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no usable credentials for account {account}: the {failing} source failed: {reason}")]
pub struct Unavailable {
    /// The account.
    pub account: String,
    /// The failing source.
    pub failing: &'static str,
    /// Its last error.
    pub reason: String,
    /// When a retry may succeed.
    pub retry_after: Duration,
}

/// One source's credentials for one account, cached and refreshed.
pub struct Provider {
    fetch: Box<dyn Fetch>,
    account: String,
    current: ArcSwapOption<Current>,
    /// Held by the refresh under way.
    refreshing: tokio::sync::Mutex<()>,
    /// The last failed refresh: when, and why.
    failed: Mutex<Option<(Instant, String)>>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("source", &self.fetch.source())
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Provider {
    pub(crate) fn new(fetch: Box<dyn Fetch>, account: String, metrics: Arc<Metrics>) -> Self {
        Self {
            fetch,
            account,
            current: ArcSwapOption::empty(),
            refreshing: tokio::sync::Mutex::new(()),
            failed: Mutex::new(None),
            metrics,
        }
    }

    /// A provider of fixed credentials, usable at once.
    pub(crate) fn fixed(credentials: Credentials, account: String, metrics: Arc<Metrics>) -> Self {
        let provider = Self::new(Box::new(Fixed), account, metrics);
        provider.current.store(Some(Arc::new(Current::new(
            Issued {
                credentials,
                expiration: None,
                role: None,
            },
            Utc::now(),
            None,
        ))));
        provider
    }

    /// The source's name.
    pub fn source(&self) -> &'static str {
        self.fetch.source()
    }

    /// The account whose credentials these are.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The cached credentials, whatever their state (for metrics).
    pub fn peek(&self) -> Option<Arc<Current>> {
        self.current.load_full()
    }

    /// Whether credentials that may sign are cached.
    pub fn is_ready(&self) -> bool {
        self.peek().is_some_and(|c| c.usable(Utc::now()))
    }

    /// Credentials that may sign now: the cached ones while usable (a stale
    /// one is refreshed in the background), else those of a refresh,
    /// waited for.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when the source fails and nothing usable is cached.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<Current>, Unavailable> {
        if let Some(current) = self.peek()
            && current.usable(Utc::now())
        {
            return Ok(current);
        }
        // The refresh runs as a task of its own: a caller that gives up (its
        // deadline) does not cancel it for those waiting with it, and its
        // failure is remembered for them.
        let provider = Arc::clone(self);
        let refreshed = tokio::spawn(async move { provider.refresh().await })
            .await
            .unwrap_or_else(|e| Err(format!("the refresh failed: {e}")));
        match self.peek() {
            Some(current) if current.usable(Utc::now()) => Ok(current),
            _ => Err(self.unavailable(refreshed.err().unwrap_or_else(|| {
                "the credentials it handed out are too close to expiring".to_owned()
            }))),
        }
    }

    pub(crate) fn unavailable(&self, reason: String) -> Unavailable {
        Unavailable {
            account: self.account.clone(),
            failing: self.source(),
            reason,
            retry_after: RETRY_AFTER,
        }
    }

    /// Fetches anew unless another refresh just did (or just failed).
    async fn refresh(&self) -> Result<(), String> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.peek().is_some_and(|c| c.fresh(Utc::now())) {
            return Ok(());
        }
        if let Some((at, reason)) = &*self.failed.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < RETRY_AFTER
        {
            return Err(reason.clone());
        }
        let result = self.fetch.fetch().await;
        let now = Utc::now();
        let outcome = match result {
            Ok(issued) => {
                if let Some(expiration) = issued.expiration
                    && expiration <= now + delta(MIN_LIFETIME)
                {
                    Err(format!(
                        "they expire at {expiration}, too soon to sign with (under {MIN_LIFETIME:?})"
                    ))
                } else {
                    self.current.store(Some(Arc::new(Current::new(
                        issued,
                        now,
                        self.fetch.recheck(),
                    ))));
                    Ok(())
                }
            }
            Err(error) => Err(error_chain(&error)),
        };
        self.metrics
            .record_credentials_refresh(self.source(), outcome.is_ok());
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &outcome {
            Ok(()) => *failed = None,
            Err(reason) => {
                let still_usable = self.peek().is_some_and(|c| c.usable(now));
                tracing::warn!(
                    source = self.source(),
                    account = %self.account,
                    error = %reason,
                    still_usable,
                    "credentials refresh failed"
                );
                *failed = Some((Instant::now(), reason.clone()));
            }
        }
        outcome
    }

    /// Keeps the credentials fresh in the background until the provider is
    /// dropped: fetches them at once, then again whenever they go stale,
    /// with backoff while the source fails.
    pub fn start(self: &Arc<Self>) {
        let provider = Arc::downgrade(self);
        tokio::spawn(keep_fresh(provider));
    }
}

async fn keep_fresh(provider: Weak<Provider>) {
    let mut backoff = RETRY_AFTER;
    loop {
        let wait = {
            let Some(provider) = provider.upgrade() else {
                return;
            };
            match provider.peek() {
                None => Duration::ZERO,
                Some(current) => match current.stale_at {
                    None => return,
                    Some(at) => (at - Utc::now()).to_std().unwrap_or_default(),
                },
            }
        };
        tokio::time::sleep(wait).await;
        let Some(strong) = provider.upgrade() else {
            return;
        };
        let result = strong.refresh().await;
        drop(strong);
        match result {
            // Never more than one refresh a second, however short the
            // lifetime a source hands out.
            Ok(()) => {
                backoff = RETRY_AFTER;
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(_) => {
                tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// An error and its causes, one line, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Fixed credentials: never refreshed.
struct Fixed;

impl Fetch for Fixed {
    fn source(&self) -> &'static str {
        "environment"
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>> {
        Box::pin(async {
            Err(Error::Answer {
                what: "environment",
                url: String::new(),
                status: 0,
                detail: "fixed credentials are not fetched".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Hands out keys `AK1`, `AK2`, … living `life`, or fails while `down`.
    struct Counting {
        fetched: AtomicU32,
        life: Duration,
        down: std::sync::atomic::AtomicBool,
        delay: Duration,
    }

    impl Fetch for Arc<Counting> {
        fn source(&self) -> &'static str {
            "test"
        }

        fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                if self.down.load(Ordering::SeqCst) {
                    return Err(Error::Answer {
                        what: "STS",
                        url: "http://sts".into(),
                        status: 503,
                        detail: "down".into(),
                    });
                }
                let n = self.fetched.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Issued {
                    credentials: Credentials {
                        access_key_id: format!("AK{n}"),
                        access_key_secret: Secret::new("s"),
                        security_token: Some(Secret::new("t")),
                    },
                    expiration: Some(Utc::now() + delta(self.life)),
                    role: Some("acs:ram::1:role/r".into()),
                })
            })
        }
    }

    fn counting(life: Duration, delay: Duration) -> (Arc<Counting>, Arc<Provider>) {
        let source = Arc::new(Counting {
            fetched: AtomicU32::new(0),
            life,
            down: false.into(),
            delay,
        });
        let provider = Arc::new(Provider::new(
            Box::new(source.clone()),
            "1".into(),
            Arc::new(Metrics::default()),
        ));
        (source, provider)
    }

    #[test]
    fn stale_and_unusable_points_follow_the_lifetime() {
        let now = Utc::now();
        let issued = |life: i64| Issued {
            credentials: Credentials {
                access_key_id: "AK".into(),
                access_key_secret: Secret::new("s"),
                security_token: None,
            },
            expiration: Some(now + TimeDelta::seconds(life)),
            role: None,
        };
        let far = Current::new(issued(10 * 24 * 3600), now, None);
        assert_eq!(far.expiration, Some(now + TimeDelta::hours(12)), "clamped");
        let hour = Current::new(issued(3600), now, None);
        assert_eq!(hour.stale_at, Some(now + TimeDelta::seconds(2700)));
        assert_eq!(hour.usable_until, Some(now + TimeDelta::seconds(3540)));
        let short = Current::new(issued(900), now, None);
        assert_eq!(short.stale_at, Some(now + TimeDelta::seconds(450)));
        let tiny = Current::new(issued(10), now, None);
        assert_eq!(tiny.stale_at, Some(now + TimeDelta::seconds(5)));
        assert_eq!(tiny.usable_until, Some(now + TimeDelta::seconds(8)));
        assert!(tiny.usable(now + TimeDelta::seconds(7)));
        assert!(!tiny.usable(now + TimeDelta::seconds(8)));
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let (source, provider) = counting(Duration::from_secs(3600), Duration::from_millis(50));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let provider = provider.clone();
                tokio::spawn(async move { provider.get().await.map(|c| c.credentials().clone()) })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().access_key_id, "AK1");
        }
        assert_eq!(source.fetched.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_usable_credentials_and_never_hands_out_expired_ones() {
        let (source, provider) = counting(Duration::from_millis(1500), Duration::ZERO);
        assert_eq!(
            provider.get().await.unwrap().credentials().access_key_id,
            "AK1"
        );
        source.down.store(true, Ordering::SeqCst);
        // Stale (past half its life) but usable: still handed out.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(provider.refresh().await.is_err());
        assert_eq!(
            provider.get().await.unwrap().credentials().access_key_id,
            "AK1"
        );
        // In the last fifth: refused, naming the source.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refused = provider.get().await.unwrap_err();
        assert_eq!(refused.failing, "test");
        assert!(refused.reason.contains("down"), "{refused}");
        // The source is back: the next call waits for a fresh key.
        source.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(RETRY_AFTER).await;
        assert_eq!(
            provider.get().await.unwrap().credentials().access_key_id,
            "AK2"
        );
    }

    #[tokio::test]
    async fn the_background_task_refreshes_before_expiry() {
        let (source, provider) = counting(Duration::from_millis(3000), Duration::ZERO);
        provider.start();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(source.fetched.load(Ordering::SeqCst), 1);
        // Stale after 1.5 s: refreshed without any caller asking.
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert!(source.fetched.load(Ordering::SeqCst) >= 2);
        assert!(provider.is_ready());
        drop(provider);
    }
}
