//! Shadow mode: a candidate policy directory decided beside the one in force
//! on every call; a disagreement is logged (both decisions, their determining
//! policies and versions) and counted, never enforced.

use ecs_gateway::{pb, simulator};

mod support;

#[tokio::test]
async fn shadow_policies_are_compared_logged_and_never_enforced() {
    let logs = support::capture_json_logs();

    // The candidate: the app teams' permissions removed.
    let candidate = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), candidate.path());
    std::fs::remove_file(candidate.path().join("identity/app-teams.cedar")).unwrap();
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.policy.shadow_dir = Some(candidate.path().to_owned());
    })
    .await;
    let metrics = h.gateway.metrics.clone();
    let mut client = h.gateway.client.clone();

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
}

/// Issue 20, item 7: a shadow directory that does not load made `serve` and
/// `demo` exit 64, although shadow policies are never enforced. Now the
/// gateway starts with shadow mode off, says so (ERROR) and counts it, and
/// turns shadow mode on when the directory is fixed.
#[tokio::test]
async fn a_broken_shadow_directory_starts_the_gateway_with_shadow_off() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path();
    support::copy_dir(&support::policies_dir(), candidate);
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
    let stack = ecs_gateway::server::build(&config).expect("starts with shadow mode off");
    assert!(stack.gateway.shadow().is_none());
    assert!(
        stack
            .metrics
            .encode()
            .contains("ecs_gateway_shadow_load_failures_total 1"),
        "{}",
        stack.metrics.encode()
    );
    let _watchers = ecs_gateway::server::watch_policies(&stack);
    // Fixed: the next change loads it.
    std::fs::write(candidate.join("identity/app-teams.cedar"), good).unwrap();
    let mut loaded = false;
    for _ in 0..100 {
        if stack.gateway.shadow().is_some() {
            loaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(loaded, "the fixed candidate was picked up");
}
