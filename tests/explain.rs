//! `AuthorizationService/Explain` over a real tonic client: the decision and
//! every action in every layer, for the caller or a simulated identity, with
//! nothing forwarded; the Explain itself authorized (`ecsgateway:Explain`,
//! `ecsgateway:SimulatePrincipal`), validated and logged.

use ecs_gateway::pb;
use ecs_gateway::pb::authorization_service_client::AuthorizationServiceClient;
use tonic::Code;
use tonic_types::StatusExt as _;

mod support;

const CAPACITY: &str = "spiffe://demo.local/sa/capacity";

/// Asks as `caller` (none: anonymous).
async fn ask(
    client: &mut AuthorizationServiceClient<tonic::transport::Channel>,
    caller: Option<&str>,
    message: pb::ExplainRequest,
) -> Result<pb::ExplainResponse, tonic::Status> {
    let mut request = tonic::Request::new(message);
    if let Some(caller) = caller {
        support::with_identity(&mut request, caller);
    }
    client
        .explain(request)
        .await
        .map(tonic::Response::into_inner)
}

fn call(out: i32, allocate: Option<bool>) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(out),
        allocate_public_ip: allocate,
        ..support::request("i-demo-postpaid")
    }
}

fn simulate(spiffe_id: &str) -> Option<pb::SimulatedIdentity> {
    Some(pb::SimulatedIdentity {
        kind: Some(pb::simulated_identity::Kind::SpiffeId(spiffe_id.into())),
    })
}

/// `action layer verdict [policies]` per result.
fn rows(response: &pb::ExplainResponse) -> Vec<String> {
    response
        .results
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?}",
                r.action,
                r.layer().as_str_name(),
                r.verdict().as_str_name(),
                r.policies
            )
        })
        .collect()
}

