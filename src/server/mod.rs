//! The tonic server: where the request flow's order is written, once.
//!
//! ```text
//! gRPC call ──► identity ──► validate ──► authorize ──► sign ──► upstream ──► response
//! ```
//!
//! Identity is a tower layer ([`identity::IdentityLayer`]) that runs before
//! the service; the other stages run in [`Gateway`]'s handler in this order,
//! so that authorization sees a typed, valid request (the caller is already
//! authenticated, so a validation error leaks nothing). Errors become
//! statuses in `error.rs` only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::identity::{self, Caller};
use crate::pb;
use crate::pb::authorization_service_server::AuthorizationServiceServer;
use crate::pb::instance_network_service_server::{
    InstanceNetworkService, InstanceNetworkServiceServer,
};
use crate::policy::{self, log::After};
use crate::telemetry::{self, Metrics};
use crate::{lookup, upstream, validate};
use tracing::Instrument as _;
use tracing::field::Empty;

mod explain;
pub use explain::response as explain_response;

/// The gRPC service.
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

    /// The authorizer, for reloads.
    pub fn authorizer(&self) -> &Arc<policy::Authorizer> {
        &self.authorizer
    }

    /// When the call arrived, and how long it may take from then: the
    /// caller's `grpc-timeout` or the server's own limit, whichever is
    /// sooner.
    fn deadline<T>(&self, request: &Request<T>) -> (std::time::Instant, Duration) {
        let arrived = request
            .extensions()
            .get::<telemetry::trace::CallStart>()
            .map_or_else(std::time::Instant::now, |s| s.0);
        let limit = grpc_timeout(request.metadata())
            .map_or(self.request_timeout, |d| d.min(self.request_timeout));
        (arrived, limit)
    }

    /// The instance's attributes from ECS, when the lookup is on, within
    /// `deadline`: `None` when it is off or not needed (an identity without
    /// a principal is denied whatever the instance is, and must not spend
    /// the account's ECS quota).
    ///
    /// # Errors
    ///
    /// The caller, or all callers, asked ECS as often as they may: the call
    /// is refused (retryable), not decided.
    async fn look_up(
        &self,
        caller: &Caller,
        request: &validate::ModifyRequest,
        deadline: Duration,
    ) -> Result<Option<Result<Arc<lookup::Answer>, String>>, Error> {
        let Some(lookup) = self.lookup.as_ref() else {
            return Ok(None);
        };
        if !self
            .authorizer
            .store()
            .current()
            .principals
            .contains_key(&caller.identity)
        {
            return Ok(None);
        }
        let stage = tracing::info_span!(
            target: crate::telemetry::trace::STAGE,
            "lookup",
            otel.status_code = Empty,
            error.type = Empty,
        );
        // As the upstream call does, a tenth of the time (at most 50 ms) is
        // kept back, so the gateway's answer reaches the caller first.
        let answer = lookup
            .get(
                &caller.identity,
                &request.region_id,
                &request.instance_id,
                upstream::budget(deadline),
            )
            .instrument(stage.clone())
            .await;
        match answer {
            Ok(answer) => Ok(Some(Ok(answer))),
            Err(lookup::Error::Failed(reason)) => {
                telemetry::trace::fail(&stage, "InstanceLookupFailed");
                Ok(Some(Err(reason)))
            }
            Err(throttled @ lookup::Error::Throttled { .. }) => {
                telemetry::trace::fail(&stage, "GatewayLookupThrottled");
                Err(Error::Lookup(throttled))
            }
        }
    }

    /// Stage 3: the decision, with the instance's attributes from ECS when
    /// the lookup is on and they can change it; the shadow policies decide
    /// beside, never enforced.
    ///
    /// # Errors
    ///
    /// The lookup refused the call (see [`Self::look_up`]).
    async fn decide(
        &self,
        caller: &Caller,
        request: &validate::ModifyRequest,
        deadline: Duration,
        trace_id: &str,
    ) -> Result<policy::Decision, Error> {
        let now = chrono::Utc::now();
        // Denied whatever the instance is: ECS is not asked.
        let early = self
            .lookup
            .as_ref()
            .and_then(|_| self.authorizer.deny_before_lookup(caller, request, now));
        let answer = match early {
            Some(_) => None,
            None => self.look_up(caller, request, deadline).await?,
        };
        let source = match (&early, &answer) {
            (Some(_), _) => lookup::UNASKED,
            (None, answer) => lookup::source(answer.as_ref()),
        };
        let early_denied = early.is_some();
        Ok(self.authorize(false, || {
            let decision =
                early.unwrap_or_else(|| self.authorizer.decide_with(caller, request, now, source));
            if let Some(shadow) = &*self.shadow.load() {
                // Without the instance's attributes the candidate can be
                // compared only where it, too, decides without them: a
                // candidate that would allow by tag or billing must not be
                // counted as agreeing.
                let candidate = if early_denied {
                    shadow.deny_before_lookup(caller, request, now)
                } else {
                    Some(shadow.decide_with(caller, request, now, source))
                };
                match candidate {
                    Some(candidate) => {
                        let agree = candidate.outcome == decision.outcome;
                        self.metrics
                            .record_shadow(if agree { "agree" } else { "disagree" });
                        if !agree {
                            policy::log::shadow(&decision, &candidate, trace_id);
                        }
                    }
                    None => self.metrics.record_shadow("not_compared"),
                }
            }
            decision
        }))
    }

    /// Stage 3, in its span: `decide`'s decision, recorded on the span and
    /// counted (Explain's permission checks apart from calls').
    fn authorize(
        &self,
        explain: bool,
        decide: impl FnOnce() -> policy::Decision,
    ) -> policy::Decision {
        let record = |denied_by: Option<&str>| {
            if explain {
                self.metrics.record_explain_decision(denied_by);
            } else {
                self.metrics.record_decision(denied_by);
            }
        };
        let stage = tracing::info_span!(
            target: crate::telemetry::trace::STAGE,
            "authorize",
            authz.decision = Empty,
            authz.principal = Empty,
            authz.actions = Empty,
            authz.layer = Empty,
            authz.deny_type = Empty,
            authz.policies = Empty,
            authz.policy_version = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        let _entered = stage.enter();
        let decision = decide();
        stage.record("authz.principal", decision.principal.as_str());
        stage.record("authz.actions", decision.actions.join(",").as_str());
        stage.record("authz.policy_version", decision.policy_version.as_str());
        match &decision.outcome {
            policy::Outcome::Allow { policies } => {
                stage.record("authz.decision", "Allow");
                stage.record("authz.policies", policies.join(",").as_str());
                record(None);
            }
            policy::Outcome::Deny(denial) => {
                stage.record("authz.decision", "Deny");
                stage.record("authz.layer", denial.layer.as_str());
                stage.record("authz.deny_type", denial.kind.as_str());
                stage.record("authz.policies", denial.policies.join(",").as_str());
                telemetry::trace::fail(&stage, "AccessDenied");
                record(Some(denial.layer.as_str()));
            }
        }
        decision
    }
}

