//! Load shedding: at most `limit` calls are served at once; one more is
//! refused at once with RESOURCE_EXHAUSTED (and RetryInfo) rather than
//! queued. A queue without bound turns a burst into latency for everyone
//! and memory for the gateway; a fast refusal lets the caller back off or
//! go to another replica. Health checks are never shed, so an overloaded
//! pod is not also killed by its liveness probe.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A call's place among the `limit`, in the request's extensions. The
/// handler hands a clone to work that outlives the call (the detached ECS
/// call), so a caller who goes away does not free the place early.
#[derive(Debug, Clone)]
pub struct Permit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// The tower layer.
#[derive(Debug, Clone)]
pub struct OverloadLayer {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl OverloadLayer {
    /// Serves at most `limit` calls at once.
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

impl<S> tower::Layer<S> for OverloadLayer {
    type Service = Overload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Overload {
            inner,
            permits: self.permits.clone(),
            limit: self.limit,
        }
    }
}

/// The service of [`OverloadLayer`].
#[derive(Debug, Clone)]
pub struct Overload<S> {
    inner: S,
    permits: Arc<Semaphore>,
    limit: usize,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Overload<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/grpc.health.v1.") {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let status: tonic::Status =
                crate::error::Error::Overloaded { limit: self.limit }.into();
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let permit = Permit(Arc::new(permit));
        request.extensions_mut().insert(permit.clone());
        let call = self.inner.call(request);
        Box::pin(async move {
            let _permit = permit;
            call.await
        })
    }
}
