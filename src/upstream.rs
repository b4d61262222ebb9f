//! The last stage of the request flow: sign the validated request with the
//! gateway's credentials and send it to the regional ECS endpoint, then read
//! ECS's answer or error.
//!
//! One pooled reqwest client (rustls) serves every region. The call is a
//! `POST` with the signed parameters as a form body, so no parameter (and no
//! signature) ever lands in a URL that an error message or proxy log could
//! show. Every value is serialized once, into the same strings that are
//! signed and sent.
//!
//! Resilience: each attempt has its own timeout inside the call's deadline
//! (the caller's `grpc-timeout`, capped by the settings). Transport errors,
//! timeouts, unreadable answers and the ECS codes whose catalogue row says
//! they clear in seconds (ECS failing, a previous request still running;
//! not `Throttling`, whose five minutes are the caller's) are retried
//! with exponential backoff and full jitter, every attempt re-signed (a new
//! nonce and timestamp) but with the same ClientToken, so ECS applies the
//! change at most once. A retry budget ([`tower::retry::budget::TpsBudget`])
//! keeps retries to a fraction of calls, so they cannot multiply an outage,
//! and a circuit breaker per endpoint ([`breaker`]) answers at once while
//! the endpoint is down.

pub mod breaker;
pub mod describe;
mod form;

pub use form::{
    ecs_client_token, parameters, parse_answer, parse_response, sign_parameters, signed_body,
};

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::credentials::{self, Credentials};
use crate::sign;
use crate::validate::ModifyRequest;

/// ECS OpenAPI version of ModifyInstanceNetworkSpec.
pub const API_VERSION: &str = "2014-05-26";
/// The action this gateway forwards.
pub const ACTION: &str = "ModifyInstanceNetworkSpec";
/// The default regional endpoint; `{region}` is replaced by the region ID.
pub const DEFAULT_ENDPOINT: &str = "https://ecs.{region}.aliyuncs.com";
/// ECS's `StartTime` format: accurate to the minute.
pub const START_TIME_FORMAT: &str = "%Y-%m-%dT%H:%MZ";
/// ECS's `EndTime` format: accurate to the hour.
pub const END_TIME_FORMAT: &str = "%Y-%m-%dT%HZ";

/// Upstream settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Endpoint URL, `{region}` replaced by the request's region.
    pub endpoint: String,
    /// Longest wait for a call, retries included, unless the caller's
    /// deadline is shorter.
    pub timeout: Duration,
    /// Longest wait for one attempt.
    pub attempt_timeout: Duration,
    /// Longest wait for a TCP and TLS connection.
    pub connect_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff; it doubles per retry, with full jitter.
    pub backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Retries allowed as a fraction of calls (over 10 s), besides
    /// `retry_min_per_second`.
    pub retry_ratio: f32,
    /// Retries always allowed per second.
    pub retry_min_per_second: u32,
    /// Consecutive failures that open an endpoint's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before a probe.
    pub breaker_open_for: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(3),
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            retry_ratio: 0.2,
            retry_min_per_second: 5,
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(10),
        }
    }
}

/// What the upstream stage must know of ECS's error codes, given by the
/// server from the one error catalogue (`error::ECS_CODES`), so that this
/// stage imports nothing of the error mapping.
#[derive(Clone, Copy)]
pub struct EcsCodes {
    /// Whether another attempt within the call can succeed (the code clears
    /// in seconds; the same ClientToken makes it safe).
    pub retry_within_call: fn(&str, u16) -> bool,
    /// Whether the answer says ECS itself failed: what a breaker counts.
    pub ecs_failed: fn(&str, u16) -> bool,
    /// The code's catalogued spelling, or `None` when unknown: the only
    /// values a metric label takes.
    pub known: fn(&str, u16) -> Option<&'static str>,
}

impl std::fmt::Debug for EcsCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsCodes").finish_non_exhaustive()
    }
}

