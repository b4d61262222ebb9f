//! Admission and load shedding, between identity and the service.
//!
//! A call is admitted in three steps, each bounded, so that no caller can
//! hold what others need:
//!
//! 1. its request message is received within `receive_timeout` and at most
//!    `max_message_size` bytes, before it holds a place: streams that send
//!    headers and never a body (or send it a byte at a time) take no place,
//!    and are answered DEADLINE_EXCEEDED when the timeout ends. Receiving
//!    is counted too, before the first byte is read, by the same shares as
//!    places (below): one identity cannot have more messages arriving than
//!    its share, so it cannot hold more than its share of receive buffers;
//! 2. its caller (the authenticated identity) holds fewer than
//!    `max_calls_per_caller` capacity: one identity cannot take every place.
//!    An identity that no principal maps (it will be denied) gets
//!    `max_calls_per_unmapped_caller`, and all of them together one
//!    caller's share: strangers with certificates cannot fill the gateway;
//! 3. a place among `max_calls` is free.
//!
//! A call beyond either limit is refused at once with RESOURCE_EXHAUSTED
//! (and RetryInfo) rather than queued: a queue without bound turns a burst
//! into latency for everyone and memory for the gateway, a fast refusal
//! lets the caller back off or go to another replica. A caller that goes
//! away while its message is arriving is answered (and counted) CANCELLED.
//!
//! Health and reflection need no identity and take no place (an overloaded
//! pod must not also be killed by its liveness probe): they are bounded
//! apart, per connection and in all, with an idle timeout and a deadline
//! ([`unauthenticated`]).
//!
//! The layer knows nothing of gRPC statuses: a refused call is answered by
//! the [`Reject`] function the server gives it (`error.rs`'s mapping).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::identity::{Caller, CallerId};

pub mod unauthenticated;

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No identity: the identity layer did not run or found none.
    #[error("no authenticated caller to admit")]
    NoCaller,
    /// Every place is taken.
    #[error("overloaded: {limit} calls in flight")]
    Overloaded {
        /// `max_calls`.
        limit: usize,
    },
    /// The caller holds as many places as one caller may.
    #[error("caller overloaded: {limit} calls in flight")]
    CallerOverloaded {
        /// The caller's limit: `max_calls_per_caller`, or
        /// `max_calls_per_unmapped_caller` for an unmapped identity.
        limit: usize,
    },
    /// The request message did not arrive in time.
    #[error("the request message did not arrive within {timeout:?}")]
    ReceiveTimeout {
        /// The receive timeout.
        timeout: Duration,
    },
    /// The request message is larger than the gateway accepts.
    #[error("the request message is too large (limit {limit} bytes)")]
    MessageTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The caller went away while its message was arriving.
    #[error("the caller went away: {0}")]
    Cancelled(String),
    /// Every health or reflection stream allowed (on the connection, or in
    /// all) is open.
    #[error("too many health and reflection streams: {limit} {scope}")]
    StreamsExhausted {
        /// Streams allowed at once in that scope.
        limit: usize,
        /// `per connection` or `in all`.
        scope: &'static str,
    },
    /// A health or reflection stream sent nothing for too long.
    #[error("the stream sent nothing for {idle:?}")]
    StreamIdle {
        /// The idle timeout.
        idle: Duration,
    },
    /// A health or reflection stream reached its deadline.
    #[error("the stream reached its deadline ({limit:?})")]
    StreamDeadline {
        /// The time it had.
        limit: Duration,
    },
}

/// Turns a refusal into the HTTP response that carries its gRPC status.
pub type Reject = fn(Error) -> http::Response<tonic::body::Body>;

/// Turns an ended stream into the trailers that carry its gRPC status.
pub type Trailers = fn(Error) -> http::HeaderMap;

/// Whether a principal maps the identity (else every call of it is denied).
pub type IsMapped = Arc<dyn Fn(&CallerId) -> bool + Send + Sync>;

/// The refusal functions (`error.rs`'s mapping): the layer knows nothing
/// of gRPC statuses.
#[derive(Debug, Clone, Copy)]
pub struct Refusals {
    /// Before the service ran.
    pub reject: Reject,
    /// A stream cut short.
    pub trailers: Trailers,
}

/// Paths admitted here: the gateway's own service.
const ADMITTED_PREFIX: &str = "/ecsgateway.v1.";

/// The gRPC frame header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// How many calls are admitted, per caller and in all, and how long and
/// large their messages may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls served at once.
    pub max_calls: usize,
    /// Calls one identity may have served at once, and messages it may
    /// have arriving at once.
    pub max_calls_per_caller: usize,
    /// The same for an identity that no principal maps; all of them
    /// together get `max_calls_per_caller`.
    pub max_calls_per_unmapped_caller: usize,
    /// Longest wait for a call's request message.
    pub receive_timeout: Duration,
    /// Largest request message, bytes.
    pub max_message_size: usize,
    /// Bounds of health and reflection streams, which take no place.
    pub unauthenticated: unauthenticated::Limits,
}

