//! The one place that turns the gateway's errors into `tonic::Status`es with
//! `google.rpc` details: `ErrorInfo` (reason = the ECS or gateway code from
//! [`catalogue`], domain, metadata with ECS's request id and HTTP status),
//! `BadRequest` field violations for invalid input, and `RetryInfo` where
//! retrying the same call can succeed.
//!
//! What a caller sees is chosen here; the full error chain goes to the log.

pub mod catalogue;

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::policy::{Decision, Outcome};
use crate::telemetry::chain;
use crate::{admission, credentials, identity, policy, upstream, validate};
use catalogue::Entry;

/// Every way a call can fail, one variant per stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller is not authenticated.
    #[error(transparent)]
    Identity(#[from] identity::Error),
    /// The policies denied the call.
    #[error("{} denied", .0.principal)]
    Denied(Box<Decision>),
    /// The request broke documented rules.
    #[error(transparent)]
    Invalid(#[from] validate::Rejection),
    /// The gateway is stopping and the call could not finish in time.
    #[error("the gateway is shutting down")]
    ShuttingDown {
        /// The call's ClientToken: retrying with it is safe.
        client_token: String,
    },
    /// The call was not admitted (load shedding, message limits).
    #[error(transparent)]
    Admission(#[from] admission::Error),
    /// The instance lookup refused the call: the caller (or all callers)
    /// asked ECS as often as they may for now.
    #[error(transparent)]
    Lookup(crate::lookup::Error),
    /// The gateway failed; the details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
    /// The gateway failed after the call was sent on: the caller gets its
    /// ClientToken, to retry without applying the change twice.
    #[error("internal error: {detail}")]
    Aborted {
        /// What failed (logged only).
        detail: String,
        /// The call's ClientToken.
        client_token: String,
    },
    /// Forwarding failed or ECS refused.
    #[error("{source}")]
    Upstream {
        /// The cause.
        #[source]
        source: upstream::Error,
        /// The ClientToken of the call: retrying with it is safe.
        client_token: String,
    },
}

/// What the upstream stage needs of the catalogue, for the server to give it.
pub const ECS_CODES: upstream::EcsCodes = upstream::EcsCodes {
    retry_within_call: catalogue::retry_within_call,
    ecs_failed: catalogue::ecs_failed,
    known: catalogue::known,
};

/// ErrorInfo metadata keys.
pub mod metadata {
    /// ECS's RequestId.
    pub const REQUEST_ID: &str = "request_id";
    /// ECS's HTTP status.
    pub const HTTP_STATUS: &str = "http_status";
    /// ECS's troubleshooting link.
    pub const RECOMMEND: &str = "recommend";
    /// ECS's answering host.
    pub const HOST_ID: &str = "host_id";
    /// The call's ClientToken.
    pub const CLIENT_TOKEN: &str = "client_token";
    /// The first invalid field.
    pub const FIELD: &str = "field";
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Identity(error) => {
                let entry = catalogue::get(error.code());
                from_entry(entry, error.to_string(), HashMap::new())
            }
            Error::Denied(decision) => denied(&decision),
            Error::ShuttingDown { client_token } => {
                let entry = catalogue::get("GatewayShuttingDown");
                let meta = HashMap::from([(metadata::CLIENT_TOKEN.to_owned(), client_token)]);
                from_entry(entry, entry.message.to_owned(), meta)
            }
            Error::Admission(error) => admission(&error),
            Error::Lookup(crate::lookup::Error::Throttled { limit, scope }) => shed(
                "GatewayLookupThrottled",
                limit as usize,
                &format!("instance lookups per second {scope}"),
            ),
            Error::Lookup(crate::lookup::Error::Failed(_)) => {
                // Failures deny through the decision; never a status here.
                let entry = catalogue::get("GatewayInternalError");
                from_entry(entry, entry.message.to_owned(), HashMap::new())
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                let entry = catalogue::get("GatewayInternalError");
                from_entry(entry, entry.message.to_owned(), HashMap::new())
            }
            Error::Aborted {
                detail,
                client_token,
            } => {
                tracing::error!(%detail, "internal error after the call was sent on");
                let entry = catalogue::get("GatewayInternalError");
                let meta = HashMap::from([(metadata::CLIENT_TOKEN.to_owned(), client_token)]);
                from_entry(entry, entry.message.to_owned(), meta)
            }
            Error::Invalid(rejection) => invalid(&rejection),
            Error::Upstream {
                source,
                client_token,
            } => {
                // A caller that let the gateway make the token needs it to
                // retry without applying a change twice.
                let meta = HashMap::from([(metadata::CLIENT_TOKEN.to_owned(), client_token)]);
                upstream(source, meta)
            }
        }
    }
}

