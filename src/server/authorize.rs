//! Stage 3, authorize: the decision on a valid call, in its span, with the
//! instance's attributes from ECS when the lookup is on and they can change
//! it. The shadow (candidate) policies decide beside, never enforced.
//!
//! ```text
//! validate ──► [lookup] ──► decide ──► (shadow compare) ──► deny or forward
//! ```

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;
use tracing::field::Empty;

use super::{Call, Gateway};
use crate::error::Error;
use crate::identity::Caller;
use crate::policy::{self, log::UpstreamResult};
use crate::telemetry;
use crate::{lookup, upstream, validate};

impl Gateway {
    /// Stage 3 of a call: its decision; a denial is logged (the decision
    /// log's one line for the call) and refused here.
    ///
    /// # Errors
    ///
    /// The policies deny the call, or the lookup refused it (see
    /// [`Self::look_up`]).
    pub(super) async fn authorize(
        &self,
        call: &Call,
        request: &validate::ModifyRequest,
    ) -> Result<policy::Decision, Error> {
        let decision = self
            .decide(&call.caller, request, call.remaining(), &call.trace_id)
            .await?;
        if !decision.allowed() {
            policy::log::record(
                &decision,
                &call.trace_id,
                &request.client_token.value,
                UpstreamResult::default(),
            );
            return Err(Error::Denied(Box::new(decision)));
        }
        Ok(decision)
    }

    /// The decision, with the instance's attributes from ECS when the
    /// lookup is on and they can change it; the shadow policies decide
    /// beside, never enforced.
    ///
    /// # Errors
    ///
    /// The lookup refused the call (see [`Self::look_up`]).
    async fn decide(
        &self,
        caller: &Caller,
        request: &validate::ModifyRequest,
        deadline: Duration,
        trace_id: &str,
    ) -> Result<policy::Decision, Error> {
        let now = chrono::Utc::now();
        // Denied whatever the instance is: ECS is not asked.
        let early = self
            .lookup
            .as_ref()
            .and_then(|_| self.authorizer.deny_before_lookup(caller, request, now));
        let answer = match early {
            Some(_) => None,
            None => self.look_up(caller, request, deadline).await?,
        };
        let source = match (&early, &answer) {
            (Some(_), _) => lookup::UNASKED,
            (None, answer) => lookup::source(answer.as_ref()),
        };
        let early_denied = early.is_some();
        let query = policy::Query::new(caller, request, now).with_source(source);
        Ok(self.decide_in_span(false, || {
            let decision = early.unwrap_or_else(|| self.authorizer.authorize(&query));
            if let Some(shadow) = &*self.shadow.load() {
                // Without the instance's attributes the candidate can be
                // compared only where it, too, decides without them: a
                // candidate that would allow by tag or billing must not be
                // counted as agreeing.
                let candidate = if early_denied {
                    shadow.deny_before_lookup(caller, request, now)
                } else {
                    Some(shadow.authorize(&query))
                };
                self.compare_shadow(&decision, candidate.as_ref(), trace_id);
            }
            decision
        }))
    }

    /// Counts whether the shadow policies' `candidate` decision agrees with
    /// the enforced `decision` (`None`: not compared), and logs a
    /// disagreement.
    fn compare_shadow(
        &self,
        decision: &policy::Decision,
        candidate: Option<&policy::Decision>,
        trace_id: &str,
    ) {
        match candidate {
            Some(candidate) => {
                let agree = candidate.outcome == decision.outcome;
                self.metrics
                    .record_shadow(if agree { "agree" } else { "disagree" });
                if !agree {
                    policy::log::shadow(decision, candidate, trace_id);
                }
            }
            None => self.metrics.record_shadow("not_compared"),
        }
    }

    /// The instance's attributes from ECS, when the lookup is on, within
    /// `deadline`: `None` when it is off or not needed (an identity without
    /// a principal is denied whatever the instance is, and must not spend
    /// the account's ECS quota).
    ///
    /// # Errors
    ///
    /// The caller, or all callers, asked ECS as often as they may: the call
    /// is refused (retryable), not decided.
    pub(super) async fn look_up(
        &self,
        caller: &Caller,
        request: &validate::ModifyRequest,
        deadline: Duration,
    ) -> Result<Option<Result<Arc<lookup::Answer>, String>>, Error> {
        let Some(lookup) = self.lookup.as_ref() else {
            return Ok(None);
        };
        if !self
            .authorizer
            .store()
            .current()
            .principals
            .contains_key(&caller.identity)
        {
            return Ok(None);
        }
        let stage = tracing::info_span!(
            target: telemetry::trace::STAGE,
            "lookup",
            otel.status_code = Empty,
            error.type = Empty,
        );
        // As the upstream call does, a tenth of the time (at most 50 ms) is
        // kept back, so the gateway's answer reaches the caller first.
        let answer = lookup
            .get(
                &caller.identity,
                (
                    request.account_id.as_deref(),
                    &request.region_id,
                    &request.instance_id,
                ),
                upstream::budget(deadline),
            )
            .instrument(stage.clone())
            .await;
        match answer {
            Ok(answer) => Ok(Some(Ok(answer))),
            Err(lookup::Error::Failed(reason)) => {
                telemetry::trace::fail(&stage, "InstanceLookupFailed");
                Ok(Some(Err(reason)))
            }
            Err(throttled @ lookup::Error::Throttled { .. }) => {
                telemetry::trace::fail(&stage, "GatewayLookupThrottled");
                Err(Error::Lookup(throttled))
            }
        }
    }

    /// `decide`'s decision in the authorize span, recorded on the span and
    /// counted (Explain's permission checks apart from calls').
    pub(super) fn decide_in_span(
        &self,
        explain: bool,
        decide: impl FnOnce() -> policy::Decision,
    ) -> policy::Decision {
        let record = |denied_by: Option<&str>| {
            if explain {
                self.metrics.record_explain_decision(denied_by);
            } else {
                self.metrics.record_decision(denied_by);
            }
        };
        let stage = tracing::info_span!(
            target: telemetry::trace::STAGE,
            "authorize",
            authz.decision = Empty,
            authz.principal = Empty,
            authz.actions = Empty,
            authz.layer = Empty,
            authz.deny_type = Empty,
            authz.policies = Empty,
            authz.policy_version = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        let _entered = stage.enter();
        let decision = decide();
        stage.record("authz.principal", decision.principal.as_str());
        stage.record("authz.actions", decision.actions.join(",").as_str());
        stage.record("authz.policy_version", decision.policy_version.as_str());
        match &decision.outcome {
            policy::Outcome::Allow { policies } => {
                stage.record("authz.decision", "Allow");
                stage.record("authz.policies", policies.join(",").as_str());
                record(None);
            }
            policy::Outcome::Deny(denial) => {
                stage.record("authz.decision", "Deny");
                stage.record("authz.layer", denial.layer.as_str());
                stage.record("authz.deny_type", denial.kind.as_str());
                stage.record("authz.policies", denial.policies.join(",").as_str());
                telemetry::trace::fail(&stage, "AccessDenied");
                record(Some(denial.layer.as_str()));
            }
        }
        decision
    }
}
