//! The ECS call's form: its parameters in ECS's formats, the signed body,
//! the ClientToken sent to ECS, and the answer parsed.

use std::borrow::Cow;

use serde::Deserialize;

use super::{ACTION, API_VERSION, END_TIME_FORMAT, EcsError, Error, Reply, START_TIME_FORMAT};
use crate::credentials::Credentials;
use crate::sign;
use crate::validate::ModifyRequest;

/// The ClientToken sent to ECS for `caller`'s `token`.
///
/// Every caller signs with the gateway's one AccessKey, so ECS sees all
/// their tokens in one namespace: a token one caller chose could replay
/// another caller's result (and learn its RequestId and OrderId). The token
/// ECS sees is therefore derived from the caller's identity and its token
/// (SHA-256, 64 hex digits: ECS's limit is 64 ASCII characters): the same
/// caller retrying with the same token gets the same ECS token, so retries
/// stay idempotent, and no two callers can share one. The caller gets its
/// own token back, never this one. A call to another account than the
/// default one (`account`) derives its token from that account too, so a
/// token is never shared across the accounts a caller reaches.
pub fn ecs_client_token(caller: &str, account: Option<&str>, token: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    // Length-prefixed, so that no (caller, account, token) can be shifted
    // into another; the default account's tokens are derived as before
    // accounts existed, so retries across an upgrade stay idempotent.
    hasher.update((caller.len() as u64).to_be_bytes());
    hasher.update(caller.as_bytes());
    if let Some(account) = account {
        hasher.update(u64::MAX.to_be_bytes());
        hasher.update((account.len() as u64).to_be_bytes());
        hasher.update(account.as_bytes());
    }
    hasher.update(token.as_bytes());
    hex::encode(hasher.finalize())
}

/// The action's parameters, each serialized once, exactly as signed.
pub fn parameters(request: &ModifyRequest) -> Vec<(&'static str, Cow<'_, str>)> {
    let mut params: Vec<(&'static str, Cow<'_, str>)> = Vec::with_capacity(20);
    params.push(("Action", ACTION.into()));
    params.push(("RegionId", request.region_id.as_str().into()));
    params.push(("InstanceId", request.instance_id.as_str().into()));
    if let Some(out) = request.bandwidth_out {
        params.push(("InternetMaxBandwidthOut", out.to_string().into()));
    }
    if let Some(bandwidth_in) = request.bandwidth_in {
        params.push(("InternetMaxBandwidthIn", bandwidth_in.to_string().into()));
    }
    if let Some(charge) = request.network_charge_type {
        params.push(("NetworkChargeType", charge.as_str().into()));
    }
    if let Some(allocate) = request.allocate_public_ip {
        params.push(("AllocatePublicIp", bool_str(allocate).into()));
    }
    if let Some(window) = &request.temporary {
        params.push((
            "StartTime",
            window.start.format(START_TIME_FORMAT).to_string().into(),
        ));
        params.push((
            "EndTime",
            window.end.format(END_TIME_FORMAT).to_string().into(),
        ));
    }
    if let Some(auto_pay) = request.auto_pay {
        params.push(("AutoPay", bool_str(auto_pay).into()));
    }
    params.push(("ClientToken", request.client_token.value.as_str().into()));
    params
}

fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

/// The signed form body: the action's parameters, the common parameters and
/// `Signature`.
pub fn signed_body(
    request: &ModifyRequest,
    credentials: &Credentials,
    nonce: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    sign_parameters(parameters(request), credentials, nonce, now)
}

/// The signed form body of any action's parameters: them, the common
/// parameters and `Signature`.
pub fn sign_parameters<'a>(
    params: Vec<(&'static str, Cow<'a, str>)>,
    credentials: &'a Credentials,
    nonce: &'a str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    sign::signed_rpc_body(params, API_VERSION, credentials.key(), nonce, now)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Success {
    request_id: String,
    #[serde(default)]
    order_id: Option<String>,
}

/// Reads ECS's answer: a 2xx JSON body with `RequestId` (and `OrderId`), or
/// an error body with `Code`.
///
/// # Errors
///
/// [`Error::Ecs`] for ECS's error bodies, [`Error::InvalidResponse`] for
/// anything else.
pub fn parse_response(http_status: u16, body: &[u8]) -> Result<Reply, Error> {
    let ok: Success = parse_answer(http_status, body, "JSON with RequestId")?;
    Ok(Reply {
        request_id: ok.request_id,
        order_id: ok.order_id.filter(|o| !o.is_empty()),
    })
}

/// Reads any action's answer: a 2xx body as `T` (described by `expected`
/// in errors), or ECS's error body.
///
/// # Errors
///
/// [`Error::Ecs`] for ECS's error bodies, [`Error::InvalidResponse`] for
/// anything else.
pub fn parse_answer<T: serde::de::DeserializeOwned>(
    http_status: u16,
    body: &[u8],
    expected: &str,
) -> Result<T, Error> {
    let invalid = |detail: String| Error::InvalidResponse {
        http_status,
        detail,
    };
    if (200..300).contains(&http_status) {
        return serde_json::from_slice(body)
            .map_err(|e| invalid(format!("expected {expected}: {e}")));
    }
    match serde_json::from_slice::<EcsError>(body) {
        Ok(mut error) if !error.code.is_empty() => {
            error.http_status = http_status;
            Err(Error::Ecs(Box::new(error)))
        }
        Ok(_) => Err(invalid("error body without Code".into())),
        Err(e) => Err(invalid(format!("expected an ECS error body: {e}"))),
    }
}
