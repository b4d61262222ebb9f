//! Stages 4 and 5, sign and upstream: an allowed call goes to ECS in a task
//! of its own, and the caller is answered by whichever comes first: ECS's
//! reply, the end of the shutdown grace period, or the call's deadline.
//!
//! ```text
//! authorize ──► forward (detached: sign, upstream, decision log) ──► answer
//! ```
//!
//! The task is detached so that a caller who goes away after the signed
//! request left still gets the change logged with ECS's request id.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::{Call, Gateway};
use crate::error::Error;
use crate::pb;
use crate::policy::{self, log::UpstreamResult};
use crate::{upstream, validate};

/// An allowed call on its way to ECS.
pub(super) struct Forwarding {
    /// Signs and sends the call, then writes its decision log line.
    task: JoinHandle<Result<upstream::Reply, upstream::Error>>,
    /// What was left of the call's time when it left.
    deadline: Duration,
    /// The caller's own ClientToken, which every answer carries back.
    client_token: String,
}

impl Gateway {
    /// Stages 4 and 5 of an allowed call, in a task of its own (its spans
    /// are opened by the upstream client).
    pub(super) fn forward(
        &self,
        call: &Call,
        request: validate::ModifyRequest,
        decision: policy::Decision,
    ) -> Forwarding {
        // What is left of the call's time (the lookup took some).
        let deadline = call.remaining();
        // ECS sees a token derived from the caller's identity and its token
        // (see upstream::ecs_client_token); the caller gets its own back.
        let client_token = request.client_token.value.clone();
        let caller = call.caller.identity.to_string();
        let mut upstream_request = request;
        upstream_request.client_token.value = upstream::ecs_client_token(
            &caller,
            upstream_request.account_id.as_deref(),
            &client_token,
        );
        let upstream = self.upstream.clone();
        let lookup = self.lookup.clone();
        let permit = call.permit.clone();
        let trace_id = call.trace_id.clone();
        let logged_token = client_token.clone();
        let forward = async move {
            // The call's place is held until ECS has answered.
            let _permit = permit;
            let request = upstream_request;
            let result = upstream
                .modify_instance_network_spec(&request, &caller, deadline)
                .await;
            // The instance may have changed: the next decision asks ECS.
            if let Some(lookup) = &lookup {
                lookup
                    .forget(
                        request.account_id.as_deref(),
                        &request.region_id,
                        &request.instance_id,
                    )
                    .await;
            }
            let role = upstream.signing_role(request.account_id.as_deref());
            let mut upstream = upstream_result(&result, &request.client_token.value);
            upstream.role = role.as_deref();
            policy::log::record(&decision, &trace_id, &logged_token, upstream);
            result
        };
        Forwarding {
            task: tokio::spawn(forward.instrument(call.span.clone())),
            deadline,
            client_token,
        }
    }
}

/// What happened upstream, for the decision log's line.
fn upstream_result<'a>(
    result: &'a Result<upstream::Reply, upstream::Error>,
    ecs_client_token: &'a str,
) -> UpstreamResult<'a> {
    let ecs_client_token = Some(ecs_client_token);
    match result {
        Ok(reply) => UpstreamResult {
            request_id: Some(&reply.request_id),
            error_code: None,
            ecs_client_token,
            role: None,
        },
        Err(upstream::Error::Ecs(e)) => UpstreamResult {
            request_id: Some(&e.request_id),
            error_code: Some(&e.code),
            ecs_client_token,
            role: None,
        },
        Err(upstream::Error::Credentials(_)) => UpstreamResult {
            request_id: None,
            error_code: Some("GatewayCredentialsUnavailable"),
            ecs_client_token,
            role: None,
        },
        Err(_) => UpstreamResult {
            request_id: None,
            error_code: Some("UpstreamFailure"),
            ecs_client_token,
            role: None,
        },
    }
}

impl Forwarding {
    /// The caller's answer: ECS's reply, or UNAVAILABLE once `cutoff` is
    /// set (the grace period is over), or DEADLINE_EXCEEDED (`limit`) at
    /// the deadline.
    ///
    /// # Errors
    ///
    /// ECS or the way to it failed, the gateway is shutting down, or the
    /// deadline passed; each carries the caller's ClientToken.
    pub(super) async fn answer(
        self,
        mut cutoff: tokio::sync::watch::Receiver<bool>,
        limit: Duration,
    ) -> Result<pb::ModifyInstanceNetworkSpecResponse, Error> {
        let token = self.client_token;
        // Whatever happens, the caller's answer carries its token, and it
        // comes before the server's own cancellation at the deadline: the
        // upstream budget already ends before it; this is the backstop.
        let answer_by = tokio::time::sleep(self.deadline);
        let result = tokio::select! {
            joined = self.task => joined.map_err(|e| Error::Aborted {
                detail: format!("the upstream call failed: {e}"),
                client_token: token.clone(),
            })?,
            _ = cutoff.wait_for(|cut| *cut) => return Err(Error::ShuttingDown { client_token: token }),
            () = answer_by => Err(upstream::Error::Timeout(limit)),
        };
        let reply = result.map_err(|source| Error::Upstream {
            source,
            client_token: token.clone(),
        })?;
        // The decision log's line already carries the RequestId: one line
        // per call is the audit record, this one is for debugging.
        tracing::debug!(request_id = %reply.request_id, "ECS applied the change");
        Ok(pb::ModifyInstanceNetworkSpecResponse {
            order_id: reply.order_id.unwrap_or_default(),
            request_id: reply.request_id,
            client_token: token,
        })
    }
}
