//! Admission and load shedding, between identity and the service.
//!
//! A call is admitted in three steps, each bounded, so that no caller can
//! hold what others need:
//!
//! 1. its request message is received within `receive_timeout` and at most
//!    `max_message_size` bytes, before it
//!    holds anything: streams that send headers and never a body (or send it
//!    a byte at a time) take no place, and are answered DEADLINE_EXCEEDED
//!    when the timeout ends;
//! 2. its caller (the authenticated identity) holds fewer than
//!    `max_calls_per_caller` places: one identity cannot take every place;
//! 3. a place among `max_calls` is free.
//!
//! A call beyond either limit is refused at once with RESOURCE_EXHAUSTED
//! (and RetryInfo) rather than queued: a queue without bound turns a burst
//! into latency for everyone and memory for the gateway, a fast refusal
//! lets the caller back off or go to another replica. A caller that goes
//! away while its message is arriving is answered (and counted) CANCELLED.
//!
//! Only the gateway's own service is admitted here: health checks are never
//! shed (an overloaded pod must not also be killed by its liveness probe),
//! and reflection is a stream that reaches no upstream.
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

use crate::identity::Caller;

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No identity: the identity layer did not run or found none.
    #[error("no authenticated caller to admit")]
    NoCaller,
    /// Every place is taken.
    #[error("overloaded: {limit} calls in flight")]
    Overloaded {
        /// The concurrency limit.
        limit: usize,
    },
    /// The caller holds as many places as one caller may.
    #[error("caller overloaded: {limit} calls in flight")]
    CallerOverloaded {
        /// The per-caller limit.
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
}

/// Turns a refusal into the HTTP response that carries its gRPC status.
pub type Reject = fn(Error) -> http::Response<tonic::body::Body>;

/// Paths admitted here: the gateway's own service.
const ADMITTED_PREFIX: &str = "/ecsgateway.v1.";

/// The gRPC frame header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// Admission limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls served at once.
    pub max_calls: usize,
    /// Calls one identity may have served at once.
    pub max_calls_per_caller: usize,
    /// Longest wait for a call's request message.
    pub receive_timeout: Duration,
    /// Largest request message, bytes.
    pub max_message_size: usize,
}

/// A call's place, in the request's extensions. The handler hands a clone
/// to work that outlives the call (the detached ECS call), so a caller who
/// goes away does not free the place early.
#[derive(Debug, Clone)]
pub struct Permit(#[allow(dead_code)] Arc<Held>);

/// What a permit holds: a place among all, and one of its caller's.
#[derive(Debug)]
struct Held {
    _place: OwnedSemaphorePermit,
    _share: Share,
}

/// One of a caller's places, given back on drop.
#[derive(Debug)]
struct Share {
    shares: Arc<Mutex<HashMap<String, usize>>>,
    caller: String,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = shares.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                shares.remove(&self.caller);
            }
        }
    }
}

/// The places, shared by every connection.
#[derive(Debug)]
struct Places {
    limits: Limits,
    all: Arc<Semaphore>,
    /// Places held per caller; an entry exists only while it holds one,
    /// so the map is never larger than `max_calls`.
    shares: Arc<Mutex<HashMap<String, usize>>>,
}

impl Places {
    /// A place for `caller`, or why there is none.
    fn admit(&self, caller: String) -> Result<Permit, Error> {
        let share = {
            let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
            let held = shares.entry(caller.clone()).or_insert(0);
            if *held >= self.limits.max_calls_per_caller {
                return Err(Error::CallerOverloaded {
                    limit: self.limits.max_calls_per_caller,
                });
            }
            *held += 1;
            Share {
                shares: self.shares.clone(),
                caller,
            }
        };
        // On refusal the share is dropped, and given back, here.
        let place = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded {
                limit: self.limits.max_calls,
            })?;
        Ok(Permit(Arc::new(Held {
            _place: place,
            _share: share,
        })))
    }
}

/// The tower layer.
#[derive(Debug, Clone)]
pub struct OverloadLayer {
    places: Arc<Places>,
    reject: Reject,
}

impl OverloadLayer {
    /// Admits calls within `limits`; refusals are answered by `reject`.
    pub fn new(limits: Limits, reject: Reject) -> Self {
        Self {
            places: Arc::new(Places {
                all: Arc::new(Semaphore::new(limits.max_calls)),
                shares: Arc::new(Mutex::new(HashMap::new())),
                limits,
            }),
            reject,
        }
    }
}

impl<S> tower::Layer<S> for OverloadLayer {
    type Service = Overload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Overload {
            inner,
            places: self.places.clone(),
            reject: self.reject,
        }
    }
}

/// The service of [`OverloadLayer`].
#[derive(Debug, Clone)]
pub struct Overload<S> {
    inner: S,
    places: Arc<Places>,
    reject: Reject,
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

impl<S> tower::Service<http::Request<tonic::body::Body>> for Overload<S>
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
        if !request.uri().path().starts_with(ADMITTED_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        // The clone is the one not yet polled ready: keep the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let places = self.places.clone();
        let reject = self.reject;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // The identity layer runs first and puts the caller in; without
            // one, nothing is admitted (all anonymous calls would otherwise
            // share one caller's places).
            let Some(caller) = parts
                .extensions
                .get::<Caller>()
                .map(|c| c.identity.to_string())
            else {
                return Ok(reject(Error::NoCaller));
            };
            let admitted = match receive(body, &places.limits).await {
                Ok(message) => places.admit(caller).map(|permit| (message, permit)),
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

    fn places(max_calls: usize, max_calls_per_caller: usize) -> Places {
        Places {
            limits: Limits {
                max_calls,
                max_calls_per_caller,
                receive_timeout: Duration::from_secs(1),
                max_message_size: 1024,
            },
            all: Arc::new(Semaphore::new(max_calls)),
            shares: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    #[test]
    fn one_caller_cannot_take_every_place() {
        let p = places(4, 2);
        let a1 = p.admit("a".into()).unwrap();
        let _a2 = p.admit("a".into()).unwrap();
        assert!(matches!(
            p.admit("a".into()),
            Err(Error::CallerOverloaded { limit: 2 })
        ));
        let _b1 = p.admit("b".into()).unwrap();
        let _b2 = p.admit("b".into()).unwrap();
        assert!(matches!(
            p.admit("c".into()),
            Err(Error::Overloaded { limit: 4 })
        ));
        // A refusal for lack of places gives the caller's share back.
        assert_eq!(p.shares.lock().unwrap().get("c"), None);
        drop(a1);
        p.admit("c".into()).unwrap();
        assert_eq!(p.shares.lock().unwrap().get("a"), Some(&1));
    }
}
