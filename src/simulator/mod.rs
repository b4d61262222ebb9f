//! A faithful stand-in for the ECS OpenAPI endpoint, for tests and the demo
//! (the real cloud is out of reach from development machines and CI).
//!
//! It answers `ModifyInstanceNetworkSpec` the way ECS does, and
//! `DescribeInstances` for the instances it holds (`describe.rs`, what the
//! gateway's instance lookup reads): it verifies RPC
//! signature V1 for GET and POST (`auth.rs`), keeps per-instance state and
//! applies the reference's rules with its error codes (`rules.rs`), honours
//! ClientToken idempotency, throttles above a configured rate, and can inject
//! faults (latency, 5xx, garbage bodies, any catalogue error) so resilience
//! can be tested. Errors use ECS's JSON shape: `RequestId`, `HostId`, `Code`,
//! `Message`, `Recommend`.
//!
//! It holds several accounts: a key sees only its own account's instances.
//! On the same address it also serves what the gateway's credentials come
//! from: STS (`sts.rs`: `AssumeRole`, `AssumeRoleWithOIDC`, dispatched from
//! `/` by `Version=2015-04-01`), the instance metadata server in hardened
//! mode (`metadata.rs`) and a credentials URI (`uri.rs`). The temporary keys
//! they issue (`keys.rs`) sign ECS calls of their account until they expire.

mod auth;
mod describe;
mod keys;
mod metadata;
pub mod oidc;
mod rules;
mod sts;
mod uri;
mod world;

pub use world::{
    AccessKey, Account, ChargeType, Config, DEFAULT_OIDC_CLIENT_ID, DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET, DEMO_ACCOUNT_ID, DEMO_EXTERNAL_ID, DEMO_REGION, Instance,
    MAX_ROLE_SESSION, Metadata, NetworkChargeType, NetworkType, OidcProvider, Role,
    SECOND_ACCOUNT_ID, SECOND_ACCOUNT_ROLE_ARN, Status, TemporaryUpgrade,
};

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;

use crate::error::catalogue;

/// A fault to inject into the next call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then answer normally.
    Latency(Duration),
    /// Answer with this catalogue code and HTTP status.
    Error {
        /// The error code.
        code: String,
        /// The HTTP status.
        http_status: u16,
    },
    /// Answer with this HTTP status and an HTML body, as a load balancer does.
    HttpStatus(u16),
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Close the connection without an answer (before applying anything).
    Drop,
    /// Send the start of a body, then close the connection.
    Truncated,
}

/// Random failures, for resilience tests: each call fails with these
/// probabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Chaos {
    /// Answer `ServiceUnavailable` (503) without applying anything.
    pub fail_before: f64,
    /// Apply the change, then drop the connection: the caller cannot know
    /// it was applied and must retry with the same ClientToken.
    pub drop_after: f64,
    /// Added to every call, as a distant endpoint's round trip.
    pub latency: Duration,
}

/// An ECS error, as the simulator answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    code: &'static str,
    http_status: u16,
    message: String,
}

impl Failure {
    /// The catalogue's first row for `code`, with its message.
    fn new(code: &'static str) -> Self {
        let entry = catalogue::get(code);
        Self {
            code,
            http_status: entry.http_status,
            message: entry.message.to_owned(),
        }
    }

    /// The row for `code` with another of the reference's HTTP statuses.
    fn with_status(code: &'static str, http_status: u16) -> Self {
        let entry = catalogue::lookup(code, http_status).unwrap_or_else(|| catalogue::get(code));
        Self {
            code,
            http_status: entry.http_status,
            message: entry.message.to_owned(),
        }
    }

    /// Replaces the message, for ECS's `%s` codes and parameter names.
    fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Success {
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
}

/// What a ClientToken's first successful call did.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FirstResult {
    /// The request it was sent with, ClientToken left out.
    parameters: rules::Request,
    /// Its order, if any.
    order_id: Option<String>,
}

struct TokenBucket {
    tokens: f64,
    last: Instant,
}