/// Stage 1's result: the caller the identity layer resolved. Its absence
/// means the layer did not run, which must never let a call through.
fn caller<T>(request: &Request<T>) -> Result<Caller, Error> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or(Error::Identity(identity::Error::Missing))
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

#[tonic::async_trait]
impl InstanceNetworkService for Gateway {
    async fn modify_instance_network_spec(
        &self,
        request: Request<pb::ModifyInstanceNetworkSpecRequest>,
    ) -> Result<Response<pb::ModifyInstanceNetworkSpecResponse>, Status> {
        // The server span, opened by telemetry::trace::TraceLayer.
        let span = tracing::Span::current();
        // 1. identity: resolved by the layer.
        let caller = caller(&request)?;
        // The call's deadline: the caller's, or the server's own (when the
        // server cancels the call), whichever is sooner, counted from the
        // call's arrival, as the caller's timer counts: time spent
        // verifying a token or receiving the message is already gone.
        let (arrived, limit) = self.deadline(&request);
        let permit = request
            .extensions()
            .get::<crate::overload::Permit>()
            .cloned();
        let trace_id = trace_id(request.metadata());
        // Log lines of this call carry the trace id, recorded or not.
        span.record("trace_id", trace_id.as_str());
        span.record("enduser.id", tracing::field::display(&caller.identity));

        // 2. validate
        let request = {
            let stage = tracing::info_span!(target: crate::telemetry::trace::STAGE, "validate", otel.status_code = Empty, error.type = Empty);
            let _entered = stage.enter();
            validate::modify_request(request.into_inner()).map_err(|rejection| {
                telemetry::trace::fail(&stage, rejection.code());
                Error::from(rejection)
            })?
        };
        span.record("ecs.instance_id", request.instance_id.as_str());
        span.record("cloud.region", request.region_id.as_str());

        // 3. authorize, with the instance's attributes from ECS when the
        //    lookup is on and they can change the decision.
        let decision = self
            .decide(
                &caller,
                &request,
                limit.saturating_sub(arrived.elapsed()),
                &trace_id,
            )
            .await?;
        if !decision.allowed() {
            policy::log::record(
                &decision,
                &trace_id,
                &request.client_token.value,
                After::default(),
            );
            return Err(Error::Denied(Box::new(decision)).into());
        }

        // What is left of the call's time (the lookup took some).
        let deadline = limit.saturating_sub(arrived.elapsed());
        // 4. sign and 5. upstream (their spans are opened by the client).
        // ECS sees a token derived from the caller's identity and its token
        // (see upstream::ecs_client_token); the caller gets its own back.
        let token = request.client_token.value.clone();
        let mut upstream_request = request;
        upstream_request.client_token.value =
            upstream::ecs_client_token(&caller.identity.to_string(), &token);
        // Detached, so that a caller who goes away after the signed request
        // left still gets the change logged with ECS's request id.
        let upstream = self.upstream.clone();
        let lookup = self.lookup.clone();
        let mut cutoff = self.cutoff.subscribe();
        let logged_token = token.clone();
        let forward = async move {
            // The call's place is held until ECS has answered.
            let _permit = permit;
            let request = upstream_request;
            let result = upstream
                .modify_instance_network_spec(&request, deadline)
                .await;
            // The instance may have changed: the next decision asks ECS.
            if let Some(lookup) = &lookup {
                lookup
                    .forget(&request.region_id, &request.instance_id)
                    .await;
            }
            let ecs_client_token = Some(request.client_token.value.as_str());
            let after = match &result {
                Ok(reply) => After {
                    request_id: Some(&reply.request_id),
                    error_code: None,
                    ecs_client_token,
                },
                Err(upstream::Error::Ecs(e)) => After {
                    request_id: Some(&e.request_id),
                    error_code: Some(&e.code),
                    ecs_client_token,
                },
                Err(_) => After {
                    request_id: None,
                    error_code: Some("UpstreamFailure"),
                    ecs_client_token,
                },
            };
            policy::log::record(&decision, &trace_id, &logged_token, after);
            result
        };
        let task = tokio::spawn(forward.instrument(span.clone()));
        // Whatever happens, the caller's answer carries its token, and it
        // comes before the server's own cancellation at the deadline: the
        // upstream budget already ends before it; this is the backstop.
        let answer_by = tokio::time::sleep(deadline);
        let result = tokio::select! {
            joined = task => joined.map_err(|e| Error::Aborted {
                detail: format!("the upstream call failed: {e}"),
                client_token: token.clone(),
            })?,
            _ = cutoff.wait_for(|cut| *cut) => return Err(Error::ShuttingDown { client_token: token }.into()),
            () = answer_by => Err(upstream::Error::Timeout(limit)),
        };
        let reply = result.map_err(|source| Error::Upstream {
            source,
            client_token: token.clone(),
        })?;
        // The decision log's line already carries the RequestId: one line
        // per call is the audit record, this one is for debugging.
        tracing::debug!(request_id = %reply.request_id, "ECS applied the change");
        Ok(Response::new(pb::ModifyInstanceNetworkSpecResponse {
            order_id: reply.order_id.unwrap_or_default(),
            request_id: reply.request_id,
            client_token: token,
        }))
    }
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

/// Everything `serve` needs, built from the settings.
#[derive(Debug)]
pub struct Parts {
    /// The service.
    pub gateway: Gateway,
    /// Who is calling.
    pub identity: Arc<identity::Resolver>,
    /// TLS, when configured.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Metrics and readiness.
    pub metrics: Arc<Metrics>,
    /// Inbound limits and the shutdown grace period.
    pub settings: crate::config::ServerSettings,
    /// Shadow policies that could not be loaded at start: loaded (and shadow
    /// mode turned on) once they can be ([`watch_policies`]).
    pub shadow_pending: Option<policy::Config>,
}

/// Largest request or response message, bytes: a request is a few hundred.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The admission layer's limits, from the server's settings.
fn admission_limits(settings: &crate::config::ServerSettings) -> crate::overload::Limits {
    crate::overload::Limits {
        max_calls: settings.max_concurrent_calls,
        max_calls_per_caller: settings.max_concurrent_calls_per_caller,
        max_calls_per_unmapped_caller: settings.max_concurrent_calls_per_unmapped_caller,
        receive_timeout: settings.receive_timeout,
        max_message_size: MAX_MESSAGE_SIZE,
        unauthenticated: crate::overload::unauthenticated::Limits {
            max_streams: settings.max_unauthenticated_streams,
            max_streams_per_connection: settings.max_unauthenticated_streams_per_connection,
            idle_timeout: settings.unauthenticated_idle_timeout,
            deadline: settings.request_timeout,
        },
    }
}

/// Whether the policies in force map an identity to a principal.
fn is_mapped(store: Arc<policy::Store>) -> crate::overload::IsMapped {
    Arc::new(move |identity| store.current().principals.contains_key(identity))
}

/// Serves on `listener` (and the admin routes on `admin`, when given) until
/// `shutdown` completes. Then health turns NOT_SERVING and readiness false,
/// new calls are refused, and calls in flight finish.
///
/// # Errors
///
/// The transport fails.
pub async fn serve(
    parts: Parts,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Health and reflection need no identity: their messages are tiny, and
    // a larger announced length is refused before it is buffered.
    let health_service = health_service
        .max_decoding_message_size(crate::overload::unauthenticated::MAX_MESSAGE_SIZE);
    let limit = crate::overload::unauthenticated::MAX_MESSAGE_SIZE;
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = if parts.settings.reflection {
        let configure = tonic_reflection::server::Builder::configure;
        (
            Some(
                reflection(configure())
                    .build_v1()
                    .map_err(RunError::Reflection)?
                    .max_decoding_message_size(limit),
            ),
            Some(
                reflection(configure())
                    .build_v1alpha()
                    .map_err(RunError::Reflection)?
                    .max_decoding_message_size(limit),
            ),
        )
    } else {
        (None, None)
    };

    let metrics = parts.metrics.clone();
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = admin.map(|listener| {
        let router = telemetry::metrics::admin_router(metrics.clone());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = admin_stopped.await;
                })
                .await
        })
    });

    // HTTP/2 limits bound what one connection can hold: streams, header
    // bytes, flow-control windows; keepalive finds dead peers.
    let mut builder = tonic::transport::Server::builder()
        .timeout(parts.settings.request_timeout)
        .max_concurrent_streams(Some(256))
        .http2_max_header_list_size(Some(16 * 1024))
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(1024 * 1024))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_keepalive(Some(Duration::from_secs(60)));
    if let Some(tls) = parts.tls {
        builder = builder.tls_config(tls)?;
    }
    health
        .set_serving::<InstanceNetworkServiceServer<Gateway>>()
        .await;
    health
        .set_serving::<AuthorizationServiceServer<Gateway>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    metrics.set_ready(true);
    let draining_started = Arc::new(tokio::sync::Notify::new());
    let draining = {
        let health = health.clone();
        let metrics = metrics.clone();
        let started = draining_started.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown signal received, draining calls in flight");
            metrics.set_ready(false);
            health
                .set_not_serving::<InstanceNetworkServiceServer<Gateway>>()
                .await;
            health
                .set_not_serving::<AuthorizationServiceServer<Gateway>>()
                .await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            started.notify_one();
        }
    };
    let gateway = parts
        .gateway
        .with_request_timeout(parts.settings.request_timeout);
    let service = InstanceNetworkServiceServer::new(gateway.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let authorization = AuthorizationServiceServer::new(gateway.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let server = builder
        .layer(telemetry::trace::TraceLayer::new(metrics.clone()))
        .layer(identity::IdentityLayer::new(
            parts.identity,
            crate::error::reject_identity,
        ))
        .layer(crate::overload::OverloadLayer::new(
            admission_limits(&parts.settings),
            is_mapped(gateway.authorizer().store().clone()),
            crate::error::ADMISSION,
        ))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(service)
        .add_service(authorization)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            draining,
        );
    let grace = parts.settings.shutdown_grace;
    // Calls in flight get the grace period to finish; then they are cut, so
    // that a stuck upstream cannot hold the pod past its termination.
    let result = tokio::select! {
        result = server => result,
        () = async {
            draining_started.notified().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "grace period over, closing the calls still in flight");
            gateway.cut_off();
            // Let the answers leave before the process goes.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
    };
    let _ = admin_stop.send(());
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    result.map_err(RunError::from)
}