/// The HTTP response of a call the identity layer refused.
pub fn reject_identity(error: identity::Error) -> http::Response<tonic::body::Body> {
    Status::from(Error::Identity(error)).into_http()
}

/// The HTTP response of a call the admission layer refused.
pub fn reject_admission(error: admission::Error) -> http::Response<tonic::body::Body> {
    Status::from(Error::Admission(error)).into_http()
}

/// The trailers of a health or reflection stream the admission layer ended.
pub fn end_admitted_stream(error: admission::Error) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    let status = Status::from(Error::Admission(error));
    if let Err(status) = status.add_header(&mut trailers) {
        // The status's own headers could not be written: a bare one.
        tracing::warn!(%status, "cannot write a stream's status trailers");
        trailers.insert("grpc-status", http::HeaderValue::from_static("4"));
    }
    trailers
}

/// The admission layer's answers, from this mapping.
pub const ADMISSION: admission::Refusals = admission::Refusals {
    reject: reject_admission,
    trailers: end_admitted_stream,
};

fn admission(error: &admission::Error) -> Status {
    let with_detail = |code: &str, detail: String| {
        let entry = catalogue::get(code);
        from_entry(
            entry,
            format!("{} ({detail})", entry.message),
            HashMap::new(),
        )
    };
    match *error {
        admission::Error::NoCaller => {
            let entry = catalogue::get(identity::Error::Missing.code());
            from_entry(entry, identity::Error::Missing.to_string(), HashMap::new())
        }
        admission::Error::Overloaded { limit } => {
            shed("GatewayOverloaded", limit, "calls in flight")
        }
        admission::Error::CallerOverloaded { limit } => {
            shed("GatewayCallerOverloaded", limit, "calls per caller")
        }
        admission::Error::ReceiveTimeout { timeout } => {
            with_detail("GatewayReceiveTimeout", format!("within {timeout:?}"))
        }
        admission::Error::MessageTooLarge { limit } => {
            with_detail("GatewayMessageTooLarge", format!("limit {limit} bytes"))
        }
        admission::Error::Cancelled(_) => {
            let entry = catalogue::get("GatewayCallCancelled");
            from_entry(entry, entry.message.to_owned(), HashMap::new())
        }
        admission::Error::StreamsExhausted { limit, scope } => shed(
            "GatewayStreamsExhausted",
            limit,
            &format!("health and reflection streams {scope}"),
        ),
        admission::Error::StreamIdle { idle } => {
            with_detail("GatewayStreamExpired", format!("nothing sent for {idle:?}"))
        }
        admission::Error::StreamDeadline { limit } => {
            with_detail("GatewayStreamExpired", format!("open for {limit:?}"))
        }
    }
}

/// A call refused for want of a place: the limit in the message and the
/// metadata.
fn shed(code: &str, limit: usize, unit: &str) -> Status {
    let entry = catalogue::get(code);
    let meta = HashMap::from([("limit".to_owned(), limit.to_string())]);
    from_entry(
        entry,
        format!("{} (limit {limit} {unit})", entry.message),
        meta,
    )
}

