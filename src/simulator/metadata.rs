//! The ECS instance metadata server's RAM role credentials, with hardened
//! mode (IMDSv2), as Alibaba Cloud documents it and the credentials SDKs
//! (credentials-go, credentials-python) call it:
//!
//! - `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds`
//!   (1 to 21,600) answers a token valid that long (400 without a valid TTL);
//! - `GET /latest/meta-data/ram/security-credentials/` answers the attached
//!   role's name (404 when none is attached);
//! - `GET /latest/meta-data/ram/security-credentials/<role>` answers the
//!   role's temporary key as JSON (404 for another role).
//!
//! A GET with `X-aliyun-ecs-metadata-token` needs a token the server issued
//! and that has not expired (401 otherwise); a GET without one is served
//! only while the world allows IMDSv1 (403 otherwise). The key is the same
//! until it is in the last third of its lifetime (6 hours), then a new one.

use std::time::{Duration, Instant};

use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use super::Simulator;
use super::keys::{self, Issued};

/// The longest metadata token, seconds.
const MAX_TOKEN_TTL: u64 = 21_600;
/// How long the instance's role keys live.
const KEY_LIFETIME: Duration = Duration::from_secs(6 * 3600);
/// Tokens kept before expired ones are forgotten.
const KEPT_TOKENS: usize = 1000;

/// The metadata server's routes.
pub(super) fn routes(router: axum::Router<Simulator>) -> axum::Router<Simulator> {
    router
        .route("/latest/api/token", axum::routing::put(token))
        .route(
            "/latest/meta-data/ram/security-credentials/",
            axum::routing::get(role_name),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/{role}",
            axum::routing::get(credentials),
        )
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

async fn token(AxumState(sim): AxumState<Simulator>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get("x-aliyun-ecs-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ttl| (1..=MAX_TOKEN_TTL).contains(ttl));
    let mut state = sim.state();
    state.metadata_token_calls += 1;
    let Some(ttl) = ttl else {
        return text(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    let now = Instant::now();
    if state.metadata_tokens.len() >= KEPT_TOKENS {
        state.metadata_tokens.retain(|_, expires| *expires > now);
        // Still full of live tokens: the one closest to expiry goes.
        let soonest = state
            .metadata_tokens
            .iter()
            .min_by_key(|(_, expires)| **expires)
            .map(|(token, _)| token.clone());
        if let Some(soonest) = soonest.filter(|_| state.metadata_tokens.len() >= KEPT_TOKENS) {
            state.metadata_tokens.remove(&soonest);
        }
    }
    let token = keys::random(56, keys::ALPHANUMERIC);
    state
        .metadata_tokens
        .insert(token.clone(), now + Duration::from_secs(ttl));
    (StatusCode::OK, token).into_response()
}

/// A refusal: its status and text.
type Refusal = (StatusCode, &'static str);

/// Counts the GET and checks its token.
fn admit(sim: &Simulator, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut state = sim.state();
    state.metadata_calls += 1;
    match headers.get("x-aliyun-ecs-metadata-token") {
        Some(sent) => {
            let valid = sent
                .to_str()
                .ok()
                .and_then(|t| state.metadata_tokens.get(t))
                .is_some_and(|expires| *expires > Instant::now());
            if valid {
                Ok(())
            } else {
                Err((StatusCode::UNAUTHORIZED, "401 Unauthorized"))
            }
        }
        None if state.imdsv1_allowed => Ok(()),
        None => Err((StatusCode::FORBIDDEN, "403 Forbidden")),
    }
}

async fn role_name(AxumState(sim): AxumState<Simulator>, headers: HeaderMap) -> Response {
    if let Err((status, body)) = admit(&sim, &headers) {
        return text(status, body);
    }
    match &sim.inner.metadata_role {
        Some(role) => (StatusCode::OK, role.clone()).into_response(),
        None => text(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

async fn credentials(
    AxumState(sim): AxumState<Simulator>,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, body)) = admit(&sim, &headers) {
        return text(status, body);
    }
    if sim.inner.metadata_role.as_deref() != Some(role.as_str()) {
        return text(StatusCode::NOT_FOUND, "404 Not Found");
    }
    // The role of that name in the world gives the account; else the
    // default account's.
    let account = sim
        .inner
        .roles
        .iter()
        .find(|r| r.name() == role)
        .map_or(sim.inner.default_account.as_str(), |r| r.account());
    let issued = sim.cached_key(Cached::Metadata, account, KEY_LIFETIME);
    let mut body = issued.fields();
    body.insert("LastUpdated".into(), keys::timestamp(issued.issued).into());
    body.insert("Code".into(), "Success".into());
    super::json(200, &Value::Object(body))
}

/// Which issuer's cached key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cached {
    /// The metadata server's.
    Metadata,
    /// The credentials URI's.
    Uri,
}

impl Simulator {
    /// The issuer's current key of `account`, or a new one once it is in the
    /// last third of its lifetime.
    pub(super) fn cached_key(&self, which: Cached, account: &str, lifetime: Duration) -> Issued {
        let now = Utc::now();
        let current = {
            let state = self.state();
            match which {
                Cached::Metadata => state.metadata_key.clone(),
                Cached::Uri => state.uri_key.clone(),
            }
        };
        if let Some(current) = current.filter(|k| !k.stale(now) && k.key.account == account) {
            return current;
        }
        let issued = self.issue(account, lifetime, now);
        let mut state = self.state();
        match which {
            Cached::Metadata => state.metadata_key = Some(issued.clone()),
            Cached::Uri => state.uri_key = Some(issued.clone()),
        }
        issued
    }

    /// Allows token-less (IMDSv1) metadata requests, or refuses them (403)
    /// as hardened mode enforced does.
    pub fn set_imdsv1_allowed(&self, allowed: bool) {
        self.state().imdsv1_allowed = allowed;
    }

    /// Metadata GETs received, served or not.
    pub fn metadata_calls(&self) -> u64 {
        self.state().metadata_calls
    }

    /// Metadata token PUTs received, served or not.
    pub fn metadata_token_calls(&self) -> u64 {
        self.state().metadata_token_calls
    }
}
