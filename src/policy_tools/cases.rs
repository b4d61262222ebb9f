//! Declarative policy tests, run by `ecs-gateway policy test` and in CI: each
//! case names a caller, a request and the expected decision, and optionally
//! the layer, the denied action and the determining policies.
//!
//! ```toml
//! account_id = "1234567890123456"            # the account owning the instances
//! region_id = "cn-hangzhou"                   # default region of the requests
//!
//! [[dependent_actions]]                       # as in the gateway's config
//! action = "ecs:ModifyInstanceNetworkSpec"
//! requires = "ecs:AllocatePublicIpAddress"
//! when = "allocates_public_ip"
//!
//! [[case]]
//! name = "app teams may not allocate a public IP"
//! spiffe_id = "spiffe://demo.local/sa/webapp"  # or jwt = { issuer = "…", subject = "…" }
//! source_ip = "10.0.0.7"                      # default 127.0.0.1
//! time = "2026-06-01T10:00:00Z"               # default: now
//! request = { instance_id = "i-demo-postpaid", allocate_public_ip = true }
//! expect = "ExplicitDeny"                     # Allow, ExplicitDeny, ImplicitDeny
//! layer = "control"
//! action = "ecs:ModifyInstanceNetworkSpec"
//! policies = ["control.no-public-ip-for-app-teams"]
//!
//! [[case]]                                    # may the caller ask AuthorizationService/Explain?
//! name = "capacity planners may explain an app team's call"
//! spiffe_id = "spiffe://demo.local/sa/capacity"
//! explain = true                              # decides ecsgateway:Explain, not the call
//! simulate_spiffe_id = "spiffe://demo.local/sa/webapp"  # or simulate_jwt: adds ecsgateway:SimulatePrincipal
//! request = { instance_id = "i-demo-postpaid", internet_max_bandwidth_out = 5 }
//! expect = "Allow"
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::account::AccountId;
use crate::identity::{Caller, CallerId, Via};
use crate::policy::store::JwtSubject;
use crate::policy::{Authorizer, DependentRule, Outcome, Query, Store};
use crate::{pb, validate};

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The account owning the instances (required: the cases' ARNs are
    /// this account's).
    pub account_id: String,
    /// The region of requests that do not name one.
    #[serde(default)]
    pub region_id: Option<String>,
    /// Operator-added dependent actions.
    #[serde(default)]
    pub dependent_actions: Vec<DependentRule>,
    /// The cases.
    #[serde(default)]
    pub case: Vec<Case>,
}

/// Expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Expect {
    /// Allowed.
    Allow,
    /// Denied by a forbid.
    ExplicitDeny,
    /// Denied for lack of a permit.
    ImplicitDeny,
}

/// The request of a case, as the proto's fields; times in RFC 3339.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    #[serde(default)]
    region_id: Option<String>,
    instance_id: String,
    internet_max_bandwidth_out: Option<i32>,
    internet_max_bandwidth_in: Option<i32>,
    network_charge_type: Option<String>,
    allocate_public_ip: Option<bool>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    auto_pay: Option<bool>,
    /// The account that owns the instance; empty or absent: the default.
    #[serde(default)]
    account_id: String,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it checks.
    pub name: String,
    /// The caller's SPIFFE ID (as mTLS proves it); or `jwt`.
    pub spiffe_id: Option<String>,
    /// The caller's JWT issuer and subject; or `spiffe_id`.
    pub jwt: Option<JwtSubject>,
    /// The caller's address.
    #[serde(default = "loopback")]
    pub source_ip: IpAddr,
    /// The time of the call.
    pub time: Option<DateTime<Utc>>,
    /// MFA was used.
    #[serde(default)]
    pub mfa: bool,
    /// The call came over TLS.
    #[serde(default)]
    pub secure_transport: bool,
    /// Decide the caller's permission to explain the request
    /// (`ecsgateway:Explain`), not the request itself.
    #[serde(default)]
    pub explain: bool,
    /// With `explain`: the SPIFFE ID to explain it for
    /// (`ecsgateway:SimulatePrincipal` too).
    pub simulate_spiffe_id: Option<String>,
    /// With `explain`: the JWT identity to explain it for.
    pub simulate_jwt: Option<JwtSubject>,
    /// The request.
    pub request: CaseRequest,
    /// The expected outcome.
    pub expect: Expect,
    /// For denials: the layer, `control` or `identity`.
    pub layer: Option<String>,
    /// For denials: the denied action.
    pub action: Option<String>,
    /// The determining policies, in any order.
    pub policies: Option<Vec<String>>,
}

