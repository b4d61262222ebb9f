//! Stage 2 of the request flow: every documented parameter rule of
//! ModifyInstanceNetworkSpec, checked before anything is authorized or sent.
//!
//! [`modify_request`] turns the wire message into a typed [`ModifyRequest`] or
//! a [`Rejection`] listing every violation at once (a caller fixing one field
//! at a time would need a round trip per mistake). Each violation names the
//! proto field, says what was expected and carries ECS's own error code, so a
//! caller sees the same code here as ECS would have answered.
//!
//! Rules that need the instance's state (its billing method, current
//! bandwidth, expiry) are ECS's to check; the gateway checks what the request
//! alone decides. The rules follow `ModifyInstanceNetworkSpec.txt`.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use crate::pb;

pub mod explain;
pub use explain::{ExplainRequest, explain_request};

/// Largest outbound bandwidth ECS accepts for any instance (pay-by-bandwidth
/// subscription), in Mbit/s.
pub const MAX_BANDWIDTH_OUT: i32 = 200;
/// Largest outbound bandwidth for pay-by-traffic, and for pay-as-you-go
/// instances, in Mbit/s.
pub const MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC: i32 = 100;
/// Up to this outbound bandwidth the inbound bandwidth may be 1 to 10 Mbit/s
/// (default 10); above it, 1 to the outbound value (default the outbound value).
pub const SMALL_BANDWIDTH_OUT: i32 = 10;
/// The shortest temporary bandwidth upgrade.
pub const MIN_TEMPORARY_UPGRADE: TimeDelta = TimeDelta::hours(3);
/// Longest ClientToken ECS accepts.
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;

/// The network billing method to convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkChargeType {
    /// `PayByBandwidth`.
    PayByBandwidth,
    /// `PayByTraffic`.
    PayByTraffic,
}

impl NetworkChargeType {
    /// ECS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PayByBandwidth => "PayByBandwidth",
            Self::PayByTraffic => "PayByTraffic",
        }
    }

    /// Parses ECS's spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "PayByBandwidth" => Some(Self::PayByBandwidth),
            "PayByTraffic" => Some(Self::PayByTraffic),
            _ => None,
        }
    }
}

/// A temporary bandwidth upgrade window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporaryUpgrade {
    /// Start, on a whole minute.
    pub start: DateTime<Utc>,
    /// End, on a whole hour, at least three hours after `start`.
    pub end: DateTime<Utc>,
}

/// The ClientToken a call uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    /// The token: ASCII, at most 64 characters.
    pub value: String,
    /// True when the caller sent none and the gateway made this one.
    pub generated: bool,
}

/// A request that passed every rule the request alone decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyRequest {
    /// Region, such as `cn-hangzhou`.
    pub region_id: String,
    /// Instance ID, such as `i-bp67acfmxazb4ph3abcd`.
    pub instance_id: String,
    /// Outbound bandwidth, 0 to 200 Mbit/s.
    pub bandwidth_out: Option<u32>,
    /// Inbound bandwidth, 1 to 200 Mbit/s.
    pub bandwidth_in: Option<u32>,
    /// Billing method to convert to.
    pub network_charge_type: Option<NetworkChargeType>,
    /// Whether to allocate a public IP address.
    pub allocate_public_ip: Option<bool>,
    /// A temporary upgrade window.
    pub temporary: Option<TemporaryUpgrade>,
    /// Whether to pay the order automatically (ECS's default: true).
    pub auto_pay: Option<bool>,
    /// The idempotency token.
    pub client_token: ClientToken,
    /// The account that owns the instance; `None`: the gateway's default
    /// account.
    pub account_id: Option<String>,
}

impl ModifyRequest {
    /// The inbound bandwidth ECS will apply when this request sets the
    /// outbound bandwidth: the caller's, else the documented default (10 up to
    /// 10 Mbit/s out, else the outbound value). `None` when the request leaves
    /// the outbound bandwidth alone and sets no inbound value.
    pub fn effective_bandwidth_in(&self) -> Option<u32> {
        self.bandwidth_in
            .or_else(|| self.bandwidth_out.map(default_bandwidth_in))
    }
}

/// The documented default inbound bandwidth for an outbound bandwidth.
pub fn default_bandwidth_in(bandwidth_out: u32) -> u32 {
    bandwidth_out.max(SMALL_BANDWIDTH_OUT as u32)
}