/// A denial carries what RAM's diagnostic carries (the `AccessDeniedDetail`
/// of RAM's errors): the denied action, the resource, the principal, the
/// deny type, which policy type (layer) denied, and the determining policies.
fn denied(decision: &Decision) -> Status {
    let Outcome::Deny(denial) = &decision.outcome else {
        // Never called for an allowed decision; fail closed all the same.
        return Status::permission_denied("denied");
    };
    let entry = catalogue::get("AccessDenied");
    let mut meta = HashMap::from([
        ("AuthAction".to_owned(), denial.action.to_owned()),
        ("AuthResource".to_owned(), decision.resource.clone()),
        ("AuthPrincipal".to_owned(), decision.principal.clone()),
        (
            "NoPermissionType".to_owned(),
            denial.kind.as_str().to_owned(),
        ),
        (
            "PolicyType".to_owned(),
            denial.layer.ram_policy_type().to_owned(),
        ),
        ("PolicyVersion".to_owned(), decision.policy_version.clone()),
    ]);
    if !denial.policies.is_empty() {
        meta.insert("DeterminingPolicies".to_owned(), denial.policies.join(","));
    }
    let why = match (
        denial.kind,
        denial.policies.is_empty(),
        denial.errors.first(),
    ) {
        (_, _, Some(error)) if denial.policies.is_empty() => error.clone(),
        (policy::DenyKind::ExplicitDeny, false, Some(_)) => {
            format!(
                "policy {} failed to evaluate, which denies",
                denial.policies.join(", ")
            )
        }
        (policy::DenyKind::ExplicitDeny, _, _) => {
            format!("explicitly denied by {}", denial.policies.join(", "))
        }
        (policy::DenyKind::ImplicitDeny, _, _) => "no policy allows it".to_owned(),
    };
    let message = format!(
        "{} denied {} on {}: {} ({} in the {} layer)",
        decision.principal,
        denial.action,
        decision.resource,
        why,
        denial.kind.as_str(),
        denial.layer.as_str()
    );
    from_entry(entry, message, meta)
}

fn invalid(rejection: &validate::Rejection) -> Status {
    let code = rejection.code();
    let mut meta = HashMap::new();
    if let Some(first) = rejection.violations.first() {
        meta.insert(metadata::FIELD.to_owned(), first.field.to_string());
    }
    let mut details = ErrorDetails::new();
    details.set_error_info(code, catalogue::get(code).domain(), meta);
    details.set_bad_request(
        rejection
            .violations
            .iter()
            .map(|v| FieldViolation {
                field: v.field.to_string(),
                description: v.description.clone(),
                reason: v.code.to_owned(),
                localized_message: None,
            })
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, rejection.to_string(), details)
}

fn from_entry(entry: &Entry, message: String, meta: HashMap<String, String>) -> Status {
    with_retry(entry, message, meta, entry.retry_after)
}

/// A status for `entry` with its own retry delay (the catalogue's, or one
/// known only at run time).
fn with_retry(
    entry: &Entry,
    message: String,
    meta: HashMap<String, String>,
    retry_after: Option<std::time::Duration>,
) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(entry.code, entry.domain(), meta);
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(entry.grpc, message, details)
}

fn upstream(error: upstream::Error, mut meta: HashMap<String, String>) -> Status {
    match error {
        upstream::Error::Ecs(ecs) => ecs_error(*ecs, meta),
        upstream::Error::Timeout(after) => {
            tracing::warn!(?after, "upstream timed out");
            let entry = catalogue::get("UpstreamTimeout");
            from_entry(entry, format!("ECS did not answer within {after:?}"), meta)
        }
        ref transport @ upstream::Error::Transport { .. } => {
            tracing::warn!(error = %chain(transport), "upstream unreachable");
            let entry = catalogue::get("UpstreamUnavailable");
            from_entry(entry, transport.to_string(), meta)
        }
        upstream::Error::CircuitOpen {
            endpoint,
            retry_after,
        } => with_retry(
            catalogue::get("UpstreamCircuitOpen"),
            format!("ECS at {endpoint} is failing; calls resume in {retry_after:?}"),
            meta,
            Some(retry_after),
        ),
        upstream::Error::Credentials(credentials::SignerError::Unserved(unserved)) => {
            Status::invalid_argument(format!("account_id: {unserved}"))
        }
        upstream::Error::Credentials(credentials::SignerError::Unavailable(unavailable)) => {
            // The log names the failing source; the caller learns only that
            // the gateway's credentials are failing, and when to retry.
            tracing::warn!(error = %unavailable, "no usable credentials: the call was not sent");
            with_retry(
                catalogue::get("GatewayCredentialsUnavailable"),
                format!(
                    "the gateway has no usable credentials for account {} right now; nothing was sent",
                    unavailable.account
                ),
                meta,
                Some(unavailable.retry_after),
            )
        }
        upstream::Error::InvalidResponse {
            http_status,
            detail,
        } => {
            tracing::warn!(http_status, %detail, "unreadable upstream answer");
            let entry = catalogue::get("UpstreamInvalidResponse");
            meta.insert(metadata::HTTP_STATUS.to_owned(), http_status.to_string());
            from_entry(
                entry,
                format!("ECS answered HTTP {http_status} with a body that is not ECS's JSON"),
                meta,
            )
        }
    }
}