struct State {
    instances: HashMap<String, Instance>,
    /// Every account, by ID.
    accounts: HashMap<String, Account>,
    /// The accepted keys: the configured ones and those issued since.
    access_keys: HashMap<String, AccessKey>,
    nonces: HashMap<(String, String), Instant>,
    /// First successful result per (account, ClientToken).
    replies: HashMap<(String, String), FirstResult>,
    /// Changes applied per ClientToken.
    applied: HashMap<String, usize>,
    buckets: HashMap<String, TokenBucket>,
    faults: VecDeque<Fault>,
    next_order: u64,
    next_ip: u32,
    calls: u64,
    described: u64,
    traceparents: Vec<String>,
    baggage: Vec<String>,
    chaos: Chaos,
    /// ModifyInstanceNetworkSpec calls per signing account.
    calls_by_account: HashMap<String, u64>,
    expired_key_calls: u64,
    sts_calls: u64,
    /// `AssumeRole`'s sessions, `{role}/{session}`.
    role_sessions: Vec<String>,
    sts_down: bool,
    metadata_calls: u64,
    metadata_token_calls: u64,
    imdsv1_allowed: bool,
    /// Metadata tokens and when they expire.
    metadata_tokens: HashMap<String, Instant>,
    metadata_key: Option<keys::Issued>,
    uri_key: Option<keys::Issued>,
    credentials_uri_failing: bool,
}

struct Inner {
    throttle_per_second: Option<u32>,
    max_clock_skew: Duration,
    default_account: String,
    roles: Vec<Role>,
    oidc_providers: Vec<OidcProvider>,
    metadata_role: Option<String>,
    credentials_uri_role: Option<String>,
    issued_lifetime: Option<Duration>,
    state: Mutex<State>,
}

