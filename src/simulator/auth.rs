//! The simulator's front door, as ECS's: required common parameters, the
//! AccessKey, the timestamp window, the V1 signature (checked with the same
//! canonical form the gateway signs with, in constant time), the nonce (after
//! the signature, so nobody can burn another caller's nonces) and the rate
//! limit per AccessKey.

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

pub(super) fn missing(name: &str) -> Failure {
    Failure::new("MissingParameter").message(format!(
        "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
    ))
}

/// Checks a request's authentication and admission; returns its parameters
/// without `Signature`.
pub(super) fn verify(
    sim: &Simulator,
    method: &Method,
    mut params: Vec<(String, String)>,
    now: DateTime<Utc>,
) -> Result<Params, Failure> {
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

    let key = sim
        .inner
        .access_keys
        .get(get("AccessKeyId"))
        .ok_or_else(|| Failure::new("InvalidAccessKeyId.NotFound"))?;

    if get("SignatureMethod") != sign::SIGNATURE_METHOD
        || get("SignatureVersion") != sign::SIGNATURE_VERSION
    {
        return Err(Failure::new("IncompleteSignature").message(
            "The request signature does not conform to Aliyun standards: expected HMAC-SHA1, version 1.0.",
        ));
    }
    if get("Version") != crate::upstream::API_VERSION {
        return Err(Failure::new("InvalidVersion"));
    }

    let timestamp = NaiveDateTime::parse_from_str(get("Timestamp"), sign::TIMESTAMP_FORMAT)
        .map_err(|_| Failure::new("InvalidTimeStamp.Format"))?
        .and_utc();
    let skew = (now - timestamp).abs().to_std().unwrap_or_default();
    if skew > sim.inner.max_clock_skew {
        return Err(Failure::new("InvalidTimeStamp.Expired"));
    }

    let string_to_sign = sign::string_to_sign(method.as_str(), &sign::canonical_query(&params));
    if !sign::verify(key.secret.expose(), &string_to_sign, &claimed) {
        // ECS quotes its string to sign so that a client can find its mistake.
        return Err(Failure::new("SignatureDoesNotMatch").message(format!(
            "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
        )));
    }

    if let Some(token) = &key.security_token
        && map.get("SecurityToken").map(String::as_str) != Some(token.expose())
    {
        return Err(Failure::new("InvalidSecurityToken.Mismatch"));
    }

    let mut state = sim.state();
    let window = sim.inner.max_clock_skew;
    let instant = Instant::now();
    if state.nonces.len() > 10_000 {
        state
            .nonces
            .retain(|_, seen| instant.duration_since(*seen) <= window * 2);
    }
    let nonce = (key.id.clone(), get("SignatureNonce").to_owned());
    if state.nonces.insert(nonce, instant).is_some() {
        return Err(Failure::new("SignatureNonceUsed"));
    }

    if let Some(rate) = sim.inner.throttle_per_second {
        let rate = f64::from(rate.max(1));
        let bucket = state.buckets.entry(key.id.clone()).or_insert(TokenBucket {
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
    Ok(map)
}