/// The largest inbound bandwidth allowed with an outbound bandwidth.
pub fn max_bandwidth_in(bandwidth_out: u32) -> u32 {
    default_bandwidth_in(bandwidth_out)
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The proto field's path, as in `BadRequest.FieldViolation.field`
    /// (`region_id`; `request.region_id` inside an Explain).
    pub field: Cow<'static, str>,
    /// The ECS error code (ErrorInfo reason), from the catalogue.
    pub code: &'static str,
    /// What was expected.
    pub description: String,
}

/// Every rule a request broke, in field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Rejection {
    /// At least one violation.
    pub violations: Vec<Violation>,
}

impl Rejection {
    /// A rejection of one field.
    pub fn single(field: &'static str, code: &'static str, description: String) -> Self {
        let mut bad = Violations::default();
        bad.add(field, code, description);
        Self { violations: bad.0 }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid request: ")?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl Rejection {
    /// The ECS code of the first violation: ErrorInfo's reason.
    pub fn code(&self) -> &'static str {
        self.violations
            .first()
            .map_or("MissingParameter", |v| v.code)
    }
}

#[derive(Default)]
struct Violations(Vec<Violation>);

impl Violations {
    fn add(&mut self, field: &'static str, code: &'static str, description: impl Into<String>) {
        self.0.push(Violation {
            field: Cow::Borrowed(field),
            code,
            description: description.into(),
        });
    }
}

/// Checks `request` against every rule it alone decides.
///
/// When the caller sent no ClientToken, a new one (a UUID) is made, so the
/// call is idempotent on every retry the gateway makes.
///
/// # Errors
///
/// [`Rejection`] with one [`Violation`] per broken rule.
pub fn modify_request(
    request: pb::ModifyInstanceNetworkSpecRequest,
) -> Result<ModifyRequest, Rejection> {
    let mut bad = Violations::default();

    check_region_id(&request.region_id, &mut bad);
    check_instance_id(&request.instance_id, &mut bad);

    let network_charge_type = match pb::NetworkChargeType::try_from(request.network_charge_type) {
        Ok(pb::NetworkChargeType::Unspecified) => None,
        Ok(pb::NetworkChargeType::PayByBandwidth) => Some(NetworkChargeType::PayByBandwidth),
        Ok(pb::NetworkChargeType::PayByTraffic) => Some(NetworkChargeType::PayByTraffic),
        Err(_) => {
            bad.add(
                "network_charge_type",
                "InvalidInternetChargeType.ValueNotSupported",
                format!(
                    "unknown value {}: expected NETWORK_CHARGE_TYPE_PAY_BY_BANDWIDTH or NETWORK_CHARGE_TYPE_PAY_BY_TRAFFIC",
                    request.network_charge_type
                ),
            );
            None
        }
    };

    let bandwidth_out = check_bandwidth_out(
        request.internet_max_bandwidth_out,
        network_charge_type,
        &mut bad,
    );
    let bandwidth_in = check_bandwidth_in(
        request.internet_max_bandwidth_in,
        request.internet_max_bandwidth_out,
        &mut bad,
    );

    if !request.isp.is_empty() {
        bad.add(
            "isp",
            "InvalidIspType.ValueNotSupported",
            "ISP is in invitational preview at ECS and not yet available: leave it empty",
        );
    }

    if request.allocate_public_ip == Some(true) && request.internet_max_bandwidth_out == Some(0) {
        bad.add(
            "allocate_public_ip",
            "InvalidParam.AllocatePublicIp",
            "a public IP address needs an outbound bandwidth above 0: set internet_max_bandwidth_out to 1 or more",
        );
    }

    let temporary = check_temporary_upgrade(
        request.start_time.as_ref(),
        request.end_time.as_ref(),
        request.internet_max_bandwidth_out.is_some(),
        &mut bad,
    );

    let client_token = check_client_token(request.client_token, &mut bad);
    let account_id = check_account_id(request.account_id, &mut bad);

    if request.internet_max_bandwidth_out.is_none()
        && request.internet_max_bandwidth_in.is_none()
        && request.network_charge_type == 0
        && request.allocate_public_ip.is_none()
    {
        bad.add(
            "internet_max_bandwidth_out",
            "MissingParameter",
            "nothing to change: set at least one of internet_max_bandwidth_out, internet_max_bandwidth_in, network_charge_type or allocate_public_ip",
        );
    }

    if !bad.0.is_empty() {
        return Err(Rejection { violations: bad.0 });
    }
    Ok(ModifyRequest {
        region_id: request.region_id,
        instance_id: request.instance_id,
        bandwidth_out,
        bandwidth_in,
        network_charge_type,
        allocate_public_ip: request.allocate_public_ip,
        temporary,
        auto_pay: request.auto_pay,
        client_token,
        account_id,
    })
}

