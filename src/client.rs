//! `ecs-gateway call`: a command-line client for the gateway, as a service
//! team would use one generated from `proto/`. It prints the response on one
//! line on stdout, or the error with every `google.rpc` detail on stderr; with
//! `--output json`, the proto3 JSON mapping of the response or of the status
//! (as grpcurl prints them) on stdout. The exit code says which class of
//! answer it was ([`Outcome`]), so scripts can branch without parsing.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic_types::StatusExt;

use crate::pb;
use crate::pb::instance_network_service_client::InstanceNetworkServiceClient;

/// The flags of a `ModifyInstanceNetworkSpec` request, shared by `call` and
/// `policy explain`.
#[derive(Debug, Clone, clap::Args)]
pub struct RequestArgs {
    /// Region ID (the demo's by default).
    #[arg(long, default_value = crate::simulator::DEMO_REGION)]
    pub region_id: String,
    /// Instance ID.
    #[arg(long)]
    pub instance_id: String,
    /// Outbound bandwidth, Mbit/s.
    #[arg(long, allow_negative_numbers = true)]
    pub bandwidth_out: Option<i32>,
    /// Inbound bandwidth, Mbit/s.
    #[arg(long, allow_negative_numbers = true)]
    pub bandwidth_in: Option<i32>,
    /// ISP (invitational preview at ECS: rejected).
    #[arg(long, default_value = "")]
    pub isp: String,
    /// Network billing method to convert to.
    #[arg(long, value_enum)]
    pub network_charge_type: Option<ChargeArg>,
    /// Allocate a public IP address.
    #[arg(long)]
    pub allocate_public_ip: Option<bool>,
    /// Start of a temporary upgrade: RFC 3339 or ECS's yyyy-MM-ddTHH:mmZ.
    #[arg(long, value_parser = parse_time)]
    pub start_time: Option<DateTime<Utc>>,
    /// End of a temporary upgrade: RFC 3339 or ECS's yyyy-MM-ddTHHZ.
    #[arg(long, value_parser = parse_time)]
    pub end_time: Option<DateTime<Utc>>,
    /// Pay automatically (ECS's default: true).
    #[arg(long)]
    pub auto_pay: Option<bool>,
    /// Idempotency token; the gateway makes one when empty.
    #[arg(long, default_value = "")]
    pub client_token: String,
    /// The account that owns the instance (the request's `account_id`);
    /// empty: the gateway's default account.
    #[arg(long = "account", value_name = "ACCOUNT_ID", default_value = "")]
    pub account: String,
}

/// The `call` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    /// The gateway's address (the demo's by default).
    #[arg(long, env = "ECS_GATEWAY_ENDPOINT", default_value = default_endpoint())]
    pub endpoint: String,
    /// The request.
    #[command(flatten)]
    pub request: RequestArgs,
    /// Deadline of the call, such as 5s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Call as this SPIFFE ID, through `x-forwarded-client-cert` (gateways
    /// that trust the header, such as the demo).
    #[arg(long = "as", value_name = "SPIFFE_ID")]
    pub as_identity: Option<String>,
    /// A JWT to send as `authorization: Bearer <JWT>`; from the environment,
    /// it stays out of the process list and the shell's history.
    #[arg(long, env = "ECS_GATEWAY_TOKEN", hide_env_values = true, value_parser = |s: &str| Ok::<_, String>(crate::credentials::Secret::new(s)))]
    pub token: Option<crate::credentials::Secret>,
    /// Extra gRPC metadata, `key=value`, repeatable.
    #[arg(long = "metadata", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// `text`: the response on one line (`applied: request_id …,
    /// client_token …`), an error described on stderr. `json`: the proto3 JSON mapping (lowerCamelCase,
    /// as grpcurl prints it) of the response, or of the error's
    /// google.rpc.Status with its details, on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// For scripts: proto3 JSON.
    Json,
}

/// The class of a call's answer, and the command's exit code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: the change was accepted.
    Success = 0,
    /// 1: anything else (the gateway's own failure, an unknown answer).
    Other = 1,
    /// 3: the request must change (INVALID_ARGUMENT, OUT_OF_RANGE) or the
    /// instance is not in a state for it (FAILED_PRECONDITION, NOT_FOUND,
    /// ALREADY_EXISTS).
    CallersMistake = 3,
    /// 4: denied (PERMISSION_DENIED) or not authenticated (UNAUTHENTICATED).
    Denied = 4,
    /// 5: retry with the same client_token (UNAVAILABLE, ABORTED,
    /// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, or the gateway unreachable);
    /// the error's RetryInfo says when.
    Retryable = 5,
}

