//! Metrics for Prometheus, and the admin HTTP port that serves them with the
//! liveness and readiness probes:
//!
//! - `GET /metrics`: Prometheus text format;
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 once policies are loaded, credentials are present and
//!   the gRPC port is bound, 503 before and during shutdown.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What the policy store reports at scrape time. The store implements it;
/// metrics know nothing else of policies.
pub trait PolicyState: fmt::Debug + Send + Sync {
    /// Reloads so far: (succeeded, failed).
    fn reload_counts(&self) -> (u64, u64);
    /// The version of the policy set in force and how many policies it has,
    /// read from one snapshot.
    fn in_force(&self) -> (String, usize);
}

/// What the signing credentials report at scrape time and for readiness.
pub trait CredentialsState: fmt::Debug + Send + Sync {
    /// Whether the default account's credentials may sign.
    fn ready(&self) -> bool;
    /// Seconds of validity each account's temporary credentials have left.
    fn validity(&self) -> Vec<(String, f64)>;
}

/// Labels of credential refreshes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// The source: `rrsa`, `file`, `ecs_ram_role`, `credentials_uri`,
    /// `assume_role`.
    pub source: String,
    /// `success` or `failure`.
    pub result: String,
}

/// Labels of gRPC calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The gRPC method, such as `ModifyInstanceNetworkSpec`.
    pub method: String,
    /// The gRPC status code name, such as `OK` or `PERMISSION_DENIED`.
    pub code: String,
}

/// Labels of authorization decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allow` or `deny`.
    pub result: String,
    /// The layer that denied (`control`, `identity`), or `all` when allowed.
    pub layer: String,
}

/// Labels of counters by result alone: shadow decisions (`agree`,
/// `disagree`: whether the candidate policies decided as the policies in
/// force) and instance lookups (`hit`, `miss`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The result.
    pub result: String,
}

/// Labels of upstream calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `ok`, the ECS error code, `timeout`, `transport` or `invalid_response`.
    pub outcome: String,
}

/// Every metric of the gateway.
pub struct Metrics {
    registry: Registry,
    /// gRPC calls by method and code.
    pub calls: Family<CallLabels, Counter>,
    /// gRPC call latency by method and code, seconds.
    pub call_duration: Family<CallLabels, Histogram>,
    /// gRPC calls in flight.
    pub in_flight: Gauge,
    /// Authorization decisions of calls.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Explain's own permission decisions (`ecsgateway:Explain`,
    /// `ecsgateway:SimulatePrincipal`), apart from calls' so that denial
    /// alerts count calls only.
    pub explain_decisions: Family<DecisionLabels, Counter>,
    /// Shadow policy directories that could not be loaded (at start or on
    /// a change before they ever loaded).
    pub shadow_load_failures: Counter,
    /// Decisions of the shadow (candidate) policies against those in force.
    pub shadow_decisions: Family<ResultLabels, Counter>,
    /// Instance lookups (DescribeInstances) by result.
    pub instance_lookups: Family<ResultLabels, Counter>,
    /// Upstream call latency by outcome, seconds.
    pub upstream_duration: Family<UpstreamLabels, Histogram>,
    /// Upstream retries.
    pub upstream_retries: Counter,
    /// Credential refreshes by source and result.
    pub credential_refreshes: Family<RefreshLabels, Counter>,
    ready: AtomicBool,
    credentials: Arc<std::sync::OnceLock<Arc<dyn CredentialsState>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ecs_gateway");
        let calls = Family::<CallLabels, Counter>::default();
        let call_duration = Family::<CallLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let in_flight = Gauge::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let shadow_decisions = Family::<ResultLabels, Counter>::default();
        let explain_decisions = Family::<DecisionLabels, Counter>::default();
        let shadow_load_failures = Counter::default();
        let instance_lookups = Family::<ResultLabels, Counter>::default();
        let upstream_duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let upstream_retries = Counter::default();
        registry.register(
            "grpc_calls",
            "gRPC calls by method and status code",
            calls.clone(),
        );
        registry.register(
            "grpc_call_duration_seconds",
            "gRPC call latency by method and status code",
            call_duration.clone(),
        );
        registry.register(
            "grpc_calls_in_flight",
            "gRPC calls being served",
            in_flight.clone(),
        );
        registry.register(
            "decisions",
            "Authorization decisions by result and denying layer",
            decisions.clone(),
        );
        registry.register(
            "explain_decisions",
            "Explain's permission decisions (ecsgateway:Explain, ecsgateway:SimulatePrincipal) by result and denying layer",
            explain_decisions.clone(),
        );
        registry.register(
            "shadow_load_failures",
            "Shadow (candidate) policy directories that could not be loaded; shadow mode is off until they can",
            shadow_load_failures.clone(),
        );
        registry.register(
            "shadow_decisions",
            "Candidate (shadow) policies' decisions, agreeing or not with those in force",
            shadow_decisions.clone(),
        );
        registry.register(
            "instance_lookups",
            "Instance attribute lookups: hit (cached), miss (asked ECS with DescribeInstances), error (the decision denied) or throttled (the caller, or all callers, over their rate: refused, retryable)",
            instance_lookups.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "ECS call latency by outcome (ok or the error)",
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_retries",
            "ECS calls retried",
            upstream_retries.clone(),
        );
        let credential_refreshes = Family::<RefreshLabels, Counter>::default();
        let credentials = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(CredentialsCollector(credentials.clone())));
        registry.register(
            "credential_refreshes",
            "Refreshes of the signing credentials by source and result",
            credential_refreshes.clone(),
        );
        Self {
            registry,
            calls,
            call_duration,
            in_flight,
            decisions,
            explain_decisions,
            shadow_load_failures,
            shadow_decisions,
            instance_lookups,
            upstream_duration,
            upstream_retries,
            credential_refreshes,
            ready: AtomicBool::new(false),
            credentials,
        }
    }
}

