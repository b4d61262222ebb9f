//! The server span of every call and W3C trace context propagation.
//!
//! [`TraceLayer`] is the outermost layer: it opens the server span (named
//! `ecsgateway.v1.InstanceNetworkService/ModifyInstanceNetworkSpec`, with
//! OpenTelemetry's `rpc.*` attributes), makes the caller's `traceparent` (and
//! baggage) its parent, counts the call and records its gRPC status code.
//! The stages open child spans inside it. [`inject`] puts the current trace
//! context (never the caller's baggage) into the upstream request's headers.

/// The target of the stage spans inside a call (identity, validate,
/// authorize, sign, the ECS attempts). They go to the traces; the log lines
/// carry only the call's server span: the JSON log layer re-renders a span's
/// fields on every `record`, and a call records a dozen stage fields.
pub const STAGE: &str = "ecs_gateway::stage";

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::Metrics;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Injects the current span's W3C trace context (`traceparent`,
/// `tracestate`) into `headers`, and nothing else: the caller's `baggage`
/// is the caller's, and never travels to ECS.
pub fn inject(headers: &mut http::HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator as _;
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// The current trace and span ids (32 and 16 hex digits), when an
/// OpenTelemetry trace is being recorded.
pub fn current_ids() -> Option<(String, String)> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// The current trace id, when an OpenTelemetry trace is being recorded.
pub fn current_trace_id() -> Option<String> {
    current_ids().map(|(trace, _)| trace)
}

/// Marks a span failed, with the error's code, per OpenTelemetry's
/// conventions (`otel.status_code`, `error.type`).
pub fn fail(span: &tracing::Span, code: &str) {
    span.record("otel.status_code", "error");
    span.record("error.type", code);
}

/// Codes that mark a server span as failed, per the RPC semantic
/// conventions: the server's own failures, not the caller's mistakes.
fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// The tower layer opening the server span.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    metrics: Arc<Metrics>,
}

impl TraceLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// When the call arrived, in the request's extensions: deadlines count from
/// here, as the caller's own timer does.
#[derive(Debug, Clone, Copy)]
pub struct CallStart(pub Instant);

/// The methods that may become metric labels and span names: the real
/// methods of the services served. Anything else, however well-formed, is
/// `unknown`, so a caller cannot mint label values (each would be a counter
/// and a histogram, forever).
const KNOWN_METHODS: &[(&str, &str)] = &[
    (
        "ecsgateway.v1.InstanceNetworkService",
        "ModifyInstanceNetworkSpec",
    ),
    ("ecsgateway.v1.AuthorizationService", "Explain"),
    (
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
    ),
];

fn known_method(path: &str) -> (&'static str, &'static str) {
    let called = path.strip_prefix('/').and_then(|p| p.split_once('/'));
    KNOWN_METHODS
        .iter()
        .find(|known| called == Some(**known))
        .copied()
        .unwrap_or(("unknown", "unknown"))
}

/// Counts the call and closes its span whatever happens, including when the
/// caller goes away and the call's future is dropped (then: CANCELLED).
struct CallGuard {
    metrics: Arc<Metrics>,
    span: tracing::Span,
    method: &'static str,
    started: Instant,
    code: Option<tonic::Code>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            fail(&self.span, super::metrics::code_name(code));
        }
        self.metrics.in_flight.dec();
        self.metrics
            .record_call(self.method, code, self.started.elapsed());
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        request.extensions_mut().insert(CallStart(started));
        // Probes every few seconds would drown the traces and the metrics.
        if request.uri().path().starts_with("/grpc.health.v1.") {
            return Box::pin(self.inner.call(request));
        }
        let (service, method) = known_method(request.uri().path());
        let span = tracing::info_span!(
            target: "ecs_gateway::server",
            "rpc",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            error.type = Empty,
            trace_id = Empty,
            span_id = Empty,
            enduser.id = Empty,
            cloud.region = Empty,
            ecs.instance_id = Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
        // Log lines inside the call carry these (JSON logs list the spans).
        if let Some((trace_id, span_id)) = span.in_scope(current_ids) {
            span.record("trace_id", trace_id.as_str());
            span.record("span_id", span_id.as_str());
        }
        self.metrics.in_flight.inc();
        let guard = CallGuard {
            metrics: self.metrics.clone(),
            span: span.clone(),
            method,
            started,
            code: None,
        };
        let call = self.inner.call(request).instrument(span);
        Box::pin(async move {
            // Move the whole guard in (a closure would capture only the
            // field it assigns, and the guard would drop at once).
            let mut guard = guard;
            let result = call.await;
            guard.code = Some(match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            });
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_become_labels() {
        assert_eq!(
            known_method("/ecsgateway.v1.InstanceNetworkService/ModifyInstanceNetworkSpec"),
            (
                "ecsgateway.v1.InstanceNetworkService",
                "ModifyInstanceNetworkSpec"
            )
        );
        // The newcomer's walkthrough: Explain was counted as `unknown`.
        assert_eq!(
            known_method("/ecsgateway.v1.AuthorizationService/Explain"),
            ("ecsgateway.v1.AuthorizationService", "Explain")
        );
        assert_eq!(known_method("/x/random-123"), ("unknown", "unknown"));
        assert_eq!(
            known_method("/ecsgateway.v1.InstanceNetworkService/Minted123"),
            ("unknown", "unknown")
        );
        assert_eq!(
            known_method("/ecsgateway.v1.InstanceNetworkService/a b"),
            ("unknown", "unknown")
        );
        assert_eq!(known_method("/"), ("unknown", "unknown"));
    }
}
