//! `AuthorizationService/Explain`'s request: the call to explain, checked by
//! the same rules as a real call (its violations named `request.<field>`),
//! and whom, where from and when to explain it for.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::{ModifyRequest, Rejection, Violation, Violations};
use crate::identity::CallerId;
use crate::pb;

/// ECS's code for a malformed parameter, used for the Explain's own fields.
const CODE: &str = "InvalidParameter";
/// The longest SPIFFE ID (the SPIFFE ID specification's limit).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// The longest trust domain.
const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// The longest JWT issuer or subject the gateway looks up.
pub const MAX_JWT_CLAIM_LEN: usize = 1024;

/// A valid Explain request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainRequest {
    /// The call to explain.
    pub request: ModifyRequest,
    /// The identity to explain it for; `None`: the caller's.
    pub identity: Option<CallerId>,
    /// `acs:SourceIp`; `None`: the caller's address.
    pub source_ip: Option<IpAddr>,
    /// `acs:CurrentTime`; `None`: now.
    pub time: Option<DateTime<Utc>>,
    /// `acs:MFAPresent`; `None`: the caller's.
    pub mfa_present: Option<bool>,
    /// `acs:SecureTransport`; `None`: the caller's.
    pub secure_transport: Option<bool>,
}

/// Checks an Explain request: the call by [`super::modify_request`]'s
/// rules, then the Explain's own fields.
///
/// # Errors
///
/// [`Rejection`] listing every violation, the call's first.
pub fn explain_request(message: pb::ExplainRequest) -> Result<ExplainRequest, Rejection> {
    let mut bad = Violations::default();
    let request = match message.request {
        None => {
            bad.add(
                "request",
                "MissingParameter",
                "the call to explain is required",
            );
            None
        }
        Some(request) => match super::modify_request(request) {
            Ok(request) => Some(request),
            Err(rejection) => {
                bad.0
                    .extend(rejection.violations.into_iter().map(|v| Violation {
                        field: Cow::Owned(format!("request.{}", v.field)),
                        ..v
                    }));
                None
            }
        },
    };
    let identity = message
        .identity
        .and_then(|identity| simulated_identity(identity, &mut bad));
    let source_ip = if message.source_ip.is_empty() {
        None
    } else {
        match message.source_ip.parse::<IpAddr>() {
            Ok(ip) => Some(ip.to_canonical()),
            Err(_) => {
                bad.add(
                    "source_ip",
                    CODE,
                    "must be an IPv4 or IPv6 address, such as 10.1.2.3 or 2001:db8::1",
                );
                None
            }
        }
    };
    let time = message.time.and_then(|t| {
        let time = super::to_datetime(&t);
        if time.is_none() {
            bad.add(
                "time",
                CODE,
                "must be a valid timestamp (nanos 0 to 999,999,999, years 1 to 9999)",
            );
        }
        time
    });
    match request {
        Some(request) if bad.0.is_empty() => Ok(ExplainRequest {
            request,
            identity,
            source_ip,
            time,
            mfa_present: message.mfa_present,
            secure_transport: message.secure_transport,
        }),
        _ => Err(Rejection { violations: bad.0 }),
    }
}

fn simulated_identity(identity: pb::SimulatedIdentity, bad: &mut Violations) -> Option<CallerId> {
    match identity.kind {
        None => {
            bad.add(
                "identity",
                CODE,
                "set spiffe_id or jwt, or leave identity unset to explain your own call",
            );
            None
        }
        Some(pb::simulated_identity::Kind::SpiffeId(id)) => match spiffe_id_problem(&id) {
            None => Some(CallerId::Spiffe(id)),
            Some(problem) => {
                bad.add("identity.spiffe_id", CODE, problem);
                None
            }
        },
        Some(pb::simulated_identity::Kind::Jwt(jwt)) => {
            let issuer = claim_problem(&jwt.issuer);
            let subject = claim_problem(&jwt.subject);
            if let Some(problem) = issuer {
                bad.add("identity.jwt.issuer", CODE, problem);
            }
            if let Some(problem) = subject {
                bad.add("identity.jwt.subject", CODE, problem);
            }
            (issuer.is_none() && subject.is_none()).then_some(CallerId::Jwt {
                issuer: jwt.issuer,
                subject: jwt.subject,
            })
        }
    }
}

/// What makes `id` not a SPIFFE ID, by the SPIFFE ID specification:
/// `spiffe://`, a trust domain of lower-case letters, digits, `.`, `-` and
/// `_`, then an optional path of `/`-separated segments of letters, digits,
/// `.`, `-` and `_` (none empty, `.` or `..`), no query or fragment.
pub fn spiffe_id_problem(id: &str) -> Option<String> {
    const EXPECTED: &str = "spiffe://<trust domain>/<path>";
    if id.len() > MAX_SPIFFE_ID_LEN {
        return Some(format!("longer than {MAX_SPIFFE_ID_LEN} bytes"));
    }
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Some(format!("must be a SPIFFE ID, {EXPECTED}"));
    };
    let (domain, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if domain.is_empty() || domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Some(format!(
            "the trust domain must have 1 to {MAX_TRUST_DOMAIN_LEN} characters: {EXPECTED}"
        ));
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Some(
            "the trust domain may hold only lower-case letters, digits, '.', '-' and '_'".into(),
        );
    }
    if path.is_empty() {
        return None;
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Some("path segments must not be empty, '.' or '..'".into());
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Some("path segments may hold only letters, digits, '.', '-' and '_'".into());
        }
    }
    None
}