/// Reads an answer: ECS's HTTP status and body into the action's result.
pub type Parse<'a, T> = dyn Fn(u16, &[u8]) -> Result<T, Error> + Sync + 'a;

/// A successful answer of any action: it carries ECS's RequestId.
pub trait Answer {
    /// ECS's RequestId.
    fn request_id(&self) -> &str;
}

impl Answer for Reply {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// What ECS answered to a successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// ECS's RequestId.
    pub request_id: String,
    /// The order, for subscription instances only.
    pub order_id: Option<String>,
}

/// ECS's error body, as documented for every OpenAPI error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EcsError {
    /// The HTTP status ECS answered with (not in the body).
    #[serde(skip)]
    pub http_status: u16,
    /// ECS's request ID.
    #[serde(default)]
    pub request_id: String,
    /// The endpoint host that answered.
    #[serde(default)]
    pub host_id: String,
    /// The error code, such as `InvalidInstanceId.NotFound`.
    pub code: String,
    /// ECS's message.
    #[serde(default)]
    pub message: String,
    /// ECS's troubleshooting link.
    #[serde(default)]
    pub recommend: String,
}

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ECS answered with an error.
    #[error("ECS answered HTTP {} {}: {}", .0.http_status, .0.code, .0.message)]
    Ecs(Box<EcsError>),
    /// No answer within the deadline.
    #[error("upstream timed out after {0:?}")]
    Timeout(Duration),
    /// The endpoint could not be reached, or the connection broke.
    #[error("cannot reach ECS at {endpoint}")]
    Transport {
        /// The endpoint URL (no parameters: they travel in the body).
        endpoint: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// ECS answered something that is not its documented JSON.
    #[error("unreadable answer from ECS (HTTP {http_status}): {detail}")]
    InvalidResponse {
        /// The HTTP status.
        http_status: u16,
        /// What was wrong.
        detail: String,
    },
    /// No credentials may sign for the call's account (an account not
    /// served, or its credentials' source failing with nothing usable
    /// cached): nothing was sent.
    #[error(transparent)]
    Credentials(#[from] credentials::SignerError),
    /// The endpoint's circuit is open after repeated failures.
    #[error("ECS at {endpoint} is failing; calls resume in {retry_after:?}")]
    CircuitOpen {
        /// The endpoint.
        endpoint: String,
        /// When a probe will be let through.
        retry_after: Duration,
    },
}

impl Error {
    /// Whether another attempt with the same ClientToken can succeed.
    fn retryable(&self, codes: &EcsCodes) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout(_) | Error::InvalidResponse { .. } => true,
            // The catalogue's retry hint says which codes clear in seconds
            // (ECS busy, a previous request still running); `Throttling`
            // asks for five minutes and is the caller's to wait out.
            Error::Ecs(e) => (codes.retry_within_call)(&e.code, e.http_status),
            Error::CircuitOpen { .. } | Error::Credentials(_) => false,
        }
    }

    /// Whether the endpoint itself failed (ECS's own answers prove it works,
    /// but for a 5xx that says ECS failed).
    fn endpoint_failed(&self, codes: &EcsCodes) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout(_) | Error::InvalidResponse { .. } => true,
            Error::Ecs(e) => (codes.ecs_failed)(&e.code, e.http_status),
            Error::CircuitOpen { .. } | Error::Credentials(_) => false,
        }
    }
}

