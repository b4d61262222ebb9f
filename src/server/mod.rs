//! The tonic server: where the request flow's order is written, once.
//!
//! ```text
//! gRPC call ──► trace ──► identity ──► admission ──► validate ──► authorize ──► sign ──► upstream ──► response
//! ```
//!
//! The layers (trace, [`identity::IdentityLayer`],
//! [`admission::AdmissionLayer`]) are stacked in [`serve_on`]; the stages
//! run in [`Gateway`]'s handler in this order, so that authorization sees a
//! typed, valid request (the caller is already authenticated, so a
//! validation error leaks nothing). Errors become statuses in `error.rs`
//! only.
//!
//! - this file: the [`Gateway`] service and its handler, a few named steps;
//! - `authorize.rs`: stage 3, the decision (with the shadow comparison);
//! - `forward.rs`: stages 4 and 5, the detached upstream call and its answer;
//! - `explain.rs`: `AuthorizationService/Explain`, the policy simulator;
//! - `start.rs`: building the gateway from its settings, binding, `run`;
//! - `serve.rs`: the layer stack, health, reflection, draining;
//! - `reload.rs`: policy reloads on change and on SIGHUP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::field::Empty;

use crate::error::Error;
use crate::identity::{self, Caller};
use crate::pb;
use crate::pb::instance_network_service_server::InstanceNetworkService;
use crate::telemetry::{self, Metrics};
use crate::{admission, lookup, policy, upstream, validate};

mod authorize;
mod explain;
mod forward;
mod reload;
mod serve;
mod start;

pub use explain::response as explain_response;
pub use reload::{reload_policies, watch_policies};
pub use serve::{MAX_MESSAGE_SIZE, serve_on};
pub use start::{
    ADMIN_LISTEN_SETTING, LISTEN_SETTING, RunError, Stack, bind, build, run, shutdown_signal,
};

/// The gRPC service: both rpcs' handlers, and what they share.
#[derive(Debug, Clone)]
pub struct Gateway {
    upstream: Arc<upstream::Client>,
    authorizer: Arc<policy::Authorizer>,
    /// Candidate policies decided beside those in force, never enforced;
    /// empty while off, or while they cannot be loaded.
    shadow: Arc<arc_swap::ArcSwapOption<policy::Authorizer>>,
    /// Instances' attributes from ECS; `None`: from entities.json.
    lookup: Option<Arc<lookup::Lookup>>,
    metrics: Arc<Metrics>,
    /// Set when the shutdown grace period is over: calls still waiting for
    /// ECS are answered UNAVAILABLE (their ClientToken makes a retry safe).
    cutoff: Arc<tokio::sync::watch::Sender<bool>>,
    /// The deadline of calls that set none; the server cancels calls then,
    /// so the gateway answers before it.
    request_timeout: Duration,
}

impl Gateway {
    /// A gateway authorizing with `authorizer`, forwarding through
    /// `upstream` and counting into `metrics`.
    pub fn new(
        upstream: upstream::Client,
        authorizer: Arc<policy::Authorizer>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            upstream: Arc::new(upstream),
            authorizer,
            shadow: Arc::new(arc_swap::ArcSwapOption::empty()),
            lookup: None,
            metrics,
            cutoff: Arc::new(tokio::sync::watch::channel(false).0),
            request_timeout: crate::config::ServerSettings::default().request_timeout,
        }
    }

    /// The same gateway, for a server that cancels calls after `timeout`.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same gateway, also deciding every call with `shadow`'s (candidate)
    /// policies: a disagreement is logged and counted, never enforced.
    pub fn with_shadow(self, shadow: Option<Arc<policy::Authorizer>>) -> Self {
        self.shadow.store(shadow);
        self
    }

    /// The same gateway, reading instances' attributes from ECS
    /// (`DescribeInstances`) when `config` is set.
    pub fn with_lookup(mut self, config: Option<&lookup::Config>) -> Self {
        self.lookup = config.map(|config| {
            Arc::new(lookup::Lookup::new(
                config,
                self.upstream.clone(),
                self.authorizer.account_id().to_owned(),
                self.metrics.clone(),
            ))
        });
        self
    }

    /// The shadow authorizer, for reloads.
    pub fn shadow(&self) -> Option<Arc<policy::Authorizer>> {
        self.shadow.load_full()
    }

    /// Answers every call still in flight: the grace period is over.
    pub fn cut_off(&self) {
        self.cutoff.send_replace(true);
    }

    /// Starts fetching, and keeping fresh, every account's credentials.
    pub fn start_credentials(&self) {
        self.upstream.start_credentials();
    }

    /// The authorizer, for reloads.
    pub fn authorizer(&self) -> &Arc<policy::Authorizer> {
        &self.authorizer
    }
}

#[tonic::async_trait]
impl InstanceNetworkService for Gateway {
    async fn modify_instance_network_spec(
        &self,
        request: Request<pb::ModifyInstanceNetworkSpecRequest>,
    ) -> Result<Response<pb::ModifyInstanceNetworkSpecResponse>, Status> {
        // 1. identity: resolved by the layer.
        let call = self.begin(&request)?;
        // 2. validate
        let request = self.served(validated(validate::modify_request, request.into_inner())?)?;
        call.name_instance(&request.region_id, &request.instance_id);
        // 3. authorize (the shadow policies decide beside, never enforced)
        let decision = self.authorize(&call, &request).await?;
        // 4. sign and 5. upstream, detached from the caller
        let forwarding = self.forward(&call, request, decision);
        let reply = forwarding
            .answer(self.cutoff.subscribe(), call.limit)
            .await?;
        Ok(Response::new(reply))
    }
}