impl Case {
    /// The caller the case describes.
    fn caller(&self) -> Result<Caller, String> {
        let (identity, via) = match (&self.spiffe_id, &self.jwt) {
            (Some(id), None) => (CallerId::Spiffe(id.clone()), Via::Mtls),
            (None, Some(jwt)) => (jwt.caller_id(), Via::Jwt),
            _ => return Err("name the caller with spiffe_id or jwt (one of them)".into()),
        };
        Ok(Caller {
            identity,
            via,
            mfa: self.mfa,
            secure_transport: self.secure_transport,
            peer: Some(SocketAddr::new(self.source_ip, 50000)),
        })
    }
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

impl CaseRequest {
    fn to_proto(
        &self,
        default_region: Option<&str>,
    ) -> Result<pb::ModifyInstanceNetworkSpecRequest, String> {
        let Some(region_id) = self.region_id.as_deref().or(default_region) else {
            return Err(
                "no region_id: give it in the request or at the top of the case file".into(),
            );
        };
        let charge = match self.network_charge_type.as_deref() {
            None => pb::NetworkChargeType::Unspecified,
            Some("PayByBandwidth") => pb::NetworkChargeType::PayByBandwidth,
            Some("PayByTraffic") => pb::NetworkChargeType::PayByTraffic,
            Some(other) => {
                return Err(format!(
                    "network_charge_type {other:?}: expected PayByBandwidth or PayByTraffic"
                ));
            }
        };
        let ts = |t: DateTime<Utc>| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        };
        Ok(pb::ModifyInstanceNetworkSpecRequest {
            region_id: region_id.to_owned(),
            instance_id: self.instance_id.clone(),
            internet_max_bandwidth_out: self.internet_max_bandwidth_out,
            internet_max_bandwidth_in: self.internet_max_bandwidth_in,
            isp: String::new(),
            network_charge_type: charge as i32,
            allocate_public_ip: self.allocate_public_ip,
            start_time: self.start_time.map(ts),
            end_time: self.end_time.map(ts),
            auto_pay: self.auto_pay,
            client_token: "policy-test".into(),
            account_id: self.account_id.clone(),
        })
    }
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: usize,
    /// `file: case: what differed`, one per failed case.
    pub failures: Vec<String>,
}

/// Why cases could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A case file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A case file is not valid.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Checks one case against a decision; `Err` says what differed.
fn check(case: &Case, region: Option<&str>, authorizer: &Authorizer) -> Result<(), String> {
    let request = validate::modify_request(case.request.to_proto(region)?)
        .map_err(|r| format!("request is invalid: {r}"))?;
    let caller = case.caller()?;
    let now = case.time.unwrap_or_else(Utc::now);
    let simulated = match (&case.simulate_spiffe_id, &case.simulate_jwt) {
        (None, None) => None,
        (Some(id), None) => Some(CallerId::Spiffe(id.clone())),
        (None, Some(jwt)) => Some(jwt.caller_id()),
        (Some(_), Some(_)) => {
            return Err("simulate one identity: simulate_spiffe_id or simulate_jwt".into());
        }
    };
    let decision = match (case.explain, &simulated) {
        (false, None) => authorizer.decide(&caller, &request, now),
        (false, Some(_)) => return Err("simulate_* needs explain = true".into()),
        (true, simulated) => {
            authorizer.may_explain(&Query::new(&caller, &request, now), simulated.as_ref())
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (got, layer, action, policies) = match &decision.outcome {
        Outcome::Allow { policies } => (Expect::Allow, None, None, policies.clone()),
        Outcome::Deny(d) => (
            match d.kind {
                crate::policy::DenyKind::ExplicitDeny => Expect::ExplicitDeny,
                crate::policy::DenyKind::ImplicitDeny => Expect::ImplicitDeny,
            },
            Some(d.layer.as_str()),
            Some(d.action),
            d.policies.clone(),
        ),
    };
    let describe =
        || format!("got {got:?} (layer {layer:?}, action {action:?}, policies {policies:?})");
    if got != case.expect {
        return Err(format!("expected {:?}, {}", case.expect, describe()));
    }
    if case.layer.is_some() && case.layer.as_deref() != layer {
        return Err(format!("expected layer {:?}, {}", case.layer, describe()));
    }
    if case.action.is_some() && case.action.as_deref() != action {
        return Err(format!("expected action {:?}, {}", case.action, describe()));
    }
    if let Some(expected) = &case.policies
        && sorted(expected.clone()) != sorted(policies.clone())
    {
        return Err(format!("expected policies {expected:?}, {}", describe()));
    }
    Ok(())
}

/// Parses a case file.
///
/// # Errors
///
/// It cannot be read or parsed.
pub fn read(path: &Path) -> Result<CaseFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Runs every case of `files` against the policies of `store`.
///
/// # Errors
///
/// A file cannot be read or parsed, or names an unknown dependent action.
pub fn run(store: &Arc<Store>, files: &[PathBuf]) -> Result<Report, Error> {
    let mut report = Report::default();
    for path in files {
        let file = read(path)?;
        if file.account_id.parse::<AccountId>().is_err() {
            return Err(Error::Parse {
                path: path.clone(),
                message: format!(
                    "account_id {:?}: expected an Alibaba Cloud account ID (digits)",
                    file.account_id
                ),
            });
        }
        crate::policy::check_dependent_actions(&file.dependent_actions).map_err(|e| {
            Error::Parse {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        let authorizer = Authorizer::new(
            store.clone(),
            file.account_id.clone(),
            file.dependent_actions.clone(),
        );
        for case in &file.case {
            match check(case, file.region_id.as_deref(), &authorizer) {
                Ok(()) => report.passed += 1,
                Err(message) => {
                    report
                        .failures
                        .push(format!("{}: {}: {message}", path.display(), case.name))
                }
            }
        }
    }
    Ok(report)
}

/// The case files of a policy directory: `tests/*.toml`, sorted.
pub fn shipped(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("tests"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