/// The exit codes, for `call --help`.
pub const EXIT_CODES: &str = "Exit codes:
  0  success: the change was accepted
  1  other: the gateway's own failure (INTERNAL, UNKNOWN, ...), a bad --metadata
  2  bad command line
  3  the caller's mistake: the request must change (INVALID_ARGUMENT, OUT_OF_RANGE)
     or the instance is not in a state for it (FAILED_PRECONDITION, NOT_FOUND)
  4  denied: PERMISSION_DENIED (the policies' diagnostic is in the details) or UNAUTHENTICATED
  5  retryable: retry with the same --client-token (UNAVAILABLE, ABORTED,
     RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, or the gateway unreachable), after
     the RetryInfo delay when there is one";

impl Outcome {
    /// The class of a gRPC status.
    pub fn of(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::Ok => Self::Success,
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists => Self::CallersMistake,
            Code::PermissionDenied | Code::Unauthenticated => Self::Denied,
            Code::Unavailable
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::DeadlineExceeded => Self::Retryable,
            _ => Self::Other,
        }
    }
}

/// `--network-charge-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChargeArg {
    /// PayByBandwidth.
    PayByBandwidth,
    /// PayByTraffic.
    PayByTraffic,
}

/// The demo's gRPC address.
fn default_endpoint() -> String {
    format!("http://{}", crate::demo::DEFAULT_LISTEN)
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let minute = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%MZ");
    let hour = value
        .strip_suffix('Z')
        .and_then(|v| NaiveDateTime::parse_from_str(&format!("{v}:00"), "%Y-%m-%dT%H:%M").ok());
    minute
        .ok()
        .or(hour)
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{value:?} is not RFC 3339, yyyy-MM-ddTHH:mmZ or yyyy-MM-ddTHHZ"))
}

fn parse_pair(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{value:?} is not key=value"))
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl RequestArgs {
    /// The request message.
    pub fn request(&self) -> pb::ModifyInstanceNetworkSpecRequest {
        pb::ModifyInstanceNetworkSpecRequest {
            region_id: self.region_id.clone(),
            instance_id: self.instance_id.clone(),
            internet_max_bandwidth_out: self.bandwidth_out,
            internet_max_bandwidth_in: self.bandwidth_in,
            isp: self.isp.clone(),
            network_charge_type: match self.network_charge_type {
                None => pb::NetworkChargeType::Unspecified,
                Some(ChargeArg::PayByBandwidth) => pb::NetworkChargeType::PayByBandwidth,
                Some(ChargeArg::PayByTraffic) => pb::NetworkChargeType::PayByTraffic,
            } as i32,
            allocate_public_ip: self.allocate_public_ip,
            start_time: self.start_time.map(timestamp),
            end_time: self.end_time.map(timestamp),
            auto_pay: self.auto_pay,
            client_token: self.client_token.clone(),
            account_id: self.account.clone(),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway could not be reached.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The address.
        endpoint: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// A `--metadata` pair is not valid gRPC metadata.
    #[error("--metadata {0}: not a valid gRPC metadata key or value")]
    Metadata(String),
    /// The gateway answered with an error.
    #[error("{}", describe(.0))]
    Status(tonic::Status),
}

/// Sends the call.
///
/// # Errors
///
/// See [`Error`].
pub async fn call(args: &CallArgs) -> Result<pb::ModifyInstanceNetworkSpecResponse, Error> {
    let mut client = InstanceNetworkServiceClient::connect(args.endpoint.clone())
        .await
        .map_err(|source| Error::Connect {
            endpoint: args.endpoint.clone(),
            source,
        })?;
    let mut request = tonic::Request::new(args.request.request());
    request.set_timeout(args.timeout);
    // As the demo's stand-in sidecar would: the caller's certificate and
    // the address it came from (loopback); `--metadata` may override both.
    let identity = args.as_identity.iter().flat_map(|id| {
        [
            ("x-forwarded-client-cert".to_owned(), format!("URI={id}")),
            ("x-forwarded-for".to_owned(), "127.0.0.1".to_owned()),
        ]
    });
    let token = args
        .token
        .iter()
        .map(|t| ("authorization".to_owned(), format!("Bearer {}", t.expose())));
    for (key, value) in identity.chain(token).chain(args.metadata.iter().cloned()) {
        let k =
            MetadataKey::from_bytes(key.as_bytes()).map_err(|_| Error::Metadata(key.clone()))?;
        let v =
            MetadataValue::try_from(value.as_str()).map_err(|_| Error::Metadata(key.clone()))?;
        request.metadata_mut().insert(k, v);
    }
    client
        .modify_instance_network_spec(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(Error::Status)
}

/// What to try, when a call went wrong in a way a newcomer hits: against
/// the demo, naming no caller.
pub fn hint(args: &CallArgs, error: &Error) -> Option<&'static str> {
    let Error::Status(status) = error else {
        return None;
    };
    let nobody = args.as_identity.is_none() && args.token.is_none();
    (status.code() == tonic::Code::Unauthenticated && nobody).then_some(
        "name the caller: against the demo, --as spiffe://demo.local/sa/netops (it stands in \
         for a mesh sidecar); against a gateway, --token JWT or a client certificate",
    )
}

impl Error {
    /// The class of this failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Connect { .. } => Outcome::Retryable,
            Self::Metadata(_) => Outcome::Other,
            Self::Status(status) => Outcome::of(status.code()),
        }
    }
}

/// The response in the proto3 JSON mapping: lowerCamelCase names, fields
/// with their default value left out (as grpcurl prints it).
pub fn to_proto_json(response: &pb::ModifyInstanceNetworkSpecResponse) -> String {
    let mut out = serde_json::Map::new();
    for (name, value) in [
        ("orderId", &response.order_id),
        ("requestId", &response.request_id),
        ("clientToken", &response.client_token),
    ] {
        if !value.is_empty() {
            out.insert(name.to_owned(), value.clone().into());
        }
    }
    serde_json::to_string_pretty(&out).unwrap_or_default()
}

/// A google.protobuf.Duration in the proto3 JSON mapping: seconds with up
/// to nine fractional digits and an `s`.
fn duration_json(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => format!("{}s", d.as_secs()),
        nanos => {
            let fraction = format!("{nanos:09}");
            format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
        }
    }
}