/// The target account: empty for the default account, else an account ID
/// (ASCII digits, at most 32).
fn check_account_id(account_id: String, bad: &mut Violations) -> Option<String> {
    if account_id.is_empty() {
        return None;
    }
    if account_id.len() > 32 || !crate::account::AccountId::is_valid(&account_id) {
        bad.add(
            "account_id",
            "InvalidAccountId.Malformed",
            "expected an Alibaba Cloud account ID (ASCII digits, such as 1234567890123456), or empty for the gateway's default account",
        );
        return None;
    }
    Some(account_id)
}

/// A region ID: lower-case ASCII letters and digits in at least two
/// dash-separated parts, the first letters only (`cn-hangzhou`,
/// `ap-southeast-1`, `cn-shanghai-finance-1`). It becomes part of a host name,
/// so nothing else may pass.
pub fn is_region_id(value: &str) -> bool {
    let mut parts = value.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    let mut rest = 0;
    let rest_ok = parts.all(|p| {
        rest += 1;
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    value.len() <= 64 && first_ok && rest_ok && rest >= 1
}

/// An instance ID: `i-` then 1 to 62 lower-case ASCII letters, digits or dashes.
pub fn is_instance_id(value: &str) -> bool {
    value.strip_prefix("i-").is_some_and(|rest| {
        (1..=62).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

fn check_region_id(value: &str, bad: &mut Violations) {
    if value.is_empty() {
        bad.add(
            "region_id",
            "MissingParameter",
            "required: the instance's region, such as cn-hangzhou",
        );
    } else if !is_region_id(value) {
        bad.add(
            "region_id",
            "InvalidRegionId.Malformed",
            "expected a region ID such as cn-hangzhou: lower-case letters and digits in dash-separated parts",
        );
    }
}

fn check_instance_id(value: &str, bad: &mut Violations) {
    if value.is_empty() {
        bad.add(
            "instance_id",
            "MissingParameter",
            "required: the instance ID, such as i-bp67acfmxazb4ph3abcd",
        );
    } else if !is_instance_id(value) {
        bad.add(
            "instance_id",
            "InvalidInstanceId.Malformed",
            "expected an instance ID such as i-bp67acfmxazb4ph3abcd: i- then 1 to 62 lower-case letters, digits or dashes",
        );
    }
}

fn check_bandwidth_out(
    value: Option<i32>,
    charge: Option<NetworkChargeType>,
    bad: &mut Violations,
) -> Option<u32> {
    const CODE: &str = "InvalidInternetMaxBandwidthOut.ValueNotSupported";
    let value = value?;
    if !(0..=MAX_BANDWIDTH_OUT).contains(&value) {
        bad.add(
            "internet_max_bandwidth_out",
            CODE,
            format!(
                "{value} is out of range: expected 0 to {MAX_BANDWIDTH_OUT} Mbit/s \
                 (0 to {MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC} for pay-by-traffic and pay-as-you-go instances)"
            ),
        );
        return None;
    }
    if charge == Some(NetworkChargeType::PayByTraffic) && value > MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC {
        bad.add(
            "internet_max_bandwidth_out",
            CODE,
            format!("{value} is out of range: expected 0 to {MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC} Mbit/s with pay-by-traffic"),
        );
        return None;
    }
    u32::try_from(value).ok()
}

fn check_bandwidth_in(value: Option<i32>, out: Option<i32>, bad: &mut Violations) -> Option<u32> {
    const CODE: &str = "InvalidInternetMaxBandwidthIn.ValueNotSupported";
    let value = value?;
    // Without a valid outbound value in the request, the bound depends on the
    // instance's current bandwidth, which ECS checks; 200 is the largest any
    // instance can have.
    let (max, rule) = match out.filter(|o| (0..=MAX_BANDWIDTH_OUT).contains(o)) {
        Some(o) if o <= SMALL_BANDWIDTH_OUT => (
            SMALL_BANDWIDTH_OUT,
            format!(
                "expected 1 to {SMALL_BANDWIDTH_OUT} Mbit/s when internet_max_bandwidth_out is {SMALL_BANDWIDTH_OUT} or less"
            ),
        ),
        Some(o) => (
            o,
            format!("expected 1 to internet_max_bandwidth_out ({o}) Mbit/s"),
        ),
        None => (
            MAX_BANDWIDTH_OUT,
            format!("expected 1 to {MAX_BANDWIDTH_OUT} Mbit/s"),
        ),
    };
    if !(1..=max).contains(&value) {
        bad.add(
            "internet_max_bandwidth_in",
            CODE,
            format!("{value} is out of range: {rule}"),
        );
        return None;
    }
    u32::try_from(value).ok()
}

/// Converts a protobuf timestamp, or `None` when it is outside what
/// protobuf allows (nanos outside 0..1e9, years outside 1 to 9999).
fn to_datetime(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    const MIN_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const MAX_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
        return None;
    }
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

fn check_temporary_upgrade(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    has_bandwidth_out: bool,
    bad: &mut Violations,
) -> Option<TemporaryUpgrade> {
    const START: &str = "InvalidStartTime.ValueNotSupported";
    const END: &str = "InvalidEndTime.ValueNotSupported";
    const CONFLICT: &str = "InvalidParameter.Conflict";

    let start = start.and_then(|ts| match to_datetime(ts) {
        None => {
            bad.add("start_time", START, "not a valid timestamp: expected a UTC time between years 1 and 9999");
            None
        }
        Some(t) if ts.seconds.rem_euclid(60) != 0 || ts.nanos != 0 => {
            bad.add(
                "start_time",
                START,
                format!(
                    "{} is not on a whole minute: StartTime is accurate to the minute (yyyy-MM-ddTHH:mmZ), seconds and nanos must be 0",
                    t.to_rfc3339()
                ),
            );
            None
        }
        Some(t) => Some(t),
    });
    let end = end.and_then(|ts| match to_datetime(ts) {
        None => {
            bad.add("end_time", END, "not a valid timestamp: expected a UTC time between years 1 and 9999");
            None
        }
        Some(t) if ts.seconds.rem_euclid(3600) != 0 || ts.nanos != 0 => {
            bad.add(
                "end_time",
                END,
                format!(
                    "{} is not on a whole hour: EndTime is accurate to the hour (yyyy-MM-ddTHHZ), minutes, seconds and nanos must be 0",
                    t.to_rfc3339()
                ),
            );
            None
        }
        Some(t) => Some(t),
    });
    // Pairing is judged on presence, so a malformed time does not also
    // report its partner as missing.
    match (start.is_some() || bad_field(bad, "start_time"), end.is_some() || bad_field(bad, "end_time")) {
        (true, false) => bad.add("end_time", CONFLICT, "a temporary upgrade needs both start_time and end_time: end_time is missing"),
        (false, true) => bad.add("start_time", CONFLICT, "a temporary upgrade needs both start_time and end_time: start_time is missing"),
        (true, true) if !has_bandwidth_out => bad.add(
            "internet_max_bandwidth_out",
            CONFLICT,
            "a temporary upgrade (start_time, end_time) needs the upgraded internet_max_bandwidth_out",
        ),
        _ => {}
    }
    let (start, end) = (start?, end?);
    if end - start < MIN_TEMPORARY_UPGRADE {
        bad.add(
            "end_time",
            END,
            format!(
                "{} is less than 3 hours after start_time {}: the interval must be at least 3 hours",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        );
        return None;
    }
    Some(TemporaryUpgrade { start, end })
}

fn bad_field(bad: &Violations, field: &str) -> bool {
    bad.0.iter().any(|v| v.field == field)
}

fn check_client_token(value: String, bad: &mut Violations) -> ClientToken {
    const CODE: &str = "InvalidClientToken.ValueNotSupported";
    if value.is_empty() {
        return ClientToken {
            value: uuid::Uuid::new_v4().to_string(),
            generated: true,
        };
    }
    if !value.is_ascii() {
        bad.add("client_token", CODE, "must contain only ASCII characters");
    } else if value.len() > MAX_CLIENT_TOKEN_LEN {
        bad.add(
            "client_token",
            CODE,
            format!(
                "is {} characters long: at most {MAX_CLIENT_TOKEN_LEN} are allowed",
                value.len()
            ),
        );
    }
    ClientToken {
        value,
        generated: false,
    }
}

#[cfg(test)]
mod tests;
