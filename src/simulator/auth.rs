//! The simulator's front door, as the POP gateway in front of ECS and STS
//! checks it: required common parameters, the AccessKey, the API version,
//! the timestamp window, a temporary key's token and expiry, the V1
//! signature (checked with the same canonical form the gateway signs with,
//! in constant time), the nonce (after the signature, so nobody can burn
//! another caller's nonces) and, for ECS, the rate limit per AccessKey.
//!
//! The token codes are Alibaba Cloud's OpenAPI common errors
//! (<https://help.aliyun.com/document_detail/53438.html>, "公共错误码"):
//! `MissingSecurityToken` ("SecurityToken is mandatory for this action": an
//! STS key sent without its token, as the STS troubleshooting page
//! <https://www.alibabacloud.com/help/doc-detail/42775.htm> explains),
//! `InvalidSecurityToken.MismatchWithAccessKey` (a token that is not the
//! key's) and `InvalidSecurityToken.Expired`.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::Method;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::{Failure, Params, Simulator, TokenBucket};
use crate::sign;

const REQUIRED: &[&str] = &[
    "AccessKeyId",
    "Action",
    "Format",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
    "Version",
];

/// The API a signed call is for: its version, and whether it is throttled
/// and counted as ECS's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// ECS (`2014-05-26`).
    Ecs,
    /// STS (`2015-04-01`).
    Sts,
}

impl Api {
    fn version(self) -> &'static str {
        match self {
            Self::Ecs => crate::upstream::API_VERSION,
            Self::Sts => super::STS_VERSION,
        }
    }
}

/// An authenticated call: its parameters (without `Signature`) and the
/// account of the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verified {
    /// The parameters, by name.
    pub params: Params,
    /// The signing key's account.
    pub account: String,
}

pub(super) fn missing(name: &str) -> Failure {
    Failure::new("MissingParameter").message(format!(
        "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
    ))
}

/// Checks a request's authentication and admission.
pub(super) fn verify(
    sim: &Simulator,
    method: &Method,
    mut params: Vec<(String, String)>,
    now: DateTime<Utc>,
    api: Api,
) -> Result<Verified, Failure> {
    for name in REQUIRED {
        if !params.iter().any(|(k, v)| k == name && !v.is_empty()) {
            return Err(missing(name));
        }
    }
    let at = params
        .iter()
        .position(|(k, _)| k == "Signature")
        .ok_or_else(|| missing("Signature"))?;
    let (_, claimed) = params.swap_remove(at);
    let map: Params = params.iter().cloned().collect::<HashMap<_, _>>();
    if map.len() != params.len() {
        return Err(
            Failure::new("IncompleteSignature").message("A parameter appears more than once.")
        );
    }
    let get = |name: &str| map.get(name).map_or("", String::as_str);

    let key = {
        let mut state = sim.state();
        let key = state
            .access_keys
            .get(get("AccessKeyId"))
            .cloned()
            .ok_or_else(|| Failure::new("InvalidAccessKeyId.NotFound"))?;
        // What the gateway must never send: counted whatever else is wrong.
        if api == Api::Ecs && key.expires.is_some_and(|e| e <= now) {
            state.expired_key_calls += 1;
        }
        key
    };

    if get("SignatureMethod") != sign::SIGNATURE_METHOD
        || get("SignatureVersion") != sign::SIGNATURE_VERSION
    {
        return Err(Failure::new("IncompleteSignature").message(
            "The request signature does not conform to Aliyun standards: expected HMAC-SHA1, version 1.0.",
        ));
    }
    if get("Version") != api.version() {
        return Err(Failure::new("InvalidVersion"));
    }

    let timestamp = NaiveDateTime::parse_from_str(get("Timestamp"), sign::TIMESTAMP_FORMAT)
        .map_err(|_| Failure::new("InvalidTimeStamp.Format"))?
        .and_utc();
    let skew = (now - timestamp).abs().to_std().unwrap_or_default();
    if skew > sim.inner.max_clock_skew {
        return Err(Failure::new("InvalidTimeStamp.Expired"));
    }

    // A temporary key's secret is only known through its token: the token
    // is checked before the signature.
    if let Some(token) = &key.security_token {
        match map.get("SecurityToken") {
            None => return Err(Failure::new("MissingSecurityToken")),
            Some(sent) if sent != token.expose() => {
                return Err(Failure::new("InvalidSecurityToken.MismatchWithAccessKey"));
            }
            Some(_) => {}
        }
    }
    if key.expires.is_some_and(|e| e <= now) {
        return Err(Failure::new("InvalidSecurityToken.Expired"));
    }

    let string_to_sign = sign::string_to_sign(method.as_str(), &sign::canonical_query(&params));
    if !sign::verify(key.secret.expose(), &string_to_sign, &claimed) {
        // ECS quotes its string to sign so that a client can find its mistake.
        return Err(Failure::new("SignatureDoesNotMatch").message(format!(
            "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
        )));
    }

    admit(sim, &key.id, get("SignatureNonce"), api)?;
    Ok(Verified {
        params: map,
        account: key.account,
    })
}

/// The nonce, then (for ECS) the key's rate limit.
fn admit(sim: &Simulator, key_id: &str, nonce: &str, api: Api) -> Result<(), Failure> {
    let mut state = sim.state();
    let window = sim.inner.max_clock_skew;
    let instant = Instant::now();
    if state.nonces.len() > 10_000 {
        state
            .nonces
            .retain(|_, seen| instant.duration_since(*seen) <= window * 2);
    }
    let nonce = (key_id.to_owned(), nonce.to_owned());
    if state.nonces.insert(nonce, instant).is_some() {
        return Err(Failure::new("SignatureNonceUsed"));
    }

    if let (Api::Ecs, Some(rate)) = (api, sim.inner.throttle_per_second) {
        let rate = f64::from(rate.max(1));
        let bucket = state
            .buckets
            .entry(key_id.to_owned())
            .or_insert(TokenBucket {
                tokens: rate,
                last: instant,
            });
        bucket.tokens =
            (bucket.tokens + instant.duration_since(bucket.last).as_secs_f64() * rate).min(rate);
        bucket.last = instant;
        if bucket.tokens < 1.0 {
            return Err(Failure::new("Throttling"));
        }
        bucket.tokens -= 1.0;
    }
    Ok(())
}