/// Builds HTTP clients for ECS.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client")]
pub struct BuildError(#[source] reqwest::Error);

impl Config {
    /// Builds the pooled client.
    ///
    /// # Errors
    ///
    /// The TLS stack cannot be initialized.
    pub fn build(
        self,
        credentials: Arc<credentials::Signers>,
        metrics: Arc<crate::telemetry::Metrics>,
        codes: EcsCodes,
    ) -> Result<Client, BuildError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("ecs-gateway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // Redirects would resend signed parameters elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(BuildError)?;
        Ok(Client {
            http,
            breakers: Arc::new(breaker::Breakers::new(
                self.breaker_failures,
                self.breaker_open_for,
            )),
            budget: Arc::new(tower::retry::budget::TpsBudget::new(
                Duration::from_secs(10),
                self.retry_min_per_second,
                self.retry_ratio,
            )),
            config: self,
            credentials,
            metrics,
            codes,
            urls: Arc::default(),
        })
    }
}

/// Regions whose endpoint URL is kept parsed before the cache is emptied.
const URLS_KEPT: usize = 64;

/// A pooled client that signs and forwards calls.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Parsed endpoint URLs by region (parsing one was 2 % of a call).
    urls: Arc<std::sync::RwLock<HashMap<String, Option<reqwest::Url>>>>,
    config: Config,
    credentials: Arc<credentials::Signers>,
    metrics: Arc<crate::telemetry::Metrics>,
    breakers: Arc<breaker::Breakers>,
    budget: Arc<tower::retry::budget::TpsBudget>,
    codes: EcsCodes,
}

impl Client {
    /// The endpoint URL for `region`.
    pub fn endpoint(&self, region: &str) -> String {
        self.config.endpoint.replace("{region}", region)
    }

    /// The parsed endpoint URL for `region` (`None`: it does not parse).
    fn url(&self, region: &str, endpoint: &str) -> Option<reqwest::Url> {
        let read = self.urls.read().unwrap_or_else(|e| e.into_inner());
        if let Some(url) = read.get(region) {
            return url.clone();
        }
        drop(read);
        let url = reqwest::Url::parse(endpoint).ok();
        let mut urls = self.urls.write().unwrap_or_else(|e| e.into_inner());
        if urls.len() >= URLS_KEPT {
            urls.clear();
        }
        urls.insert(region.to_owned(), url.clone());
        url
    }