/// Why the gateway could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No credentials were configured.
    #[error(
        "no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
         or ALIBABA_CLOUD_CREDENTIALS_FILE"
    )]
    NoCredentials,
    /// No account ID for the ARNs.
    #[error(
        "no account ID: set ECS_GATEWAY_ACCOUNT_ID (or policy.account_id) to the account owning the instances"
    )]
    NoAccountId,
    /// The credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::Error),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] upstream::BuildError),
    /// Identity could not be set up.
    #[error(transparent)]
    Identity(#[from] identity::BuildError),
    /// The policies could not be loaded.
    #[error(transparent)]
    Policy(#[from] policy::BuildError),
    /// A TLS file could not be read.
    #[error("cannot read TLS file {path}")]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} ({setting})")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Where it is set, for the message.
        setting: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("cannot build gRPC reflection")]
    Reflection(#[source] tonic_reflection::server::Error),
}

impl RunError {
    /// True when the settings are at fault (exit code 64, before any port
    /// is bound).
    pub fn is_config(&self) -> bool {
        !matches!(
            self,
            Self::Bind { .. } | Self::Serve(_) | Self::Reflection(_)
        )
    }
}

fn read_tls(path: &std::path::Path) -> Result<Vec<u8>, RunError> {
    std::fs::read(path).map_err(|source| RunError::Tls {
        path: path.to_owned(),
        source,
    })
}

/// The server's TLS settings: its certificate and key and, for mTLS, the CA
/// that signs client certificates.
fn tls(config: &crate::config::TlsConfig) -> Result<tonic::transport::ServerTlsConfig, RunError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read_tls(&config.cert)?,
        read_tls(&config.key)?,
    ));
    if let Some(ca) = &config.client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read_tls(ca)?))
            .client_auth_optional(!config.require_client_cert);
    }
    Ok(tls)
}