impl Gateway {
    /// Refuses, before anything is decided or sent, a call to an account
    /// the gateway does not serve; a call that names the default account is
    /// made one that names none, so that both spellings are one call (one
    /// ECS ClientToken, one lookup).
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` naming `account_id`.
    fn served(
        &self,
        mut request: validate::ModifyRequest,
    ) -> Result<validate::ModifyRequest, Error> {
        match request.account_id.as_deref() {
            Some(account) if account == self.authorizer.account_id() => {
                request.account_id = None;
                Ok(request)
            }
            Some(account) if !self.upstream.serves(account) => {
                Err(Error::Invalid(validate::Rejection::single(
                    "account_id",
                    "InvalidAccountId.NotServed",
                    format!(
                        "account {account} is not served by this gateway: expected empty (the default account) or an account listed in its [[accounts]]"
                    ),
                )))
            }
            _ => Ok(request),
        }
    }
}

/// A call as the layers handed it over: who is calling, when it arrived,
/// how long it may take, its trace id and its admission place.
#[derive(Debug)]
struct Call {
    /// The server span, opened by `telemetry::trace::TraceLayer`.
    span: tracing::Span,
    caller: Caller,
    arrived: Instant,
    /// The caller's `grpc-timeout` or the server's own limit, whichever is
    /// sooner, counted from `arrived`.
    limit: Duration,
    trace_id: String,
    /// Held by the forwarding task until ECS has answered.
    permit: Option<admission::Permit>,
}

impl Gateway {
    /// Stage 1's result and the call's bounds, recorded on its span.
    ///
    /// The deadline is the caller's, or the server's own (when the server
    /// cancels the call), whichever is sooner, counted from the call's
    /// arrival, as the caller's timer counts: time spent verifying a token
    /// or receiving the message is already gone.
    ///
    /// # Errors
    ///
    /// No caller: the identity layer did not run, which must never let a
    /// call through.
    fn begin<T>(&self, request: &Request<T>) -> Result<Call, Error> {
        let extensions = request.extensions();
        let caller = extensions
            .get::<Caller>()
            .cloned()
            .ok_or(Error::Identity(identity::Error::Missing))?;
        let arrived = extensions
            .get::<telemetry::trace::CallStart>()
            .map_or_else(Instant::now, |s| s.0);
        let limit = grpc_timeout(request.metadata())
            .map_or(self.request_timeout, |d| d.min(self.request_timeout));
        let call = Call {
            span: tracing::Span::current(),
            caller,
            arrived,
            limit,
            trace_id: trace_id(request.metadata()),
            permit: extensions.get::<admission::Permit>().cloned(),
        };
        // Log lines of this call carry the trace id, recorded or not.
        call.span.record("trace_id", call.trace_id.as_str());
        call.span
            .record("enduser.id", tracing::field::display(&call.caller.identity));
        Ok(call)
    }
}

impl Call {
    /// What is left of the call's time.
    fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.arrived.elapsed())
    }

    /// Records the instance the call is about on its span.
    fn name_instance(&self, region_id: &str, instance_id: &str) {
        self.span.record("ecs.instance_id", instance_id);
        self.span.record("cloud.region", region_id);
    }
}

/// Stage 2, in its span: `validate` applied to the call's message.
fn validated<M, T>(
    validate: impl FnOnce(M) -> Result<T, validate::Rejection>,
    message: M,
) -> Result<T, Error> {
    let stage = tracing::info_span!(
        target: telemetry::trace::STAGE,
        "validate",
        otel.status_code = Empty,
        error.type = Empty,
    );
    let _entered = stage.enter();
    validate(message).map_err(|rejection| {
        telemetry::trace::fail(&stage, rejection.code());
        Error::from(rejection)
    })
}

/// The trace id of the call: the recorded OpenTelemetry trace's, else the
/// incoming W3C `traceparent`'s, else a new one.
fn trace_id(metadata: &tonic::metadata::MetadataMap) -> String {
    if let Some(id) = telemetry::trace::current_trace_id() {
        return id;
    }
    metadata
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .filter(|id| {
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && *id != "0".repeat(32)
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// Reads the caller's deadline from `grpc-timeout` (`<digits><unit>`, at most
/// 8 digits, units H M S m u n), per gRPC over HTTP/2.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grpc_timeout_units() {
        let mut m = tonic::metadata::MetadataMap::new();
        for (value, expected) in [
            ("2H", Some(Duration::from_secs(7200))),
            ("3M", Some(Duration::from_secs(180))),
            ("10S", Some(Duration::from_secs(10))),
            ("250m", Some(Duration::from_millis(250))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("123456789S", None),
            ("S", None),
            ("10x", None),
            ("-1S", None),
        ] {
            m.insert("grpc-timeout", value.parse().unwrap());
            assert_eq!(grpc_timeout(&m), expected, "{value}");
        }
    }
}
