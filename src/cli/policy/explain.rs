//! `policy explain`: the decision on a request, without forwarding
//! anything.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{NO_SETTINGS, settings_file};
use crate::policy::{Decision, DenyKind, LayerResult, Outcome};
use crate::{cli::exit, client, config, policy};

/// `policy explain`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy directory.
    #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
    policies: PathBuf,
    /// The Alibaba Cloud account owning the instances, for ARNs (default:
    /// the settings file's `policy.account_id`).
    #[arg(long, env = "ECS_GATEWAY_ACCOUNT_ID")]
    account_id: Option<String>,
    /// The gateway's settings file, for its `[[policy.dependent_actions]]`
    /// (and account).
    #[arg(long, env = "ECS_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// The caller's SPIFFE ID.
    #[arg(long, conflicts_with_all = ["jwt_issuer", "jwt_subject"], required_unless_present = "jwt_subject")]
    identity: Option<String>,
    /// The caller's JWT issuer (with --jwt-subject).
    #[arg(long, requires = "jwt_subject")]
    jwt_issuer: Option<String>,
    /// The caller's JWT subject (with --jwt-issuer).
    #[arg(long, requires = "jwt_issuer")]
    jwt_subject: Option<String>,
    /// The caller's address (acs:SourceIp).
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: std::net::IpAddr,
    /// The time of the call (acs:CurrentTime), RFC 3339; now by default.
    #[arg(long)]
    time: Option<chrono::DateTime<chrono::Utc>>,
    /// The caller presented MFA (acs:MFAPresent).
    #[arg(long)]
    mfa: bool,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = client::OutputFormat::Text)]
    output: client::OutputFormat,
    /// The request.
    #[command(flatten)]
    request: client::RequestArgs,
}

/// Prints every action of the call in every layer with the determining
/// policies; exit [`exit::SUCCESS`] when allowed, [`exit::DENIED`] when
/// denied, [`exit::FAILURE`] when it cannot be explained.
pub fn run(args: &Args) -> ExitCode {
    // The operator's dependent actions and account, as `serve` reads them.
    let settings = match &args.config {
        None => {
            eprintln!("{NO_SETTINGS}");
            None
        }
        Some(file) => match settings_file(file) {
            Ok(settings) => Some(settings),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(exit::FAILURE);
            }
        },
    };
    let account_id = args
        .account_id
        .clone()
        .or_else(|| settings.as_ref().and_then(|s| s.policy.account_id.clone()))
        .unwrap_or_default();
    if !crate::account::AccountId::is_valid(&account_id) {
        eprintln!(
            "--account-id: {account_id:?} is not an Alibaba Cloud account ID (digits); give it, or a --config with policy.account_id"
        );
        return ExitCode::from(exit::FAILURE);
    }
    let dependent_actions = settings
        .map(|s| s.policy.dependent_actions)
        .unwrap_or_default();
    let authorizer = match (policy::Config {
        dir: args.policies.clone(),
        account_id,
        dependent_actions,
    })
    .build()
    {
        Ok(authorizer) => authorizer,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let request = match crate::validate::modify_request(args.request.request()) {
        Ok(request) => request,
        Err(rejection) => {
            eprintln!("{rejection}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let identity = match (&args.identity, &args.jwt_issuer, &args.jwt_subject) {
        (Some(spiffe), _, _) => crate::identity::CallerId::Spiffe(spiffe.clone()),
        (None, Some(issuer), Some(subject)) => crate::identity::CallerId::Jwt {
            issuer: issuer.clone(),
            subject: subject.clone(),
        },
        _ => unreachable!("clap requires --identity or --jwt-issuer with --jwt-subject"),
    };
    let caller = crate::identity::Caller {
        identity,
        via: crate::identity::Via::Mtls,
        mfa: args.mfa,
        secure_transport: true,
        peer: Some(std::net::SocketAddr::new(args.source_ip, 0)),
    };
    let now = args.time.unwrap_or_else(chrono::Utc::now);
    let (decision, results) = authorizer.explain(&policy::Query::new(&caller, &request, now));
    if args.output == client::OutputFormat::Json {
        print_json(&decision, &results);
    } else {
        print_text(&decision, &results);
    }
    ExitCode::from(if decision.allowed() {
        exit::SUCCESS
    } else {
        exit::DENIED
    })
}

fn verdict(denied: Option<DenyKind>) -> &'static str {
    denied.map_or("Allow", DenyKind::as_str)
}

fn print_json(decision: &Decision, results: &[LayerResult]) {
    let json = serde_json::json!({
        "decision": match &decision.outcome {
            Outcome::Allow { .. } => "Allow",
            Outcome::Deny(d) => d.kind.as_str(),
        },
        "denied": match &decision.outcome {
            Outcome::Allow { .. } => serde_json::Value::Null,
            Outcome::Deny(d) => serde_json::json!({
                "action": d.action, "layer": d.layer.as_str(),
                "policies": d.policies, "errors": d.errors,
            }),
        },
        "principal": decision.principal,
        "resource": decision.resource,
        "associatePublicIpAddress": decision.allocates_public_ip,
        "policyVersion": decision.policy_version,
        "results": results.iter().map(|r| serde_json::json!({
            "action": r.action, "layer": r.layer.as_str(), "result": verdict(r.denied),
            "policies": r.policies, "errors": r.errors,
        })).collect::<Vec<_>>(),
    });
    out!("{json:#}");
}

fn print_text(decision: &Decision, results: &[LayerResult]) {
    out!("decision: {}", decision.summary());
    out!("principal: {}", decision.principal);
    out!("resource: {}", decision.resource);
    out!(
        "ecs:AssociatePublicIpAddress: {}",
        decision.allocates_public_ip
    );
    out!("policy version: {}", decision.policy_version);
    for r in results {
        out!(
            "  {:<32} {:<9} {:<13} {}{}",
            r.action,
            r.layer.as_str(),
            verdict(r.denied),
            r.policies.join(", "),
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(" errors: {}", r.errors.join("; "))
            }
        );
    }
}