/// The error as a google.rpc.Status in the proto3 JSON mapping, with its
/// details (`@type` and their fields), as `grpcurl -format-error` prints it.
pub fn status_to_proto_json(status: &tonic::Status) -> String {
    use serde_json::{Value, json};
    let details = status.get_error_details();
    let mut out: Vec<Value> = Vec::new();
    if let Some(info) = details.error_info() {
        let metadata: std::collections::BTreeMap<_, _> = info.metadata.iter().collect();
        out.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": info.reason,
            "domain": info.domain,
            "metadata": metadata,
        }));
    }
    if let Some(bad) = details.bad_request() {
        let violations: Vec<Value> = bad
            .field_violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description, "reason": v.reason}))
            .collect();
        out.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": violations,
        }));
    }
    if let Some(delay) = details.retry_info().and_then(|r| r.retry_delay) {
        out.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": duration_json(delay),
        }));
    }
    let mut status_json = serde_json::Map::new();
    status_json.insert("code".into(), (status.code() as i32).into());
    status_json.insert("message".into(), status.message().into());
    if !out.is_empty() {
        status_json.insert("details".into(), out.into());
    }
    serde_json::to_string_pretty(&status_json).unwrap_or_default()
}

/// The response for people, on one line (`--output json` gives the one
/// JSON shape, proto3's).
pub fn describe_response(response: &pb::ModifyInstanceNetworkSpecResponse) -> String {
    let mut out = format!(
        "applied: request_id {}, client_token {}",
        response.request_id, response.client_token
    );
    if !response.order_id.is_empty() {
        out.push_str(&format!(", order_id {}", response.order_id));
    }
    out
}

/// A status with all its details, one per line.
pub fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    let details = status.get_error_details();
    if let Some(info) = details.error_info() {
        let _ = write!(
            out,
            "\n  reason:    {} (domain {})",
            info.reason, info.domain
        );
        let mut meta: Vec<_> = info.metadata.iter().collect();
        meta.sort();
        for (k, v) in meta {
            let _ = write!(out, "\n  {k}: {v}");
        }
    }
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            let _ = write!(
                out,
                "\n  field {} [{}]: {}",
                v.field, v.reason, v.description
            );
        }
    }
    if let Some(delay) = details.retry_info().and_then(|r| r.retry_delay) {
        let _ = write!(out, "\n  retry after {delay:?} with the same client_token");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_has_one_class() {
        use tonic::Code;
        let classes: Vec<(Code, Outcome)> = (0..=16)
            .map(|n| (Code::from(n), Outcome::of(Code::from(n))))
            .collect();
        for (code, outcome) in &classes {
            assert!(
                EXIT_CODES.contains(&format!("\n  {}  ", *outcome as u8)),
                "{code:?}: exit code {} is not documented",
                *outcome as u8
            );
        }
        assert_eq!(Outcome::of(Code::PermissionDenied), Outcome::Denied);
        assert_eq!(Outcome::of(Code::ResourceExhausted), Outcome::Retryable);
        assert_eq!(
            Outcome::of(Code::FailedPrecondition),
            Outcome::CallersMistake
        );
        assert_eq!(Outcome::of(Code::Internal), Outcome::Other);
    }

    #[test]
    fn durations_print_as_proto3_json() {
        assert_eq!(duration_json(Duration::from_secs(300)), "300s");
        assert_eq!(duration_json(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration_json(Duration::from_nanos(1)), "0.000000001s");
    }

    #[test]
    fn parses_rfc3339_and_ecs_time_formats() {
        let want: DateTime<Utc> = "2030-01-01T10:00:00Z".parse().unwrap();
        assert_eq!(parse_time("2030-01-01T10:00:00Z"), Ok(want));
        assert_eq!(parse_time("2030-01-01T10:00Z"), Ok(want));
        assert_eq!(parse_time("2030-01-01T10Z"), Ok(want));
        assert!(parse_time("tomorrow").is_err());
    }
}