/// Builds the gateway's running parts from `config`.
///
/// # Errors
///
/// Missing or unreadable credentials, policies, keys or certificates.
pub fn build(config: &crate::config::Config) -> Result<Parts, RunError> {
    let credentials = config
        .credentials
        .clone()
        .ok_or(RunError::NoCredentials)?
        .build()?;
    let account_id = config
        .policy
        .account_id
        .clone()
        .ok_or(RunError::NoAccountId)?;
    let authorizer = policy::Config {
        dir: config.policy.dir.clone(),
        account_id,
        dependent_actions: config.policy.dependent_actions.clone(),
    }
    .build()?;
    // Shadow policies are never enforced: a candidate that does not load
    // leaves shadow mode off (said loudly and counted) until it does.
    let shadow_config = config.policy.shadow_dir.as_ref().map(|dir| policy::Config {
        dir: dir.clone(),
        account_id: authorizer.account_id().to_owned(),
        dependent_actions: config.policy.dependent_actions.clone(),
    });
    let (shadow, shadow_pending) = match shadow_config {
        None => (None, None),
        Some(candidate) => match candidate.clone().build() {
            Ok(shadow) => (Some(Arc::new(shadow)), None),
            Err(error) => {
                tracing::error!(%error, dir = %candidate.dir.display(), "the shadow policies cannot be loaded: shadow mode is off until they can");
                (None, Some(candidate))
            }
        },
    };
    let store: Arc<dyn telemetry::metrics::PolicyState> = authorizer.store().clone();
    let metrics = Arc::new(Metrics::new(Some(store)));
    if shadow_pending.is_some() {
        metrics.shadow_load_failures.inc();
    }
    let upstream = config.upstream.clone().build(
        Arc::new(credentials),
        metrics.clone(),
        crate::error::ECS_CODES,
    )?;
    Ok(Parts {
        gateway: Gateway::new(upstream, Arc::new(authorizer), metrics.clone())
            .with_shadow(shadow)
            .with_lookup(config.policy.instance_lookup.as_ref()),
        identity: Arc::new(config.identity.clone().build()?),
        tls: config.tls.as_ref().map(tls).transpose()?,
        metrics,
        settings: config.server.clone(),
        shadow_pending,
    })
}