    /// Signs `request` (for `caller`, whose session signs it when sessions
    /// are named after callers) and sends it to ECS, waiting at most the shorter of
    /// the configured timeout and the budget of `deadline` (the time left of
    /// the call's own deadline).
    ///
    /// # Errors
    ///
    /// [`Error::Ecs`] when ECS refuses the call, [`Error::Timeout`],
    /// [`Error::Transport`] or [`Error::InvalidResponse`] otherwise.
    pub async fn modify_instance_network_spec(
        &self,
        request: &ModifyRequest,
        caller: &str,
        deadline: Duration,
    ) -> Result<Reply, Error> {
        let timeout = budget(deadline).min(self.config.timeout);
        let endpoint = self.endpoint(&request.region_id);
        let started = std::time::Instant::now();
        let params = parameters(request);
        let result = self
            .attempts(
                (request.account_id.as_deref(), Some(caller)),
                &request.region_id,
                &params,
                &endpoint,
                timeout,
                &parse_response,
            )
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            // Only catalogued codes become label values: a label per unknown
            // code would let ECS (or a fake endpoint) grow the metrics.
            Err(Error::Ecs(e)) => (self.codes.known)(&e.code, e.http_status).unwrap_or("other"),
            Err(Error::Timeout(_)) => "timeout",
            Err(Error::Transport { .. }) => "transport",
            Err(Error::InvalidResponse { .. }) => "invalid_response",
            Err(Error::CircuitOpen { .. }) => "circuit_open",
            Err(Error::Credentials(_)) => "no_credentials",
        };
        self.metrics.record_upstream(outcome, started.elapsed());
        result
    }

    /// Whether `account` is one the gateway signs for.
    pub fn serves(&self, account: &str) -> bool {
        self.credentials.serves(account)
    }

    /// The role whose credentials sign for `account` (none for an
    /// AccessKey), for the decision log.
    pub fn signing_role(&self, account: Option<&str>) -> Option<String> {
        self.credentials.role(account)
    }

    /// Starts keeping every account's credentials fresh.
    pub fn start_credentials(&self) {
        self.credentials.start();
    }

    /// Attempts until one succeeds, fails for good, or the deadline, the
    /// attempts or the retry budget run out. Every attempt is its own client
    /// span, signed anew with one snapshot of `account`'s credentials (so
    /// that a rotation between attempts does not change the AccessKey a
    /// ClientToken is bound to), unless that snapshot may no longer sign:
    /// no attempt is ever signed with credentials about to expire.
    async fn attempts<T: Answer>(
        &self,
        (account, caller): (Option<&str>, Option<&str>),
        region: &str,
        params: &[(&'static str, Cow<'_, str>)],
        endpoint: &str,
        timeout: Duration,
        parse: &Parse<'_, T>,
    ) -> Result<T, Error> {
        use tower::retry::budget::Budget as _;
        // An attempt with less time than this cannot succeed; it would only
        // count against the endpoint.
        const FLOOR: Duration = Duration::from_millis(10);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut signer = self
            .credentials
            .get_within(account, caller, timeout)
            .await?;
        let url = self.url(region, endpoint);
        self.budget.deposit();
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining < FLOOR {
                return Err(Error::Timeout(timeout));
            }
            // Before the breaker admits the attempt: a refused signer must
            // not hold the endpoint's probe.
            if !signer.usable(chrono::Utc::now()) {
                signer = self
                    .credentials
                    .get_within(account, caller, remaining)
                    .await?;
            }
            let admission = match self.breakers.admit(endpoint) {
                Ok(admission) => admission,
                Err(retry_after) => {
                    return Err(Error::CircuitOpen {
                        endpoint: endpoint.to_owned(),
                        retry_after,
                    });
                }
            };
            let attempt_timeout = remaining.min(self.config.attempt_timeout);
            let span = attempt_span(url.as_ref(), endpoint, attempt);
            let result = self
                .call(
                    params,
                    signer.credentials(),
                    endpoint,
                    url.as_ref(),
                    attempt_timeout,
                    parse,
                )
                .instrument(span.clone())
                .await;
            let error = match result {
                Ok(reply) => {
                    span.record("ecs.request_id", reply.request_id());
                    self.breakers.record(endpoint, admission, true);
                    return Ok(reply);
                }
                Err(error) => error,
            };
            mark_failed(&span, &error);
            match &error {
                // A timeout shorter than a full attempt says more about the
                // caller's deadline than about the endpoint.
                Error::Timeout(_) if attempt_timeout < self.config.attempt_timeout => {
                    self.breakers.release(endpoint, admission)
                }
                _ => self
                    .breakers
                    .record(endpoint, admission, !error.endpoint_failed(&self.codes)),
            }
            attempt += 1;
            let backoff = self.backoff(attempt);
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !error.retryable(&self.codes)
                || attempt >= self.config.max_attempts
                || remaining <= backoff + FLOOR
                || !self.budget.withdraw()
            {
                // Out of time: say how long the whole call waited.
                return Err(match error {
                    Error::Timeout(_) if remaining < FLOOR => Error::Timeout(timeout),
                    other => other,
                });
            }
            tracing::info!(attempt, ?backoff, %error, "retrying ECS call with the same ClientToken");
            self.metrics.upstream_retries.inc();
            tokio::time::sleep(backoff).await;
        }
    }

    /// One attempt, inside the upstream span.
    /// The wait before the next attempt. Full jitter: anywhere up to the
    /// exponential bound, so callers retrying together do not come back
    /// together.
    fn backoff(&self, attempt: u32) -> Duration {
        let bound = self
            .config
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.max_backoff);
        bound.mul_f64(fastrand::f64())
    }

    async fn call<T>(
        &self,
        params: &[(&'static str, Cow<'_, str>)],
        credentials: &Credentials,
        endpoint: &str,
        url: Option<&reqwest::Url>,
        timeout: Duration,
        parse: &Parse<'_, T>,
    ) -> Result<T, Error> {
        let body = {
            // The span says that signing happened and with what, never the
            // secret or the signature.
            let _sign = tracing::info_span!(
                target: crate::telemetry::trace::STAGE,
                "sign",
                signature.method = sign::SIGNATURE_METHOD,
                signature.version = sign::SIGNATURE_VERSION
            )
            .entered();
            sign_parameters(
                params.to_vec(),
                credentials,
                &uuid::Uuid::new_v4().to_string(),
                chrono::Utc::now(),
            )
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        crate::telemetry::trace::inject(&mut headers);
        let span = tracing::Span::current();
        // The URL parsed once per call (reqwest would parse a string per
        // attempt); an endpoint that does not parse fails in reqwest.
        let post = match url {
            Some(url) => self.http.post(url.clone()),
            None => self.http.post(endpoint),
        };
        let call = async {
            let response = post.headers(headers).body(body).send().await?;
            let status = response.status().as_u16();
            span.record("http.response.status_code", status);
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(Error::Timeout(timeout)),
            // A connect timeout is an unreachable endpoint, not a slow answer.
            Ok(Err(source)) if source.is_timeout() && !source.is_connect() => {
                Err(Error::Timeout(timeout))
            }
            Ok(Err(source)) => Err(Error::Transport {
                endpoint: endpoint.to_owned(),
                source,
            }),
            Ok(Ok((status, body))) => parse(status, &body),
        }
    }
}