/// The largest request message a call may send: the documented parameters
/// fit many times over.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_calls: 512,
            max_calls_per_caller: 128,
            max_calls_per_unmapped_caller: 4,
            receive_timeout: Duration::from_secs(5),
            max_message_size: MAX_MESSAGE_SIZE,
            unauthenticated: unauthenticated::Limits::default(),
        }
    }
}

/// A call's place, in the request's extensions. The handler hands a clone
/// to work that outlives the call (the detached ECS call), so a caller who
/// goes away does not free the place early.
#[derive(Debug, Clone)]
pub struct Permit(#[allow(dead_code)] Arc<Place>);

/// What a permit holds: a place among all, and its caller's share.
#[derive(Debug)]
struct Place {
    _all: OwnedSemaphorePermit,
    _share: CallerShare,
}

/// Who a share is counted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ShareKey {
    /// One identity.
    Caller(String),
    /// Every identity that no principal maps, together.
    Unmapped,
}

/// Counts per key, each under its own limit; an entry exists only while
/// its count is above zero, so a map is never larger than what it counts.
#[derive(Debug)]
pub(crate) struct Counts<K: std::hash::Hash + Eq>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: std::hash::Hash + Eq + Clone> Counts<K> {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(HashMap::new())))
    }

    /// One more for `key`, unless it has `limit` already.
    pub(crate) fn take(&self, key: K, limit: usize) -> Option<Counted<K>> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Counted {
            counts: self.0.clone(),
            key,
        })
    }

    #[cfg(test)]
    pub(crate) fn get(&self, key: &K) -> Option<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }
}

/// One counted for a key, given back on drop.
#[derive(Debug)]
pub(crate) struct Counted<K: std::hash::Hash + Eq> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: std::hash::Hash + Eq> Drop for Counted<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A caller's share of one pool, counted for the identity and, for an
/// identity no principal maps, also for the unmapped identities together;
/// given back on drop.
#[derive(Debug)]
struct CallerShare {
    _own: Counted<ShareKey>,
    _unmapped: Option<Counted<ShareKey>>,
}

/// A pool of places: a limit in all, and the shares of it per caller.
#[derive(Debug)]
struct Pool {
    all: Arc<Semaphore>,
    shares: Counts<ShareKey>,
}

impl Pool {
    fn new(size: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(size)),
            shares: Counts::new(),
        }
    }

    /// A caller's share, or the refusal.
    fn share(
        &self,
        caller: &CallerId,
        mapped: bool,
        limits: &Limits,
    ) -> Result<CallerShare, Error> {
        let refused = |limit| Error::CallerOverloaded { limit };
        if mapped {
            let own = self
                .shares
                .take(
                    ShareKey::Caller(caller.to_string()),
                    limits.max_calls_per_caller,
                )
                .ok_or_else(|| refused(limits.max_calls_per_caller))?;
            return Ok(CallerShare {
                _own: own,
                _unmapped: None,
            });
        }
        let own = self
            .shares
            .take(
                ShareKey::Caller(caller.to_string()),
                limits.max_calls_per_unmapped_caller,
            )
            .ok_or_else(|| refused(limits.max_calls_per_unmapped_caller))?;
        let unmapped = self
            .shares
            .take(ShareKey::Unmapped, limits.max_calls_per_caller)
            .ok_or_else(|| refused(limits.max_calls_per_unmapped_caller))?;
        Ok(CallerShare {
            _own: own,
            _unmapped: Some(unmapped),
        })
    }

    /// A place and the caller's share, or why there is none. On refusal
    /// what was taken is given back.
    fn take(&self, caller: &CallerId, mapped: bool, limits: &Limits) -> Result<Place, Error> {
        let share = self.share(caller, mapped, limits)?;
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded {
                limit: limits.max_calls,
            })?;
        Ok(Place {
            _all: all,
            _share: share,
        })
    }
}

/// Every place, shared by every connection: the pool of calls admitted and
/// the pool of messages arriving, under the same limits.
struct Capacity {
    limits: Limits,
    calls: Pool,
    arriving: Pool,
    is_mapped: IsMapped,
}

impl std::fmt::Debug for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capacity")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Capacity {
    fn new(limits: Limits, is_mapped: IsMapped) -> Self {
        Self {
            calls: Pool::new(limits.max_calls),
            arriving: Pool::new(limits.max_calls),
            limits,
            is_mapped,
        }
    }

    /// A place for `caller`, or why there is none.
    fn admit(&self, caller: &CallerId, mapped: bool) -> Result<Permit, Error> {
        self.calls
            .take(caller, mapped, &self.limits)
            .map(|place| Permit(Arc::new(place)))
    }
}

/// The admission layer: admits calls to the gateway's own service within
/// its [`Limits`] and bounds health and reflection apart; it runs after
/// the identity layer, whose caller it counts.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    capacity: Arc<Capacity>,
    unauthenticated: Arc<unauthenticated::Streams>,
    refusals: Refusals,
}