fn decision_labels(denied_by: Option<&str>) -> DecisionLabels {
    DecisionLabels {
        result: if denied_by.is_some() { "deny" } else { "allow" }.to_owned(),
        layer: denied_by.unwrap_or("all").to_owned(),
    }
}

/// Policy reloads and the version in force, read from the store at scrape time.
#[derive(Debug)]
struct PolicyCollector(Arc<dyn PolicyState>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

impl prometheus_client::collector::Collector for PolicyCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), fmt::Error> {
        let (ok, failed) = self.0.reload_counts();
        let (version_in_force, policies) = self.0.in_force();
        let mut reloads = encoder.encode_descriptor(
            "policy_reloads",
            "Policy reloads by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in [("success", ok), ("failure", failed)] {
            let labels = OutcomeLabel { outcome };
            ConstCounter::new(count).encode(reloads.encode_family(&labels)?)?;
        }
        let mut version = encoder.encode_descriptor(
            "policy_version_info",
            "The policy set in force (1 for its version)",
            None,
            MetricType::Gauge,
        )?;
        encode_one(
            &mut version,
            &VersionLabel {
                version: version_in_force,
            },
        )?;
        let count =
            encoder.encode_descriptor("policies", "Policies in force", None, MetricType::Gauge)?;
        ConstGauge::new(i64::try_from(policies).unwrap_or(i64::MAX)).encode(count)?;
        Ok(())
    }
}

/// Seconds of validity left per account, read at scrape time.
#[derive(Debug)]
struct CredentialsCollector(Arc<std::sync::OnceLock<Arc<dyn CredentialsState>>>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

impl prometheus_client::collector::Collector for CredentialsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), fmt::Error> {
        let mut validity = encoder.encode_descriptor(
            "credentials_validity_seconds",
            "Seconds the signing credentials of each account have left (temporary credentials only)",
            None,
            MetricType::Gauge,
        )?;
        let accounts = self.0.get().map(|c| c.validity()).unwrap_or_default();
        for (account, seconds) in accounts {
            ConstGauge::new(seconds).encode(validity.encode_family(&AccountLabel { account })?)?;
        }
        Ok(())
    }
}

fn encode_one(encoder: &mut MetricEncoder<'_>, labels: &VersionLabel) -> Result<(), fmt::Error> {
    ConstGauge::new(1i64).encode(encoder.encode_family(labels)?)
}

impl Metrics {
    /// A registry with every metric, plus the policy store's.
    pub fn new(store: Option<Arc<dyn PolicyState>>) -> Self {
        let mut metrics = Self::default();
        if let Some(store) = store {
            metrics
                .registry
                .register_collector(Box::new(PolicyCollector(store)));
        }
        metrics
    }

    /// Counts a finished gRPC call.
    pub fn record_call(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let labels = CallLabels {
            method: method.to_owned(),
            code: code_name(code).to_owned(),
        };
        self.calls.get_or_create(&labels).inc();
        self.call_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a call's decision.
    pub fn record_decision(&self, denied_by: Option<&str>) {
        self.decisions
            .get_or_create(&decision_labels(denied_by))
            .inc();
    }

    /// Counts one of Explain's permission decisions.
    pub fn record_explain_decision(&self, denied_by: Option<&str>) {
        self.explain_decisions
            .get_or_create(&decision_labels(denied_by))
            .inc();
    }

    /// Counts a shadow decision: `agree`, `disagree`, or `not_compared`
    /// (a call denied without the instance's attributes, which the
    /// candidate needs).
    pub fn record_shadow(&self, result: &'static str) {
        self.shadow_decisions
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts an instance lookup: `hit`, `miss` or `error`.
    pub fn record_lookup(&self, result: &'static str) {
        self.instance_lookups
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts an upstream call.
    pub fn record_upstream(&self, outcome: &str, elapsed: Duration) {
        self.upstream_duration
            .get_or_create(&UpstreamLabels {
                outcome: outcome.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a refresh of the signing credentials.
    pub fn record_credentials_refresh(&self, source: &str, ok: bool) {
        self.credential_refreshes
            .get_or_create(&RefreshLabels {
                source: source.to_owned(),
                result: if ok { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }

    /// Reports the signing credentials: readiness waits for them, and
    /// every scrape reads their validity.
    pub fn watch_credentials(&self, credentials: Arc<dyn CredentialsState>) {
        let _ = self.credentials.set(credentials);
    }

    /// Marks the gateway ready, or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the gateway is ready: serving, and its credentials may sign.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.credentials.get().is_none_or(|c| c.ready())
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The canonical name of a gRPC status code, as in the gRPC spec.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The admin HTTP routes.
pub fn admin_router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::{StatusCode, header};
    let scrape = metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = scrape.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = metrics.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}