/// Marks an attempt's span failed with the error's code.
/// The span of one attempt: an OpenTelemetry HTTP client span.
fn attempt_span(url: Option<&reqwest::Url>, endpoint: &str, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::trace::STAGE,
        "POST",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = "POST",
        server.address = url.and_then(|u| u.host_str()).unwrap_or(""),
        server.port = url.and_then(reqwest::Url::port_or_known_default).unwrap_or(0),
        url.full = %endpoint,
        http.request.resend_count = attempt,
        http.response.status_code = Empty,
        ecs.request_id = Empty,
        error.type = Empty,
    )
}

fn mark_failed(span: &tracing::Span, error: &Error) {
    let code = match error {
        Error::Ecs(e) => {
            span.record("ecs.request_id", e.request_id.as_str());
            e.code.as_str()
        }
        Error::Timeout(_) => "UpstreamTimeout",
        Error::Transport { .. } => "UpstreamUnavailable",
        Error::InvalidResponse { .. } => "UpstreamInvalidResponse",
        Error::CircuitOpen { .. } => "UpstreamCircuitOpen",
        Error::Credentials(_) => "GatewayCredentialsUnavailable",
    };
    crate::telemetry::trace::fail(span, code);
}

/// The part of the caller's deadline the upstream call may use: a tenth (at
/// most 50 ms) is kept back, so that the gateway's own DEADLINE_EXCEEDED, with
/// its details, reaches the caller before the caller's deadline cancels the
/// call without any.
pub fn budget(deadline: Duration) -> Duration {
    deadline.saturating_sub((deadline / 10).min(Duration::from_millis(50)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use crate::validate::{ClientToken, NetworkChargeType, TemporaryUpgrade};

    fn request() -> ModifyRequest {
        ModifyRequest {
            region_id: "cn-hangzhou".into(),
            instance_id: "i-abc".into(),
            bandwidth_out: Some(20),
            bandwidth_in: None,
            network_charge_type: Some(NetworkChargeType::PayByTraffic),
            allocate_public_ip: Some(true),
            temporary: Some(TemporaryUpgrade {
                start: "2030-01-01T10:15:00Z".parse().unwrap(),
                end: "2030-01-01T14:00:00Z".parse().unwrap(),
            }),
            auto_pay: Some(false),
            client_token: ClientToken {
                value: "tok en".into(),
                generated: false,
            },
            account_id: None,
        }
    }

    #[test]
    fn serializes_parameters_in_ecs_formats() {
        let request = request();
        let params: Vec<(&str, String)> = parameters(&request)
            .into_iter()
            .map(|(k, v)| (k, v.into_owned()))
            .collect();
        let expect = [
            ("Action", "ModifyInstanceNetworkSpec"),
            ("RegionId", "cn-hangzhou"),
            ("InstanceId", "i-abc"),
            ("InternetMaxBandwidthOut", "20"),
            ("NetworkChargeType", "PayByTraffic"),
            ("AllocatePublicIp", "true"),
            ("StartTime", "2030-01-01T10:15Z"),
            ("EndTime", "2030-01-01T14Z"),
            ("AutoPay", "false"),
            ("ClientToken", "tok en"),
        ];
        let expect: Vec<(&str, String)> =
            expect.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        assert_eq!(params, expect);
    }

    #[test]
    fn signed_body_verifies_and_carries_sts_token() {
        let credentials = Credentials {
            access_key_id: "AK".into(),
            access_key_secret: Secret::new("secret"),
            security_token: Some(Secret::new("sts-token")),
        };
        let now = "2030-01-01T00:00:00Z".parse().unwrap();
        let body = signed_body(&request(), &credentials, "nonce-1", now);
        let mut params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let at = params.iter().position(|(k, _)| k == "Signature").unwrap();
        let (_, claimed) = params.remove(at);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SecurityToken"), Some("sts-token"));
        assert_eq!(get("Timestamp"), Some("2030-01-01T00:00:00Z"));
        assert_eq!(get("SignatureNonce"), Some("nonce-1"));
        assert_eq!(get("Format"), Some("JSON"));
        let sts = sign::string_to_sign("POST", &sign::canonical_query(&params));
        assert!(sign::verify("secret", &sts, &claimed));
    }

    #[test]
    fn ecs_client_tokens_are_per_caller_and_stable() {
        let a = ecs_client_token("spiffe://demo.local/sa/netops", None, "t-1");
        assert_eq!(
            a,
            ecs_client_token("spiffe://demo.local/sa/netops", None, "t-1")
        );
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(
            a,
            ecs_client_token("spiffe://demo.local/sa/webapp", None, "t-1")
        );
        assert_ne!(
            a,
            ecs_client_token("spiffe://demo.local/sa/netops", None, "t-2")
        );
        // The boundary between caller and token is part of the input.
        assert_ne!(
            ecs_client_token("ab", None, "c"),
            ecs_client_token("a", None, "bc")
        );
        // Per account too, and no account can be shifted into the token.
        let other = ecs_client_token(
            "spiffe://demo.local/sa/netops",
            Some("2234567890123456"),
            "t-1",
        );
        assert_ne!(a, other);
        assert_ne!(
            other,
            ecs_client_token(
                "spiffe://demo.local/sa/netops",
                Some("2234567890123457"),
                "t-1"
            )
        );
        assert_ne!(
            ecs_client_token("a", Some("1"), "2"),
            ecs_client_token("a", Some("12"), "")
        );
    }

    #[test]
    fn parses_success_and_error_bodies() {
        let ok = parse_response(200, br#"{"RequestId":"R1","OrderId":"123"}"#).unwrap();
        assert_eq!(
            ok,
            Reply {
                request_id: "R1".into(),
                order_id: Some("123".into())
            }
        );
        let ok = parse_response(200, br#"{"RequestId":"R2"}"#).unwrap();
        assert_eq!(ok.order_id, None);

        let body = br#"{"RequestId":"R3","HostId":"ecs.aliyuncs.com","Code":"Throttling","Message":"slow down","Recommend":"https://x"}"#;
        match parse_response(400, body) {
            Err(Error::Ecs(e)) => {
                assert_eq!(
                    (e.http_status, e.code.as_str(), e.request_id.as_str()),
                    (400, "Throttling", "R3")
                );
                assert_eq!(e.recommend, "https://x");
            }
            other => panic!("{other:?}"),
        }
        for (status, body) in [
            (200, &b"<html>"[..]),
            (500, b"oops"),
            (400, br#"{"Message":"x"}"#),
            (200, b"{}"),
        ] {
            assert!(
                matches!(
                    parse_response(status, body),
                    Err(Error::InvalidResponse { .. })
                ),
                "{status} {body:?}"
            );
        }
    }
}