impl AdmissionLayer {
    /// Admits calls within `limits`, telling mapped identities from others
    /// by `is_mapped`; refusals are answered by `refusals`.
    pub fn new(limits: Limits, is_mapped: IsMapped, refusals: Refusals) -> Self {
        Self {
            unauthenticated: Arc::new(unauthenticated::Streams::new(limits.unauthenticated)),
            capacity: Arc::new(Capacity::new(limits, is_mapped)),
            refusals,
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            capacity: self.capacity.clone(),
            unauthenticated: self.unauthenticated.clone(),
            refusals: self.refusals,
        }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    capacity: Arc<Capacity>,
    unauthenticated: Arc<unauthenticated::Streams>,
    refusals: Refusals,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Receives the whole request message within the limits.
async fn receive(body: tonic::body::Body, limits: &Limits) -> Result<tonic::codegen::Bytes, Error> {
    let timeout = limits.receive_timeout;
    let limit = limits.max_message_size + FRAME_HEADER;
    let collected =
        tokio::time::timeout(timeout, http_body_util::Limited::new(body, limit).collect())
            .await
            .map_err(|_| Error::ReceiveTimeout { timeout })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Error::MessageTooLarge {
                limit: limits.max_message_size,
            })
        }
        // The stream was reset or the connection closed: the caller went
        // away.
        Err(error) => Err(Error::Cancelled(error.to_string())),
    }
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Admission<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is the one not yet polled ready: keep the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !request.uri().path().starts_with(ADMITTED_PREFIX) {
            return self
                .unauthenticated
                .clone()
                .serve(request, inner, self.refusals);
        }
        let capacity = self.capacity.clone();
        let reject = self.refusals.reject;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // The identity layer runs first and puts the caller in; without
            // one, nothing is admitted (all anonymous calls would otherwise
            // share one caller's capacity).
            let Some(caller) = parts.extensions.get::<Caller>().map(|c| c.identity.clone()) else {
                return Ok(reject(Error::NoCaller));
            };
            let mapped = (capacity.is_mapped)(&caller);
            // A share of the messages arriving is taken before the first
            // byte is read: over it, the stream is refused, and what the
            // connection buffered for it is dropped with it.
            let admitted = match capacity.arriving.take(&caller, mapped, &capacity.limits) {
                Ok(arriving) => {
                    let received = receive(body, &capacity.limits).await;
                    drop(arriving);
                    received.and_then(|message| {
                        capacity
                            .admit(&caller, mapped)
                            .map(|permit| (message, permit))
                    })
                }
                Err(error) => Err(error),
            };
            match admitted {
                Ok((message, permit)) => {
                    parts.extensions.insert(permit.clone());
                    let body = tonic::body::Body::new(http_body_util::Full::new(message));
                    let response = inner.call(http::Request::from_parts(parts, body)).await;
                    drop(permit);
                    response
                }
                Err(error) => {
                    tracing::info!(%error, "call not admitted");
                    Ok(reject(error))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(max_calls: usize, max_calls_per_caller: usize) -> Capacity {
        Capacity::new(
            Limits {
                max_calls,
                max_calls_per_caller,
                max_calls_per_unmapped_caller: 1,
                receive_timeout: Duration::from_secs(1),
                max_message_size: 1024,
                unauthenticated: unauthenticated::Limits::default(),
            },
            Arc::new(|_| true),
        )
    }

    fn id(name: &str) -> CallerId {
        CallerId::Spiffe(name.to_owned())
    }

    #[test]
    fn one_caller_cannot_take_every_place() {
        let p = capacity(4, 2);
        let a1 = p.admit(&id("a"), true).unwrap();
        let _a2 = p.admit(&id("a"), true).unwrap();
        assert!(matches!(
            p.admit(&id("a"), true),
            Err(Error::CallerOverloaded { limit: 2 })
        ));
        let _b1 = p.admit(&id("b"), true).unwrap();
        let _b2 = p.admit(&id("b"), true).unwrap();
        assert!(matches!(
            p.admit(&id("c"), true),
            Err(Error::Overloaded { limit: 4 })
        ));
        // A refusal for lack of places gives the caller's share back.
        let c = ShareKey::Caller("c".into());
        assert_eq!(p.calls.shares.get(&c), None);
        drop(a1);
        p.admit(&id("c"), true).unwrap();
        assert_eq!(p.calls.shares.get(&ShareKey::Caller("a".into())), Some(1));
    }

    #[test]
    fn unmapped_identities_share_one_callers_places() {
        let p = capacity(8, 2);
        // Each unmapped identity gets one; all of them together two.
        let _x = p.admit(&id("x"), false).unwrap();
        assert!(matches!(
            p.admit(&id("x"), false),
            Err(Error::CallerOverloaded { limit: 1 })
        ));
        let _y = p.admit(&id("y"), false).unwrap();
        assert!(matches!(
            p.admit(&id("z"), false),
            Err(Error::CallerOverloaded { limit: 1 })
        ));
        assert_eq!(p.calls.shares.get(&ShareKey::Caller("z".into())), None);
        // Mapped callers keep theirs.
        p.admit(&id("netops"), true).unwrap();
    }
}