/// Binds `addr`, with a message naming it on failure.
///
/// # Errors
///
/// The address is taken or not ours.
pub async fn bind(
    addr: std::net::SocketAddr,
    setting: &'static str,
) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            addr,
            setting,
            source,
        })
}

/// How `listen` is set, for a bind error.
pub const LISTEN_SETTING: &str = "--listen, ECS_GATEWAY_LISTEN or listen";
/// How `admin_listen` is set, for a bind error.
pub const ADMIN_LISTEN_SETTING: &str =
    "--admin-listen, ECS_GATEWAY_ADMIN_LISTEN or admin_listen: the admin port (/metrics, /readyz)";

/// Reloads the policies when they change on disk and on SIGHUP, for as long
/// as the returned watcher lives.
pub fn reload_policies(store: &Arc<policy::Store>) -> Option<notify::RecommendedWatcher> {
    #[cfg(unix)]
    {
        let store = store.clone();
        tokio::spawn(async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("cannot listen for SIGHUP");
                return;
            };
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading policies");
                let store = store.clone();
                // Blocking work, serialized with the watcher's reloads.
                let _ = tokio::task::spawn_blocking(move || store.reload()).await;
            }
        });
    }
    match policy::store::watch(store.clone()) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, dir = %store.dir().display(), "cannot watch the policy directory; SIGHUP still reloads");
            None
        }
    }
}

