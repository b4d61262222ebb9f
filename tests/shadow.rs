//! Shadow mode: a candidate policy directory decided beside the one in force
//! on every call; a disagreement is logged (both decisions, their determining
//! policies and versions) and counted, never enforced.

use ecs_gateway::pb::instance_network_service_client::InstanceNetworkServiceClient;
use ecs_gateway::{pb, policy, simulator};

mod support;

#[tokio::test]
async fn shadow_policies_are_compared_logged_and_never_enforced() {
    let logs = support::capture_json_logs();

    // The candidate: the app teams' permissions removed.
    let candidate = std::env::temp_dir().join(format!("ecs-gw-shadow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&candidate);
    support::copy_dir(&support::policies_dir(), &candidate);
    std::fs::remove_file(candidate.join("identity/app-teams.cedar")).unwrap();
    let shadow = policy::Config {
        dir: candidate.clone(),
        account_id: "1234567890123456".into(),
        dependent_actions: vec![],
    }
    .build()
    .unwrap();

    let sim = simulator::Simulator::new(simulator::Config::demo());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    let mut parts = support::parts(&sim_url, support::demo_credentials(), |_| {});
    parts.gateway = parts.gateway.with_shadow(Some(std::sync::Arc::new(shadow)));
    let metrics = parts.metrics.clone();
    let (addr, _stop) = support::spawn_gateway(parts).await;
    let mut client = InstanceNetworkServiceClient::new(support::channel(addr).await);

    let call = |identity: &'static str| {
        let mut request = tonic::Request::new(pb::ModifyInstanceNetworkSpecRequest {
            internet_max_bandwidth_out: Some(9),
            ..support::request("i-demo-postpaid")
        });
        support::with_identity(&mut request, identity);
        request
    };
    // Allowed in force, denied by the candidate: still allowed.
    client
        .modify_instance_network_spec(call(support::WEBAPP))
        .await
        .expect("the shadow decision is never enforced");
    // Both allow.
    client
        .modify_instance_network_spec(call(support::NETOPS))
        .await
        .unwrap();

    let text = metrics.encode();
    assert!(
        text.contains("shadow_decisions_total{result=\"disagree\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shadow_decisions_total{result=\"agree\"} 1"),
        "{text}"
    );
    let lines: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["target"] == "shadow")
        .collect();
    assert_eq!(lines.len(), 1, "{}", logs.text());
    let line = &lines[0];
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["identity"], support::WEBAPP);
    assert!(
        line["active"]
            .as_str()
            .unwrap()
            .starts_with("Allow (control.baseline,identity.app-teams-bandwidth"),
        "{line}"
    );
    assert_eq!(
        line["candidate"],
        "ImplicitDeny by identity on ecs:ModifyInstanceNetworkSpec ()"
    );
    assert_ne!(line["active_version"], line["candidate_version"]);
    let _ = std::fs::remove_dir_all(&candidate);
}

/// Issue 20, item 7: a shadow directory that does not load made `serve` and
/// `demo` exit 64, although shadow policies are never enforced. Now the
/// gateway starts with shadow mode off, says so (ERROR) and counts it, and
/// turns shadow mode on when the directory is fixed.
#[tokio::test]
async fn a_broken_shadow_directory_starts_the_gateway_with_shadow_off() {
    let candidate =
        std::env::temp_dir().join(format!("ecs-gw-shadow-broken-{}", uuid::Uuid::new_v4()));
    support::copy_dir(&support::policies_dir(), &candidate);
    let good = std::fs::read_to_string(candidate.join("identity/app-teams.cedar")).unwrap();
    std::fs::write(
        candidate.join("identity/app-teams.cedar"),
        "permit (principal, action, resource) when { nonsense };",
    )
    .unwrap();
    let env = std::collections::HashMap::from([
        (
            "ECS_GATEWAY_POLICY_DIR",
            support::policies_dir().display().to_string(),
        ),
        (
            "ECS_GATEWAY_POLICY_SHADOW_DIR",
            candidate.display().to_string(),
        ),
        (
            "ECS_GATEWAY_ACCOUNT_ID",
            support::DEMO_ACCOUNT_ID.to_owned(),
        ),
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-test".to_owned()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret".to_owned()),
    ]);
    let config = ecs_gateway::config::load(&ecs_gateway::config::Flags::default(), |name| {
        env.get(name).cloned()
    })
    .unwrap();
    let parts = ecs_gateway::server::build(&config).expect("starts with shadow mode off");
    assert!(parts.gateway.shadow().is_none());
    assert!(
        parts
            .metrics
            .encode()
            .contains("ecs_gateway_shadow_load_failures_total 1"),
        "{}",
        parts.metrics.encode()
    );
    let _watchers = ecs_gateway::server::watch_policies(&parts);
    // Fixed: the next change loads it.
    std::fs::write(candidate.join("identity/app-teams.cedar"), good).unwrap();
    let mut loaded = false;
    for _ in 0..100 {
        if parts.gateway.shadow().is_some() {
            loaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(loaded, "the fixed candidate was picked up");
    std::fs::remove_dir_all(candidate).unwrap();
}
