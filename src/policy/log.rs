//! The decision log: one structured line per decision, allowed or denied,
//! through the same JSON subscriber as every other log line (target
//! `decision`). Auditors filter on that target. No secret is in it: the
//! request's parameters are not logged, only who, what, on which resource,
//! the outcome and why.

use super::decide::{Decision, Outcome};

/// What came of an allowed call upstream (ECS's RequestId, its error code,
/// the ClientToken it saw), for the decision's line; empty when the call
/// never reached ECS.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamResult<'a> {
    /// ECS's RequestId, when the call reached ECS.
    pub request_id: Option<&'a str>,
    /// The error code, when the call failed after the decision.
    pub error_code: Option<&'a str>,
    /// The ClientToken ECS saw (derived from the caller's), for matching
    /// this line with ECS's own records.
    pub ecs_client_token: Option<&'a str>,
    /// The role whose credentials signed the call (the RAM role's ARN or,
    /// for the ECS instance's role, its name); none for an AccessKey.
    pub role: Option<&'a str>,
}

/// Writes the decision's line.
pub fn record(
    decision: &Decision,
    trace_id: &str,
    client_token: &str,
    upstream: UpstreamResult<'_>,
) {
    let actions = decision.actions.join(",");
    match &decision.outcome {
        Outcome::Allow { policies } => tracing::info!(
            target: "decision",
            decision = "Allow",
            trace_id,
            identity = %decision.identity,
            principal = %decision.principal,
            actions = %actions,
            resource = %decision.resource,
            account = %decision.account,
            policies = %policies.join(","),
            associate_public_ip = decision.allocates_public_ip,
            policy_version = %decision.policy_version,
            client_token,
            ecs_client_token = upstream.ecs_client_token.unwrap_or(""),
            signed_as = upstream.role.unwrap_or(""),
            request_id = upstream.request_id.unwrap_or(""),
            error_code = upstream.error_code.unwrap_or(""),
            "authorization decision"
        ),
        Outcome::Deny(denial) => tracing::info!(
            target: "decision",
            decision = "Deny",
            trace_id,
            identity = %decision.identity,
            principal = %decision.principal,
            actions = %actions,
            resource = %decision.resource,
            account = %decision.account,
            denied_action = denial.action,
            layer = denial.layer.as_str(),
            deny_type = denial.kind.as_str(),
            policies = %denial.policies.join(","),
            errors = %denial.errors.join("; "),
            associate_public_ip = decision.allocates_public_ip,
            policy_version = %decision.policy_version,
            client_token,
            "authorization decision"
        ),
    }
}

/// `Allow (policies)` or `<kind> by <layer> on <action> (policies)`.
fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Allow { policies } => format!("Allow ({})", policies.join(",")),
        Outcome::Deny(denial) => format!(
            "{} by {} on {} ({}){}",
            denial.kind.as_str(),
            denial.layer.as_str(),
            denial.action,
            denial.policies.join(","),
            if denial.errors.is_empty() {
                String::new()
            } else {
                format!(": {}", denial.errors.join("; "))
            }
        ),
    }
}

/// Writes the line of a shadow disagreement: the candidate policies decided
/// a call differently from those in force (target `shadow`; never
/// enforced).
pub fn shadow(active: &Decision, candidate: &Decision, trace_id: &str) {
    tracing::warn!(
        target: "shadow",
        trace_id,
        identity = %active.identity,
        resource = %active.resource,
        actions = %active.actions.join(","),
        active = %summary(&active.outcome),
        active_version = %active.policy_version,
        candidate = %summary(&candidate.outcome),
        candidate_version = %candidate.policy_version,
        "shadow policies decide differently"
    );
}

/// What an Explain asked, for its `explain` line.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// Who asked (the authenticated caller).
    pub asker: &'a str,
    /// The identity the explanation is for (the asker's own, or simulated).
    pub identity: &'a str,
    /// The context the caller set instead of its own, as `key=value`s
    /// (`source_ip`, `time`, `mfa_present`, `secure_transport`), or "".
    pub overrides: &'a str,
}

/// Writes the line of an Explain (target `explain`): who asked, for whom,
/// with which context overrides, and what the policies would decide, or
/// `refused` when the asker may not ask (its permission's decision line,
/// target `decision`, says why). Nothing was enforced or forwarded.
pub fn explained(asked: Asked<'_>, explained: Option<&Decision>, trace_id: &str) {
    tracing::info!(
        target: "explain",
        trace_id,
        asker = asked.asker,
        identity = asked.identity,
        overrides = asked.overrides,
        principal = explained.map_or("", |d| d.principal.as_str()),
        resource = explained.map_or("", |d| d.resource.as_str()),
        actions = %explained.map(|d| d.actions.join(",")).unwrap_or_default(),
        outcome = %explained.map_or_else(|| "refused".to_owned(), |d| summary(&d.outcome)),
        policy_version = explained.map_or("", |d| d.policy_version.as_str()),
        "decision explained"
    );
}