/// Reloads the policies in force and the shadow policies on change, for as
/// long as the returned watchers live; shadow policies that could not be
/// loaded at start are loaded (and shadow mode turned on) on their first
/// change that makes them valid.
pub fn watch_policies(parts: &Parts) -> Vec<notify::RecommendedWatcher> {
    let mut watchers: Vec<_> = reload_policies(parts.gateway.authorizer().store())
        .into_iter()
        .collect();
    if let Some(shadow) = parts.gateway.shadow() {
        watchers.extend(reload_policies(shadow.store()));
    }
    if let Some(candidate) = parts.shadow_pending.clone() {
        watchers.extend(load_shadow_when_valid(
            candidate,
            parts.gateway.shadow.clone(),
            parts.metrics.clone(),
        ));
    }
    watchers
}

/// Watches a shadow directory that did not load; on each change tries
/// again, and once it loads puts it in `slot` and reloads it on change.
fn load_shadow_when_valid(
    candidate: policy::Config,
    slot: Arc<arc_swap::ArcSwapOption<policy::Authorizer>>,
    metrics: Arc<Metrics>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        },
    ) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(%error, "cannot watch the shadow policy directory; shadow mode stays off");
            return None;
        }
    };
    if let Err(error) = watcher.watch(&candidate.dir, notify::RecursiveMode::Recursive) {
        tracing::error!(%error, dir = %candidate.dir.display(), "cannot watch the shadow policy directory; shadow mode stays off");
        return None;
    }
    tokio::spawn(async move {
        let mut loaded = None;
        while loaded.is_none() && rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let attempt = candidate.clone();
            let Ok(built) = tokio::task::spawn_blocking(move || attempt.build()).await else {
                continue;
            };
            match built {
                Ok(shadow) => {
                    let shadow = Arc::new(shadow);
                    tracing::info!(dir = %candidate.dir.display(), version = %shadow.store().current().version, "shadow policies loaded: shadow mode is on");
                    loaded = Some(reload_policies(shadow.store()));
                    slot.store(Some(shadow));
                }
                Err(error) => {
                    metrics.shadow_load_failures.inc();
                    tracing::error!(%error, dir = %candidate.dir.display(), "the shadow policies still cannot be loaded: shadow mode stays off");
                }
            }
        }
        // Loaded: this watcher's events are no longer read (nor kept), and
        // this task keeps the new store's watcher alive.
        drop(rx);
        if loaded.is_some() {
            std::future::pending::<()>().await;
        }
    });
    Some(watcher)
}

/// `ecs-gateway serve`: builds everything, binds, serves until SIGINT or
/// SIGTERM, then drains calls in flight.
///
/// # Errors
///
/// See [`RunError`].
pub async fn run(config: crate::config::Config) -> Result<(), RunError> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let parts = build(&config)?;
    let _watchers = watch_policies(&parts);
    let shutdown = shutdown_signal();
    let listener = bind(config.listen, LISTEN_SETTING).await?;
    let admin = bind(config.admin_listen, ADMIN_LISTEN_SETTING).await?;
    tracing::info!(
        listen = %config.listen,
        admin = %config.admin_listen,
        endpoint = %config.upstream.endpoint,
        tls = parts.tls.is_some(),
        "gateway serving"
    );
    serve(parts, listener, Some(admin), shutdown).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (Kubernetes' stop).
///
/// The handlers are registered when this is called, not when the future is
/// first polled: a signal that arrives in between (say, right after the
/// demo's banner) would otherwise go to the listeners registered before
/// (the demo's simulator) and never to this one, and the gateway would not
/// stop. Call it before saying the server is up. Needs a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot listen for SIGINT and SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
            // Said once, by the server that drains (the demo's simulator
            // waits for the same signal).
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
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