fn ecs_error(ecs: upstream::EcsError, mut meta: HashMap<String, String>) -> Status {
    meta.insert(
        metadata::HTTP_STATUS.to_owned(),
        ecs.http_status.to_string(),
    );
    for (key, value) in [
        (metadata::REQUEST_ID, &ecs.request_id),
        (metadata::RECOMMEND, &ecs.recommend),
        (metadata::HOST_ID, &ecs.host_id),
    ] {
        if !value.is_empty() {
            meta.insert(key.to_owned(), value.clone());
        }
    }
    let entry = catalogue::lookup(&ecs.code, ecs.http_status);
    let domain = entry.map_or(catalogue::ECS_DOMAIN, Entry::domain);
    let (grpc, retry_after) = catalogue::advice(&ecs.code, ecs.http_status);
    // Each class is logged for what it is. INTERNAL means the gateway's own
    // request was refused (key, signature, clock, RAM permission): ECS's
    // message then quotes the string it signed, which holds the STS token,
    // so the caller gets the catalogue's message and the log the code and
    // request id. UNAVAILABLE is ECS failing: its message is safe to show.
    let message = match grpc {
        Code::Internal => {
            tracing::error!(code = %ecs.code, request_id = %ecs.request_id, http_status = ecs.http_status, "ECS refused the gateway's own request: check its credentials, clock and RAM permissions");
            format!(
                "{}: {}",
                ecs.code,
                entry.map_or("ECS refused the gateway's request", |e| e.message)
            )
        }
        Code::Unavailable => {
            tracing::warn!(code = %ecs.code, request_id = %ecs.request_id, http_status = ecs.http_status, message = %ecs.message, "ECS failed to process the call");
            format!("{}: {}", ecs.code, ecs.message)
        }
        _ => format!("{}: {}", ecs.code, ecs.message),
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(ecs.code, domain, meta);
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(grpc, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecs(code: &str, http_status: u16, message: &str) -> Status {
        Error::Upstream {
            source: upstream::Error::Ecs(Box::new(upstream::EcsError {
                http_status,
                request_id: "REQ-1".into(),
                host_id: "ecs.cn-hangzhou.aliyuncs.com".into(),
                code: code.into(),
                message: message.into(),
                recommend: "https://next.api.aliyun.com/troubleshoot".into(),
            })),
            client_token: "tok-1".into(),
        }
        .into()
    }

    /// Every row of ECS's codes, answered by ECS with its HTTP status,
    /// reaches the caller with the row's gRPC code, ErrorInfo and RetryInfo.
    /// (The gateway's own rows are never what ECS answers: an ECS answer
    /// named like one is ECS's, `catalogue::tests::unknown_codes_map_by_http_status`.)
    #[test]
    fn maps_every_catalogue_row() {
        for entry in catalogue::CATALOGUE
            .iter()
            .filter(|e| e.source != catalogue::Source::Gateway)
        {
            let status = ecs(entry.code, entry.http_status, "detail from ECS");
            assert_eq!(status.code(), entry.grpc, "{}", entry.code);
            let details = status.get_error_details();
            let info = details.error_info().expect("ErrorInfo");
            assert_eq!(info.reason, entry.code);
            assert_eq!(info.domain, entry.domain());
            assert_eq!(
                info.metadata.get("request_id").map(String::as_str),
                Some("REQ-1")
            );
            assert_eq!(
                info.metadata.get("client_token").map(String::as_str),
                Some("tok-1")
            );
            assert_eq!(
                info.metadata.get("http_status"),
                Some(&entry.http_status.to_string())
            );
            assert_eq!(
                details.retry_info().and_then(|r| r.retry_delay),
                entry.retry_after,
                "{}",
                entry.code
            );
            assert!(
                status.message().starts_with(entry.code),
                "{}",
                status.message()
            );
        }
    }

    #[test]
    fn transient_ecs_failures_keep_ecs_message_and_a_retry_hint() {
        for (code, http_status) in [
            ("IpAllocationError", 400),
            ("NAT_PUBLIC_IP_BINDING_FAILED", 403),
            ("Mayi.InternalError", 403),
        ] {
            let status = ecs(code, http_status, "the pool for cn-hangzhou-k is empty");
            assert_eq!(status.code(), Code::Unavailable, "{code}");
            assert!(
                status
                    .message()
                    .ends_with("the pool for cn-hangzhou-k is empty"),
                "{code}: {}",
                status.message()
            );
            assert_eq!(
                status
                    .get_error_details()
                    .retry_info()
                    .and_then(|r| r.retry_delay),
                Some(std::time::Duration::from_secs(1)),
                "{code}"
            );
        }
    }

    /// The log line of an ECS error, at its level.
    fn logged(code: &str, http_status: u16) -> String {
        let buffer = crate::telemetry::CapturedLog::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // Other test threads, without a subscriber, may have cached this
            // callsite's interest as "never" meanwhile: ask again.
            tracing::callsite::rebuild_interest_cache();
            let _ = ecs(code, http_status, "detail from ECS");
        });
        buffer.text()
    }

    /// Each class is logged for what it is: ECS failing is a warning about
    /// ECS, the gateway's own request refused an error about the gateway.
    #[test]
    fn ecs_errors_are_logged_for_what_they_are() {
        for (code, status) in [("IpAllocationError", 400), ("Mayi.InternalError", 403)] {
            let line = logged(code, status);
            assert!(
                line.contains("WARN") && line.contains("ECS failed to process the call"),
                "{code}: {line}"
            );
            assert!(!line.contains("gateway's own request"), "{code}: {line}");
        }
        let line = logged("Forbidden.RAM", 403);
        assert!(
            line.contains("ERROR") && line.contains("ECS refused the gateway's own request"),
            "{line}"
        );
        assert!(!line.contains("detail from ECS"), "{line}");
        assert_eq!(logged("InvalidInstance.EipNotSupport", 403), "");
    }

    #[test]
    fn unknown_codes_map_by_http_status() {
        let status = ecs("Brand.NewStateCode", 403, "the instance is being migrated");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().ends_with("the instance is being migrated"));
        assert_eq!(ecs("Brand.NewCode", 404, "m").code(), Code::NotFound);
        let status = ecs("Brand.NewCode", 503, "m");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.get_error_details().retry_info().is_some());
    }

    /// INTERNAL codes show the catalogue's message: ECS's quotes the signed
    /// string (with the STS token), or, for `Forbidden.RAM` (the gateway's
    /// own RAM identity lacks the permission: an operator's problem), names
    /// the gateway's RAM user and account.
    #[test]
    fn internal_codes_hide_ecs_message() {
        for (code, http_status, text, secret) in [
            (
                "SignatureDoesNotMatch",
                400,
                "server string to sign is: POST&%2F&SecurityToken%3Dsecret-token",
                "secret-token",
            ),
            (
                "Forbidden.RAM",
                403,
                "User acs:ram::1234567890123456:user/gateway-prod not authorized",
                "gateway-prod",
            ),
        ] {
            let status = ecs(code, http_status, text);
            assert_eq!(status.code(), Code::Internal, "{code}");
            assert!(!status.message().contains(secret), "{}", status.message());
            assert!(status.message().starts_with(&format!("{code}: ")));
        }
    }

    #[test]
    fn rejection_carries_every_violation() {
        let status: Status = Error::Invalid(validate::Rejection {
            violations: vec![
                validate::Violation {
                    field: "instance_id".into(),
                    code: "MissingParameter",
                    description: "required".into(),
                },
                validate::Violation {
                    field: "client_token".into(),
                    code: "InvalidClientToken.ValueNotSupported",
                    description: "ASCII only".into(),
                },
            ],
        })
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "MissingParameter");
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("instance_id", "MissingParameter"),
                ("client_token", "InvalidClientToken.ValueNotSupported")
            ]
        );
    }
}
