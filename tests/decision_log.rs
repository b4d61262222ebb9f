//! The decision log: one JSON line per decision, allowed or denied, with the
//! trace id of the incoming `traceparent`, the principal, actions, resource,
//! outcome, layer and determining policies, and ECS's request id once the
//! call went through.

mod support;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn logs_one_line_per_decision() {
    let logs = support::Captured::default();
    let writer = logs.clone();
    // DEBUG: the call's other lines ("ECS applied the change") are debug.
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .init();

    let h = support::start().await;
    let mut allowed = tonic::Request::new(ecs_gateway::pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(9),
        client_token: "log-test-1".into(),
        ..support::request("i-demo-postpaid")
    });
    support::with_identity(&mut allowed, support::WEBAPP);
    allowed.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let response = h
        .gateway
        .client
        .clone()
        .modify_instance_network_spec(allowed)
        .await
        .unwrap()
        .into_inner();

    let denied = ecs_gateway::pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(20),
        ..support::request("i-demo-postpaid")
    };
    h.call_as(support::WEBAPP, denied).await.unwrap_err();

    let text = logs.text();
    let decisions: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 2, "{text}");

    let allow = &decisions[0];
    assert_eq!(allow["decision"], "Allow");
    assert_eq!(allow["trace_id"], TRACE);
    assert_eq!(allow["identity"], support::WEBAPP);
    assert_eq!(allow["principal"], "acs:ram::1234567890123456:role/webapp");
    assert_eq!(allow["actions"], "ecs:ModifyInstanceNetworkSpec");
    assert_eq!(
        allow["resource"],
        "acs:ecs:cn-hangzhou:1234567890123456:instance/i-demo-postpaid"
    );
    assert_eq!(
        allow["policies"],
        "control.baseline,identity.app-teams-bandwidth"
    );
    assert_eq!(allow["request_id"], response.request_id.as_str());
    assert_eq!(allow["client_token"], "log-test-1");
    assert!(
        allow["policy_version"]
            .as_str()
            .is_some_and(|v| v.len() == 12)
    );
    assert!(allow["timestamp"].is_string());

    let deny = &decisions[1];
    assert_eq!(deny["decision"], "Deny");
    assert_eq!(deny["deny_type"], "ImplicitDeny");
    assert_eq!(deny["layer"], "identity");
    assert_eq!(deny["denied_action"], "ecs:ModifyInstanceNetworkSpec");
    assert_eq!(
        deny["trace_id"].as_str().map(str::len),
        Some(32),
        "a trace id is made when none came in"
    );
    assert!(
        deny.get("request_id").is_none(),
        "a denied call never reaches ECS"
    );
    assert!(!text.contains(support::DEMO_ACCESS_KEY_SECRET));

    // At info, one line per call: the decision's.
    let info_lines = text
        .lines()
        .filter(|l| l.contains(TRACE) && l.contains("\"level\":\"INFO\""))
        .count();
    assert_eq!(info_lines, 1, "{text}");

    // Every log line of the call carries its trace id.
    let applied = text
        .lines()
        .find(|l| l.contains("ECS applied the change") && l.contains(response.request_id.as_str()))
        .expect("the call's log line");
    let applied: serde_json::Value = serde_json::from_str(applied).unwrap();
    assert_eq!(applied["span"]["trace_id"], TRACE, "{applied}");
}