#[tokio::test]
async fn explains_every_layer_for_the_caller_or_a_simulated_identity_and_forwards_nothing() {
    let logs = support::capture_json_logs();
    let harness = support::start().await;
    let mut client = AuthorizationServiceClient::new(support::channel(harness.gateway.addr).await);
    let before = harness.sim.instance("i-demo-postpaid").unwrap();

    // 1. The app team explains its own denied call: the control layer's
    //    forbid decides, and every other action and layer is still shown.
    let own = ask(
        &mut client,
        Some(support::WEBAPP),
        pb::ExplainRequest {
            request: Some(call(50, Some(true))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(own.verdict(), pb::Verdict::ExplicitDeny);
    assert_eq!(own.identity, support::WEBAPP);
    assert_eq!(own.principal, "acs:ram::1234567890123456:role/webapp");
    assert_eq!(
        own.resource,
        "acs:ecs:cn-hangzhou:1234567890123456:instance/i-demo-postpaid"
    );
    assert!(own.associate_public_ip_address);
    let denied = own.denied.as_ref().unwrap();
    assert_eq!(
        (denied.action.as_str(), denied.layer(), denied.verdict()),
        (
            "ecs:ModifyInstanceNetworkSpec",
            pb::PolicyLayer::Control,
            pb::Verdict::ExplicitDeny
        )
    );
    assert_eq!(denied.policies, ["control.no-public-ip-for-app-teams"]);
    assert_eq!(
        rows(&own),
        [
            "ecs:ModifyInstanceNetworkSpec POLICY_LAYER_CONTROL VERDICT_EXPLICIT_DENY [\"control.no-public-ip-for-app-teams\"]",
            "ecs:ModifyInstanceNetworkSpec POLICY_LAYER_IDENTITY VERDICT_IMPLICIT_DENY []",
            "ecs:AllocatePublicIpAddress POLICY_LAYER_CONTROL VERDICT_EXPLICIT_DENY [\"control.no-public-ip-for-app-teams\"]",
            "ecs:AllocatePublicIpAddress POLICY_LAYER_IDENTITY VERDICT_IMPLICIT_DENY []",
        ]
    );

    // 2. Capacity planners may simulate an app team's service, with another
    //    source address and time.
    let simulated = ask(
        &mut client,
        Some(CAPACITY),
        pb::ExplainRequest {
            request: Some(call(5, None)),
            identity: simulate(support::WEBAPP),
            source_ip: "10.9.8.7".into(),
            time: Some(prost_types::Timestamp {
                seconds: 1_780_000_000,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(simulated.verdict(), pb::Verdict::Allow, "{simulated:?}");
    assert_eq!(simulated.identity, support::WEBAPP);
    assert!(simulated.denied.is_none());
    assert_eq!(
        rows(&simulated),
        [
            "ecs:ModifyInstanceNetworkSpec POLICY_LAYER_CONTROL VERDICT_ALLOW [\"control.baseline\"]",
            "ecs:ModifyInstanceNetworkSpec POLICY_LAYER_IDENTITY VERDICT_ALLOW [\"identity.app-teams-bandwidth\"]",
        ]
    );

    // 3. A simulated source address changes the decision: netops outside the
    //    management network.
    let outside = ask(
        &mut client,
        Some(support::NETOPS),
        pb::ExplainRequest {
            request: Some(call(5, None)),
            source_ip: "192.168.1.10".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(outside.verdict(), pb::Verdict::ExplicitDeny);
    assert_eq!(
        outside.denied.unwrap().policies,
        ["control.admins-from-management-network"]
    );

    // 4. An identity without a principal: denied, and why.
    let stranger = ask(
        &mut client,
        Some(support::NETOPS),
        pb::ExplainRequest {
            request: Some(call(5, None)),
            identity: simulate("spiffe://demo.local/sa/stranger"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stranger.verdict(), pb::Verdict::ImplicitDeny);
    assert!(stranger.results.is_empty());
    assert!(
        stranger.denied.unwrap().errors[0].contains("has no principal"),
        "the reason is given"
    );

    // Nothing was forwarded: ECS saw no call, the instance is unchanged.
    assert_eq!(harness.sim.calls(), 0);
    assert_eq!(
        harness
            .sim
            .instance("i-demo-postpaid")
            .unwrap()
            .bandwidth_out,
        before.bandwidth_out
    );

    // 5. Simulating someone else needs ecsgateway:SimulatePrincipal.
    let refused = ask(
        &mut client,
        Some(support::WEBAPP),
        pb::ExplainRequest {
            request: Some(call(5, None)),
            identity: simulate(support::NETOPS),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(support::reason(&refused), "AccessDenied");
    let info = refused.get_error_details().error_info().unwrap().clone();
    assert_eq!(
        info.metadata.get("AuthAction").map(String::as_str),
        Some("ecsgateway:SimulatePrincipal"),
        "{info:?}"
    );
    // Capacity planners may not simulate a network admin either.
    let refused = ask(
        &mut client,
        Some(CAPACITY),
        pb::ExplainRequest {
            request: Some(call(5, None)),
            identity: simulate(support::NETOPS),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // 6. Invalid input: the call's violations under `request.`, the
    //    Explain's own fields by name.
    let mut bad_call = call(5, None);
    bad_call.region_id = "Hangzhou".into();
    let invalid = ask(
        &mut client,
        Some(support::NETOPS),
        pb::ExplainRequest {
            request: Some(bad_call),
            identity: simulate("spiffe://demo.local/../netops"),
            source_ip: "10.0.0.1:80".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        support::violated_fields(&invalid),
        ["request.region_id", "identity.spiffe_id", "source_ip"]
    );

    // 7. No identity: unauthenticated, as every protected call.
    let anonymous = ask(
        &mut client,
        None,
        pb::ExplainRequest {
            request: Some(call(5, None)),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // The log: each permission to explain is a decision line, each
    // explanation given an `explain` line naming who asked.
    let lines: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let decisions: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["target"] == "decision").collect();
    assert_eq!(decisions.len(), 6, "{}", logs.text());
    assert!(decisions.iter().any(|l| l["decision"] == "Deny"
        && l["identity"] == support::WEBAPP
        && l["actions"] == "ecsgateway:Explain,ecsgateway:SimulatePrincipal"
        && l["denied_action"] == "ecsgateway:SimulatePrincipal"));
    let explained: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["target"] == "explain").collect();
    assert_eq!(explained.len(), 6, "{}", logs.text());
    assert!(explained.iter().any(|l| {
        l["asker"] == CAPACITY
            && l["identity"] == support::WEBAPP
            && l["overrides"] == "source_ip=10.9.8.7 time=2026-05-28T20:26:40+00:00"
            && l["outcome"]
                .as_str()
                .unwrap()
                .starts_with("Allow (control.baseline")
    }));
    // A refused simulation names whom it tried to simulate.
    assert!(explained.iter().any(|l| l["asker"] == support::WEBAPP
        && l["identity"] == support::NETOPS
        && l["outcome"] == "refused"));
}

#[tokio::test]
async fn health_reports_the_authorization_service() {
    let harness = support::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        support::channel(harness.gateway.addr).await,
    );
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ecsgateway.v1.AuthorizationService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}
