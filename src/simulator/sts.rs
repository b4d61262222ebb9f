//! STS (`Version=2015-04-01`) on the simulator's `/`, as
//! <https://help.aliyun.com/zh/ram/developer-reference/api-sts-2015-04-01-assumerole>
//! and `-assumerolewithoidc` describe it:
//!
//! - `AssumeRole`, signed like an ECS call by a key the role's trust policy
//!   names (its account, and `sts:ExternalId` when the role has one);
//! - `AssumeRoleWithOIDC`, anonymous, with a token of a provider the role
//!   trusts ([`super::oidc`]).
//!
//! Both answer a temporary key of the role's account, accepted by ECS from
//! then on. Errors are STS's codes with its HTTP statuses: parameters 400,
//! `EntityNotExist.*` 404, `NoPermission` 403, `AuthenticationFail.*` 401 (the
//! error-code table's status, where the brief said 400 and 403).

use std::time::Duration;

use axum::http::Method;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::auth::{self, Api};
use super::keys::{self, Issued};
use super::{Failure, MAX_ROLE_SESSION, Params, Role, Simulator, oidc};

const HOST: &str = "sts.aliyuncs.com";

/// STS's shortest session, and the default one.
const MIN_SESSION: Duration = Duration::from_secs(900);
const DEFAULT_SESSION: Duration = Duration::from_secs(3600);

/// Answers one STS call.
pub(super) fn handle(
    sim: &Simulator,
    method: &Method,
    params: Vec<(String, String)>,
    now: DateTime<Utc>,
) -> Response {
    let down = {
        let mut state = sim.state();
        state.sts_calls += 1;
        state.sts_down
    };
    let answer = if down {
        Err(Failure::new("ServiceUnavailable"))
    } else {
        answer(sim, method, params, now)
    };
    match answer {
        Ok(body) => super::json(200, &body),
        Err(failure) => super::product_error(&failure, HOST, "Sts"),
    }
}

fn answer(
    sim: &Simulator,
    method: &Method,
    params: Vec<(String, String)>,
    now: DateTime<Utc>,
) -> Result<Value, Failure> {
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone());
    // Anonymous: the token is the credential.
    if action.as_deref() == Some("AssumeRoleWithOIDC") {
        return assume_role_with_oidc(sim, &params.into_iter().collect(), now);
    }
    let verified = auth::verify(sim, method, params, now, Api::Sts)?;
    match action.as_deref() {
        Some("AssumeRole") => assume_role(sim, &verified.params, &verified.account, now),
        _ => Err(Failure::new("InvalidAction")),
    }
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, Failure> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| auth::missing(name))
}

/// 2 to 64 characters of `A-Z a-z 0-9 . @ - _`.
fn session_name(name: &str) -> Result<(), Failure> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_');
    if (2..=64).contains(&name.len()) && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(Failure::new("InvalidParameter.RoleSessionName"))
    }
}

/// `DurationSeconds` (default 1 h) within 15 minutes and the role's
/// maximum session.
fn duration(params: &Params, role: &Role) -> Result<Duration, Failure> {
    let max = role.max_session.clamp(DEFAULT_SESSION, MAX_ROLE_SESSION);
    let refused = || {
        Failure::new("InvalidParameter.DurationSeconds").message(format!(
            "The Min/Max value of DurationSeconds is {}s/{}s.",
            MIN_SESSION.as_secs(),
            max.as_secs()
        ))
    };
    let Some(raw) = params.get("DurationSeconds") else {
        return Ok(DEFAULT_SESSION.min(max));
    };
    let wanted = raw
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| refused())?;
    if (MIN_SESSION..=max).contains(&wanted) {
        Ok(wanted)
    } else {
        Err(refused())
    }
}

fn role<'a>(sim: &'a Simulator, arn: &str) -> Result<&'a Role, Failure> {
    sim.inner
        .roles
        .iter()
        .find(|r| r.arn == arn)
        .ok_or_else(|| {
            Failure::new("EntityNotExist.Role").message(format!("The role not exists: {arn}."))
        })
}

fn no_permission(arn: &str) -> Failure {
    Failure::new("NoPermission").message(format!(
        "You are not authorized to do this action. You should be authorized by RAM. Resource: {arn} Action: sts:AssumeRole"
    ))
}