/// What makes `value` unusable as a JWT issuer or subject to look up.
fn claim_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("required")
    } else if value.len() > MAX_JWT_CLAIM_LEN {
        Some("longer than 1024 bytes")
    } else if value.chars().any(|c| c.is_control() || is_invisible(c)) {
        Some("must not contain control, line-separator, bidirectional or zero-width characters")
    } else {
        None
    }
}

/// Characters that change how a log line reads without showing: line and
/// paragraph separators, zero-width characters, bidirectional controls.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> pb::ModifyInstanceNetworkSpecRequest {
        pb::ModifyInstanceNetworkSpecRequest {
            region_id: "cn-hangzhou".into(),
            instance_id: "i-abc".into(),
            internet_max_bandwidth_out: Some(5),
            ..Default::default()
        }
    }

    fn fields(message: pb::ExplainRequest) -> Vec<String> {
        explain_request(message)
            .unwrap_err()
            .violations
            .into_iter()
            .map(|v| format!("{} {}", v.field, v.code))
            .collect()
    }

    #[test]
    fn the_call_is_checked_by_its_own_rules_under_request() {
        let mut bad = call();
        bad.region_id = "Hangzhou".into();
        bad.internet_max_bandwidth_out = Some(201);
        assert_eq!(
            fields(pb::ExplainRequest {
                request: Some(bad),
                ..Default::default()
            }),
            [
                "request.region_id InvalidRegionId.Malformed",
                "request.internet_max_bandwidth_out InvalidInternetMaxBandwidthOut.ValueNotSupported"
            ]
        );
        assert_eq!(
            fields(pb::ExplainRequest::default()),
            ["request MissingParameter"]
        );
    }

    #[test]
    fn its_own_fields_are_parsed_by_their_grammar() {
        let message =
            |identity: Option<pb::simulated_identity::Kind>, ip: &str| pb::ExplainRequest {
                request: Some(call()),
                identity: Some(pb::SimulatedIdentity { kind: identity }),
                source_ip: ip.into(),
                ..Default::default()
            };
        let spiffe = |id: &str| Some(pb::simulated_identity::Kind::SpiffeId(id.into()));
        assert_eq!(
            fields(message(None, "10.0.0.300")),
            ["identity InvalidParameter", "source_ip InvalidParameter"]
        );
        for bad in [
            "spiffe:/x",
            "https://demo.local/sa/x",
            "spiffe://",
            "spiffe://Demo.local/sa",
            "spiffe://demo.local/sa//x",
            "spiffe://demo.local/sa/../netops",
            "spiffe://demo.local/sa/x?y",
            "spiffe://demo.local/sa/x\n",
            "spiffe://demo.local/",
        ] {
            assert_eq!(
                fields(message(spiffe(bad), "")),
                ["identity.spiffe_id InvalidParameter"],
                "{bad:?}"
            );
        }
        let long = format!("spiffe://d/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        assert_eq!(
            fields(message(spiffe(&long), "")),
            ["identity.spiffe_id InvalidParameter"]
        );
        let jwt = |iss: &str, sub: &str| {
            Some(pb::simulated_identity::Kind::Jwt(pb::JwtIdentity {
                issuer: iss.into(),
                subject: sub.into(),
            }))
        };
        for sneaky in ["a\u{2028}b", "a\u{202E}b", "a\u{200B}"] {
            assert_eq!(
                fields(message(jwt("https://idp", sneaky), "")),
                ["identity.jwt.subject InvalidParameter"],
                "{sneaky:?}"
            );
        }
        assert_eq!(
            fields(message(jwt("", "a\u{7}"), "")),
            [
                "identity.jwt.issuer InvalidParameter",
                "identity.jwt.subject InvalidParameter"
            ]
        );
        let ok = explain_request(pb::ExplainRequest {
            time: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            mfa_present: Some(true),
            ..message(
                spiffe("spiffe://demo.local/sa/web_app-1.x"),
                "::ffff:10.1.2.3",
            )
        })
        .unwrap();
        assert_eq!(
            ok.identity,
            Some(CallerId::Spiffe(
                "spiffe://demo.local/sa/web_app-1.x".into()
            ))
        );
        assert_eq!(ok.source_ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(ok.time.unwrap().timestamp(), 1_800_000_000);
        assert_eq!(ok.mfa_present, Some(true));
        let ok = explain_request(message(jwt("https://idp", "alice@x"), "")).unwrap();
        assert!(matches!(ok.identity, Some(CallerId::Jwt { .. })));
        assert!(spiffe_id_problem("spiffe://demo.local").is_none());
    }
}
