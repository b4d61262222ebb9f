//! `AuthorizationService/Explain`: the policy simulator.
//!
//! ```text
//! gRPC call ──► identity ──► validate ──► authorize the Explain ──► explain ──► response
//! ```
//!
//! The Explain itself is decided like a call, for the real caller on the
//! explained call's instance (`ecsgateway:Explain`, and
//! `ecsgateway:SimulatePrincipal` for another identity); its decision is
//! logged and counted as every decision is. Then the explained call is
//! decided with every action and layer evaluated, and nothing is forwarded.

use tonic::{Request, Response, Status};

use super::{Gateway, validated};
use crate::error::Error;
use crate::identity::Caller;
use crate::pb;
use crate::pb::authorization_service_server::AuthorizationService;
use crate::policy::{self, DenyKind, Layer, LayerResult, log::UpstreamResult};
use crate::validate;

#[tonic::async_trait]
impl AuthorizationService for Gateway {
    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        // 1. identity: resolved by the layer.
        let call = self.begin(&request)?;
        let caller = &call.caller;
        // 2. validate
        let mut explain = validated(validate::explain_request, request.into_inner())?;
        // An account the gateway does not serve is refused as a call to it
        // would be, before any lookup.
        explain.request = self.served(explain.request)?;
        call.name_instance(&explain.request.region_id, &explain.request.instance_id);

        // 3. may the caller ask? (With the instance's attributes from ECS
        //    when the lookup is on and they can change the answer: a caller
        //    who may not ask whatever the instance is spends no lookup.)
        let now = chrono::Utc::now();
        let early = self.lookup.as_ref().and_then(|_| {
            self.authorizer().deny_explain_before_lookup(
                caller,
                &explain.request,
                explain.identity.as_ref(),
                now,
            )
        });
        let answer = match early {
            Some(_) => None,
            None => {
                self.look_up(caller, &explain.request, call.remaining())
                    .await?
            }
        };
        let source = crate::lookup::source(answer.as_ref());
        let permission = self.decide_in_span(true, || {
            early.unwrap_or_else(|| {
                self.authorizer().may_explain(
                    &policy::Query::new(caller, &explain.request, now).with_source(source),
                    explain.identity.as_ref(),
                )
            })
        });
        policy::log::record(
            &permission,
            &call.trace_id,
            &explain.request.client_token.value,
            UpstreamResult::default(),
        );
        let asker = caller.identity.to_string();
        let identity = explain
            .identity
            .as_ref()
            .unwrap_or(&caller.identity)
            .to_string();
        let overrides = overrides(&explain);
        let asked = policy::log::Asked {
            asker: &asker,
            identity: &identity,
            overrides: &overrides,
        };
        if !permission.allowed() {
            policy::log::explained(asked, None, &call.trace_id);
            return Err(Error::Denied(Box::new(permission)).into());
        }

        // 4. explain, as the simulated caller where one is named.
        let subject = Caller {
            identity: explain.identity.unwrap_or_else(|| caller.identity.clone()),
            via: caller.via,
            mfa: explain.mfa_present.unwrap_or(caller.mfa),
            secure_transport: explain.secure_transport.unwrap_or(caller.secure_transport),
            peer: explain
                .source_ip
                .map(|ip| std::net::SocketAddr::new(ip, 0))
                .or(caller.peer),
        };
        let (decision, results) = self.authorizer().explain(
            &policy::Query::new(&subject, &explain.request, explain.time.unwrap_or(now))
                .with_source(source),
        );
        policy::log::explained(asked, Some(&decision), &call.trace_id);
        Ok(Response::new(response(&decision, &results)))
    }
}

/// The context an Explain sets instead of the caller's, for its log line.
fn overrides(explain: &validate::ExplainRequest) -> String {
    let mut out = Vec::new();
    if let Some(ip) = explain.source_ip {
        out.push(format!("source_ip={ip}"));
    }
    if let Some(time) = explain.time {
        out.push(format!("time={}", time.to_rfc3339()));
    }
    if let Some(mfa) = explain.mfa_present {
        out.push(format!("mfa_present={mfa}"));
    }
    if let Some(tls) = explain.secure_transport {
        out.push(format!("secure_transport={tls}"));
    }
    out.join(" ")
}

fn verdict(denied: Option<DenyKind>) -> pb::Verdict {
    match denied {
        None => pb::Verdict::Allow,
        Some(DenyKind::ExplicitDeny) => pb::Verdict::ExplicitDeny,
        Some(DenyKind::ImplicitDeny) => pb::Verdict::ImplicitDeny,
    }
}

fn layer(layer: Layer) -> pb::PolicyLayer {
    match layer {
        Layer::Control => pb::PolicyLayer::Control,
        Layer::Identity => pb::PolicyLayer::Identity,
    }
}

/// The wire form of an explanation.
pub fn response(decision: &policy::Decision, results: &[LayerResult]) -> pb::ExplainResponse {
    let result = |r: &LayerResult| pb::ActionResult {
        action: r.action.to_owned(),
        layer: layer(r.layer).into(),
        verdict: verdict(r.denied).into(),
        policies: r.policies.clone(),
        errors: r.errors.clone(),
    };
    let (overall, denied) = match &decision.outcome {
        policy::Outcome::Allow { .. } => (pb::Verdict::Allow, None),
        policy::Outcome::Deny(d) => (
            verdict(Some(d.kind)),
            Some(result(&LayerResult {
                action: d.action,
                layer: d.layer,
                denied: Some(d.kind),
                policies: d.policies.clone(),
                errors: d.errors.clone(),
            })),
        ),
    };
    pb::ExplainResponse {
        verdict: overall.into(),
        identity: decision.identity.clone(),
        principal: decision.principal.clone(),
        resource: decision.resource.clone(),
        associate_public_ip_address: decision.allocates_public_ip,
        policy_version: decision.policy_version.clone(),
        denied,
        results: results.iter().map(result).collect(),
    }
}