/// A running simulator; clones share the same state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    /// A simulator holding `config`'s world.
    pub fn new(config: Config) -> Self {
        let default_account = config.account.id.clone();
        let state = State {
            instances: config
                .instances
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect(),
            // The default account wins over another of the same ID.
            accounts: config
                .other_accounts
                .into_iter()
                .chain([config.account])
                .map(|a| (a.id.clone(), a))
                .collect(),
            access_keys: config
                .access_keys
                .into_iter()
                .map(|k| (k.id.clone(), k))
                .collect(),
            nonces: HashMap::new(),
            replies: HashMap::new(),
            applied: HashMap::new(),
            buckets: HashMap::new(),
            faults: VecDeque::new(),
            next_order: 212_345_678_900,
            next_ip: 1,
            calls: 0,
            described: 0,
            traceparents: Vec::new(),
            baggage: Vec::new(),
            chaos: Chaos::default(),
            calls_by_account: HashMap::new(),
            expired_key_calls: 0,
            sts_calls: 0,
            role_sessions: Vec::new(),
            sts_down: false,
            metadata_calls: 0,
            metadata_token_calls: 0,
            imdsv1_allowed: config.metadata.imdsv1_allowed,
            metadata_tokens: HashMap::new(),
            metadata_key: None,
            uri_key: None,
            credentials_uri_failing: false,
        };
        Self {
            inner: Arc::new(Inner {
                throttle_per_second: config.throttle_per_second,
                max_clock_skew: config.max_clock_skew,
                default_account,
                roles: config.roles,
                oidc_providers: config.oidc_providers,
                metadata_role: config.metadata.role,
                credentials_uri_role: config.credentials_uri_role,
                issued_lifetime: config.issued_lifetime,
                state: Mutex::new(state),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state whole, so a poisoned lock
        // (a panic in another test thread) is still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance's current state.
    pub fn instance(&self, id: &str) -> Option<Instance> {
        self.state().instances.get(id).cloned()
    }

    /// Adds or replaces an instance.
    pub fn put_instance(&self, instance: Instance) {
        self.state().instances.insert(instance.id.clone(), instance);
    }

    /// Cancels the instance's orders, unpaid or abnormal, as the expense
    /// center does; the changes they held are not applied.
    pub fn cancel_orders(&self, id: &str) {
        if let Some(instance) = self.state().instances.get_mut(id) {
            instance.unpaid_order = None;
            instance.abnormal_order = None;
        }
    }

    /// Changes the default account's state.
    pub fn update_account(&self, change: impl FnOnce(&mut Account)) {
        let id = self.inner.default_account.clone();
        self.update_account_of(&id, change);
    }

    /// Changes the state of the account `id` (nothing when there is none).
    pub fn update_account_of(&self, id: &str, change: impl FnOnce(&mut Account)) {
        if let Some(account) = self.state().accounts.get_mut(id) {
            change(account);
        }
    }

    /// The state an instance of account `id` is checked against: that
    /// account's, or the default account's limits for an account the world
    /// does not hold.
    fn account_state(state: &State, default: &str, id: &str) -> Account {
        state
            .accounts
            .get(id)
            .or_else(|| state.accounts.get(default))
            .map(|a| Account {
                id: id.to_owned(),
                ..a.clone()
            })
            .unwrap_or_else(|| Account::new(id))
    }

    /// Sets random failures for every call from now on.
    pub fn set_chaos(&self, chaos: Chaos) {
        self.state().chaos = chaos;
    }

    /// Queues a fault for the next call (faults apply in order, one per call).
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// How many times a change with this ClientToken was applied.
    pub fn applied(&self, client_token: &str) -> usize {
        self.state().applied.get(client_token).copied().unwrap_or(0)
    }

    /// The `baggage` headers received, in order, for tests of what the
    /// gateway forwards.
    pub fn baggage(&self) -> Vec<String> {
        self.state().baggage.clone()
    }

    /// The `traceparent` headers received, in order, for tests of trace
    /// propagation.
    pub fn traceparents(&self) -> Vec<String> {
        self.state().traceparents.clone()
    }

    /// Checks a request's authentication as the endpoint does before
    /// anything else (parameters from the query and, for POST, the form
    /// body): `Err` holds ECS's error code. Exposed for fuzzing.
    ///
    /// # Errors
    ///
    /// The code ECS would answer with.
    pub fn authenticate(
        &self,
        method: &Method,
        query: &[u8],
        body: &[u8],
    ) -> Result<(), &'static str> {
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(query).into_owned().collect();
        if method == Method::POST {
            params.extend(form_urlencoded::parse(body).into_owned());
        }
        auth::verify(self, method, params, Utc::now(), auth::Api::Ecs)
            .map(|_| ())
            .map_err(|f| f.code)
    }

    /// ECS calls received, valid or not (STS's are counted apart,
    /// [`Self::sts_calls`]).
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// Authenticated ModifyInstanceNetworkSpec calls signed by a key of
    /// `account_id`, answered with success or not.
    pub fn calls_by_account(&self, account_id: &str) -> u64 {
        self.state()
            .calls_by_account
            .get(account_id)
            .copied()
            .unwrap_or(0)
    }

    /// DescribeInstances calls answered (authenticated ones).
    pub fn describe_calls(&self) -> u64 {
        self.state().described
    }

    /// The HTTP routes: ECS's and STS's RPC endpoint is `/`, GET or POST;
    /// the metadata server's are under `/latest/`; the credentials URI is
    /// `/credentials-uri`.
    pub fn router(&self) -> axum::Router {
        let router = axum::Router::new().route("/", axum::routing::get(handle).post(handle));
        uri::routes(metadata::routes(router)).with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    ///
    /// # Errors
    ///
    /// The listener fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

fn json(status: u16, body: &impl Serialize) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    response
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody<'a> {
    request_id: String,
    host_id: &'a str,
    code: &'a str,
    message: &'a str,
    recommend: String,
}

fn error_response(failure: &Failure, host: &str) -> Response {
    product_error(failure, host, "Ecs")
}

/// An error of `product`'s API (its troubleshooting link names it).
fn product_error(failure: &Failure, host: &str, product: &str) -> Response {
    json(
        failure.http_status,
        &ErrorBody {
            request_id: request_id(),
            host_id: host,
            code: failure.code,
            message: &failure.message,
            recommend: format!(
                "https://api.aliyun.com/troubleshoot?q={}&product={product}",
                failure.code
            ),
        },
    )
}

/// HostId of ECS's errors that name no region.
const HOST: &str = "ecs.aliyuncs.com";

/// STS's API version: calls with it are STS's.
const STS_VERSION: &str = "2015-04-01";

async fn handle(
    AxumState(sim): AxumState<Simulator>,
    method: Method,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = read_params(&method, query.as_deref(), &body);
    // STS shares the endpoint but not ECS's faults, chaos or counters.
    if params
        .iter()
        .any(|(k, v)| k == "Version" && v == STS_VERSION)
    {
        return sts::handle(&sim, &method, params, Utc::now());
    }
    let (fault, chaos) = {
        let mut state = sim.state();
        state.calls += 1;
        if let Some(traceparent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            state.traceparents.push(traceparent.to_owned());
        }
        for baggage in headers.get_all("baggage") {
            state
                .baggage
                .push(String::from_utf8_lossy(baggage.as_bytes()).into_owned());
        }
        (state.faults.pop_front(), state.chaos)
    };
    if let Some(fault) = fault
        && let Some(answer) = apply(fault).await
    {
        return answer;
    }
    if !chaos.latency.is_zero() {
        tokio::time::sleep(chaos.latency).await;
    }
    if chaos.fail_before > 0.0 && fastrand::f64() < chaos.fail_before {
        return error_response(&Failure::new("ServiceUnavailable"), HOST);
    }

    let auth::Verified { params, account } =
        match auth::verify(&sim, &method, params, Utc::now(), auth::Api::Ecs) {
            Ok(verified) => verified,
            Err(failure) => return error_response(&failure, HOST),
        };
    let host = format!(
        "ecs.{}.aliyuncs.com",
        params.get("RegionId").map_or("", String::as_str)
    );
    match params.get("Action").map(String::as_str) {
        Some(crate::upstream::describe::ACTION) => {
            return match describe::answer(&sim, &params, &account) {
                Ok(body) => json(200, &body),
                Err(failure) => error_response(&failure, &host),
            };
        }
        Some(crate::upstream::ACTION) => {
            *sim.state()
                .calls_by_account
                .entry(account.clone())
                .or_default() += 1;
        }
        _ => {}
    }
    let answer = rules::call(&sim, &params, &account, Utc::now());
    if chaos.drop_after > 0.0 && fastrand::f64() < chaos.drop_after {
        return dropped();
    }
    match answer {
        Ok(success) => json(200, &success),
        Err(failure) => error_response(&failure, &host),
    }
}

/// ECS's and STS's parameters: the query string's and, for POST, the form
/// body's.
fn read_params(method: &Method, query: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if method == Method::POST {
        params.extend(form_urlencoded::parse(body).into_owned());
    }
    params
}

/// An injected fault's answer, or `None` (after its latency) to answer
/// normally.
async fn apply(fault: Fault) -> Option<Response> {
    Some(match fault {
        Fault::Latency(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        Fault::Error { code, http_status } => {
            let entry = catalogue::lookup(&code, http_status);
            let body = ErrorBody {
                request_id: request_id(),
                host_id: HOST,
                code: &code,
                message: entry.map_or("injected fault", |e| e.message),
                recommend: format!("https://api.aliyun.com/troubleshoot?q={code}&product=Ecs"),
            };
            json(http_status, &body)
        }
        Fault::HttpStatus(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, "<html><body>upstream error</body></html>").into_response()
        }
        Fault::Garbage => (StatusCode::OK, "\u{0}garbage{").into_response(),
        Fault::Drop => dropped(),
        Fault::Truncated => {
            let partial = futures_util::stream::iter([
                Ok(Bytes::from_static(b"{\"RequestId\":\"")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "truncated by fault injection",
                )),
            ]);
            (StatusCode::OK, axum::body::Body::from_stream(partial)).into_response()
        }
    })
}

/// A response whose body fails at once: the server resets the stream, and
/// the client sees the connection drop without an answer.
fn dropped() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "dropped by fault injection",
        ))
    });
    (StatusCode::OK, axum::body::Body::from_stream(failing)).into_response()
}

/// Verified parameters, by name.
type Params = HashMap<String, String>;

#[cfg(test)]
mod metadata_tests;
#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod sts_tests;
#[cfg(test)]
mod tests;