/// `AssumeRole` by a key of `account`.
fn assume_role(
    sim: &Simulator,
    params: &Params,
    account: &str,
    now: DateTime<Utc>,
) -> Result<Value, Failure> {
    let arn = required(params, "RoleArn")?;
    let session = required(params, "RoleSessionName")?;
    session_name(session)?;
    let role = role(sim, arn)?;
    if !role.trusted_accounts.iter().any(|a| a == account) {
        return Err(no_permission(arn));
    }
    // The trust policy's `sts:ExternalId` condition.
    if let Some(expected) = &role.external_id
        && params.get("ExternalId") != Some(expected)
    {
        return Err(no_permission(arn));
    }
    let lifetime = duration(params, role)?;
    let issued = sim.issue(role.account(), lifetime, now);
    let mut state = sim.state();
    if state.role_sessions.len() >= KEPT_SESSIONS {
        state.role_sessions.remove(0);
    }
    state.role_sessions.push(format!("{arn}/{session}"));
    drop(state);
    Ok(body(role, session, &issued))
}

/// How many `AssumeRole` sessions [`Simulator::role_sessions`] keeps.
const KEPT_SESSIONS: usize = 1000;

/// `AssumeRoleWithOIDC`: the provider, the role, the token, then the
/// role's trust in the provider and the token's subject.
fn assume_role_with_oidc(
    sim: &Simulator,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<Value, Failure> {
    let arn = required(params, "RoleArn")?;
    let provider_arn = required(params, "OIDCProviderArn")?;
    let token = required(params, "OIDCToken")?;
    let session = match params.get("RoleSessionName") {
        Some(name) => {
            session_name(name)?;
            name.clone()
        }
        None => format!("oidc-{}", keys::random(12, keys::ALPHANUMERIC)),
    };
    let provider = sim
        .inner
        .oidc_providers
        .iter()
        .find(|p| p.arn == provider_arn)
        .ok_or_else(|| Failure::new("EntityNotExist.OIDCProvider"))?;
    let role = role(sim, arn)?;
    let lifetime = duration(params, role)?;
    let claims = oidc::verify(provider, token, now)?;
    let trusted = role.oidc_provider_arn.as_deref() == Some(provider_arn)
        && (role.oidc_subjects.is_empty() || role.oidc_subjects.contains(&claims.subject));
    if !trusted {
        return Err(Failure::new("AuthenticationFail.NoPermission"));
    }
    let issued = sim.issue(role.account(), lifetime, now);
    let mut answer = body(role, &session, &issued);
    let mut info = json!({
        "Subject": claims.subject,
        "Issuer": claims.issuer,
        "ClientIds": claims.audiences.join(","),
        "ExpirationTime": keys::timestamp(claims.expires),
    });
    if let Some(at) = claims.issued_at {
        info["IssuanceTime"] = keys::timestamp(at).into();
    }
    answer["OIDCTokenInfo"] = info;
    Ok(answer)
}

/// The success body: the assumed role user and the key.
fn body(role: &Role, session: &str, issued: &Issued) -> Value {
    json!({
        "RequestId": super::request_id(),
        "AssumedRoleUser": {
            "AssumedRoleId": format!("3{}:{session}", keys::random(17, b"0123456789")),
            "Arn": format!(
                "acs:ram::{}:assumed-role/{}/{session}",
                role.account(),
                role.name()
            ),
        },
        "Credentials": Value::Object(issued.fields()),
    })
}

impl Simulator {
    /// Makes every STS call answer HTTP 503 `ServiceUnavailable` (or
    /// answer normally again).
    pub fn set_sts_down(&self, down: bool) {
        self.state().sts_down = down;
    }

    /// STS calls received, answered or not.
    pub fn sts_calls(&self) -> u64 {
        self.state().sts_calls
    }

    /// The sessions `AssumeRole` granted, oldest first (the last 1,000), as
    /// `{role ARN}/{RoleSessionName}`: what ActionTrail would show.
    pub fn role_sessions(&self) -> Vec<String> {
        self.state().role_sessions.clone()
    }
}
