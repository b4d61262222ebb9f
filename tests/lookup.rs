//! Instances' real attributes from ECS (`policy.instance_lookup`): a signed
//! `DescribeInstances` through the upstream client, kept for a TTL, misses
//! coalesced, failures denied and never kept. The simulator answers
//! `DescribeInstances` from the instances it holds.

use std::sync::Arc;
use std::time::Duration;

use ecs_gateway::pb;
use ecs_gateway::pb::authorization_service_client::AuthorizationServiceClient;
use ecs_gateway::pb::instance_network_service_client::InstanceNetworkServiceClient;
use ecs_gateway::simulator::{self, ChargeType, Fault, Instance, Simulator};
use tonic::transport::Channel;

mod support;

struct World {
    sim: Simulator,
    calls: InstanceNetworkServiceClient<Channel>,
    explain: AuthorizationServiceClient<Channel>,
    metrics: Arc<ecs_gateway::telemetry::Metrics>,
    _gateway: support::Gateway,
    _stop_sim: tokio::sync::oneshot::Sender<()>,
}

/// The demo world plus instances entities.json does not list: a production
/// and a dev pay-as-you-go instance, and a subscription instance that
/// already has a public IP.
async fn world(ttl: Duration) -> World {
    world_signing_with(ttl, support::demo_credentials()).await
}

async fn world_signing_with(
    ttl: Duration,
    credentials: ecs_gateway::credentials::Credentials,
) -> World {
    world_with(
        credentials,
        |_| {},
        ecs_gateway::lookup::Config {
            ttl,
            max_instances: 100,
            ..Default::default()
        },
    )
    .await
}

async fn world_with(
    credentials: ecs_gateway::credentials::Credentials,
    tune: impl FnOnce(&mut simulator::Config),
    lookup: ecs_gateway::lookup::Config,
) -> World {
    world_with_gateway(credentials, tune, lookup, |_| {}).await
}

async fn world_with_gateway(
    credentials: ecs_gateway::credentials::Credentials,
    tune: impl FnOnce(&mut simulator::Config),
    lookup: ecs_gateway::lookup::Config,
    settings: impl FnOnce(&mut ecs_gateway::config::Config),
) -> World {
    let mut config = simulator::Config::demo();
    tune(&mut config);
    for (id, env, charge, ip) in [
        (
            "i-new-prod",
            "production",
            ChargeType::PostPaid,
            Some("47.1.1.1"),
        ),
        ("i-new-dev", "dev", ChargeType::PostPaid, Some("47.1.1.2")),
        ("i-new-sub", "dev", ChargeType::PrePaid, Some("47.1.1.3")),
        ("i-new-bare", "dev", ChargeType::PrePaid, None),
    ] {
        let mut instance = Instance::new(id, support::DEMO_REGION, charge);
        instance.tags = vec![("env".into(), env.into())];
        instance.public_ip = ip.map(str::to_owned);
        instance.bandwidth_out = u32::from(ip.is_some());
        config.instances.push(instance);
    }
    let (sim, sim_url, stop_sim) = support::simulator(config).await;
    let mut config = support::config(&sim_url);
    config.credentials = Some(ecs_gateway::credentials::Config::Static(credentials));
    config.upstream.max_attempts = 1;
    config.lookup = Some(lookup);
    settings(&mut config);
    let gateway = support::spawn(config).await;
    World {
        sim,
        calls: gateway.client.clone(),
        explain: AuthorizationServiceClient::new(support::channel(gateway.addr).await),
        metrics: gateway.metrics.clone(),
        _gateway: gateway,
        _stop_sim: stop_sim,
    }
}

impl World {
    async fn call(
        &self,
        identity: &str,
        request: pb::ModifyInstanceNetworkSpecRequest,
    ) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
        let mut request = tonic::Request::new(request);
        support::with_identity(&mut request, identity);
        self.calls
            .clone()
            .modify_instance_network_spec(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn explain(
        &self,
        identity: &str,
        call: pb::ModifyInstanceNetworkSpecRequest,
    ) -> pb::ExplainResponse {
        let mut request = tonic::Request::new(pb::ExplainRequest {
            request: Some(call),
            ..Default::default()
        });
        support::with_identity(&mut request, identity);
        self.explain
            .clone()
            .explain(request)
            .await
            .unwrap()
            .into_inner()
    }

    fn lookups(&self, result: &str) -> u64 {
        let text = self.metrics.encode();
        let needle = format!("ecs_gateway_instance_lookups_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map_or(0, |n| n.parse().unwrap())
    }
}

fn billing_change(instance: &str) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        network_charge_type: pb::NetworkChargeType::PayByBandwidth as i32,
        ..support::request(instance)
    }
}

fn bandwidth(instance: &str, out: i32) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(out),
        ..support::request(instance)
    }
}

#[tokio::test]
async fn tag_and_billing_rules_apply_to_every_instance_ecs_describes() {
    let world = world(Duration::from_secs(60)).await;
    // Not in entities.json: with the lookup off the billing guardrail denies
    // it as unknown; ECS says it is a dev instance, so it passes.
    world
        .call(support::NETOPS, billing_change("i-new-dev"))
        .await
        .expect("a dev instance's billing may change");
    // ECS says production: the guardrail denies by the tag.
    let denied = world
        .call(support::NETOPS, billing_change("i-new-prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let explained = world
        .explain(support::NETOPS, billing_change("i-new-prod"))
        .await;
    assert_eq!(
        explained.denied.unwrap().policies,
        ["control.no-billing-change-on-production"]
    );
    // A subscription instance ECS says has a public IP: raising its
    // bandwidth allocates none, so ecs:AssociatePublicIpAddress is false and
    // the app team's bandwidth permit applies; one without a public IP
    // would get one from ECS, which app teams may not do.
    let with_ip = world
        .explain(support::WEBAPP, bandwidth("i-new-sub", 5))
        .await;
    assert!(!with_ip.associate_public_ip_address);
    assert_eq!(with_ip.verdict(), pb::Verdict::Allow, "{with_ip:?}");
    let bare = world
        .explain(support::WEBAPP, bandwidth("i-new-bare", 5))
        .await;
    assert!(bare.associate_public_ip_address);
    assert_eq!(
        bare.denied.unwrap().policies,
        ["control.no-public-ip-for-app-teams"]
    );
    // An instance ECS does not know is unknown to the policies.
    let missing = world
        .explain(support::NETOPS, billing_change("i-nowhere"))
        .await;
    assert_eq!(
        missing.denied.unwrap().policies,
        ["control.no-billing-change-on-production"]
    );
}

#[tokio::test]
async fn answers_are_kept_for_the_ttl_then_asked_again() {
    let world = world(Duration::from_millis(400)).await;
    world
        .explain(support::NETOPS, bandwidth("i-new-dev", 5))
        .await;
    assert_eq!((world.sim.describe_calls(), world.lookups("miss")), (1, 1));
    world
        .explain(support::NETOPS, bandwidth("i-new-dev", 6))
        .await;
    assert_eq!(
        (world.sim.describe_calls(), world.lookups("hit")),
        (1, 1),
        "a hit asks ECS nothing"
    );
    // Another instance is another entry.
    world
        .explain(support::NETOPS, bandwidth("i-new-sub", 5))
        .await;
    assert_eq!(world.sim.describe_calls(), 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    world
        .explain(support::NETOPS, bandwidth("i-new-dev", 5))
        .await;
    assert_eq!(
        (world.sim.describe_calls(), world.lookups("miss")),
        (3, 3),
        "expired: asked again"
    );
}

#[tokio::test]
async fn concurrent_misses_share_one_describe_call() {
    let world = world(Duration::from_secs(60)).await;
    // The first call ECS gets is slow, so every other decision arrives
    // while it is in flight.
    world.sim.inject(Fault::Latency(Duration::from_millis(400)));
    let asks = (0..8).map(|i| world.explain(support::NETOPS, bandwidth("i-new-dev", 5 + i)));
    let answers = futures_util::future::join_all(asks).await;
    assert!(answers.iter().all(|a| a.verdict() == pb::Verdict::Allow));
    assert_eq!(
        world.sim.describe_calls(),
        1,
        "one DescribeInstances for 8 misses"
    );
    assert_eq!(world.lookups("error"), 0);
}

#[tokio::test]
async fn a_failed_lookup_denies_and_is_not_kept() {
    let world = world(Duration::from_secs(60)).await;
    // The gateway's RAM identity may not call DescribeInstances.
    world.sim.inject(Fault::Error {
        code: "Forbidden.RAM".into(),
        http_status: 403,
    });
    let denied = world
        .call(support::NETOPS, bandwidth("i-new-dev", 5))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(support::reason(&denied), "AccessDenied");
    assert!(
        denied.message().contains(
            "could not be read from ECS (DescribeInstances): ECS answered HTTP 403 Forbidden.RAM"
        ),
        "the denial says the lookup failed: {denied:?}"
    );
    assert_eq!(world.lookups("error"), 1);
    // Nothing was forwarded; the next call asks ECS again and goes through.
    assert_eq!(world.sim.instance("i-new-dev").unwrap().bandwidth_out, 1);
    world
        .call(support::NETOPS, bandwidth("i-new-dev", 5))
        .await
        .expect("the failure was not kept");
    assert_eq!(world.sim.instance("i-new-dev").unwrap().bandwidth_out, 5);
    assert_eq!(world.lookups("miss"), 1);
}

#[tokio::test]
async fn a_failed_lookup_never_quotes_ecs_message_which_can_hold_the_sts_token() {
    // A wrong secret: ECS answers SignatureDoesNotMatch, quoting the string
    // it signed, SecurityToken included.
    const TOKEN: &str = "sts-token-that-must-never-leave";
    let credentials = ecs_gateway::credentials::Credentials {
        access_key_secret: ecs_gateway::credentials::Secret::new("not-the-secret"),
        security_token: Some(ecs_gateway::credentials::Secret::new(TOKEN)),
        ..support::demo_credentials()
    };
    let world = world_signing_with(Duration::from_secs(60), credentials).await;
    let denied = world
        .call(support::NETOPS, bandwidth("i-new-dev", 5))
        .await
        .unwrap_err();
    assert!(
        denied.message().contains("SignatureDoesNotMatch"),
        "{denied:?}"
    );
    assert!(
        !format!("{denied:?}").contains(TOKEN) && !format!("{denied:?}").contains("string to sign"),
        "ECS's message is not passed on: {denied:?}"
    );
}

/// After a change was sent, what ECS said of the instance is forgotten.
#[tokio::test]
async fn a_change_forgets_the_instances_answer() {
    let world = world(Duration::from_secs(60)).await;
    world
        .call(support::NETOPS, bandwidth("i-new-dev", 5))
        .await
        .unwrap();
    assert_eq!(world.sim.describe_calls(), 1);
    world
        .explain(support::NETOPS, bandwidth("i-new-dev", 6))
        .await;
    assert_eq!(
        world.sim.describe_calls(),
        2,
        "asked again after the change"
    );
}

/// An identity without a principal is denied without asking ECS.
#[tokio::test]
async fn no_lookup_for_an_identity_without_a_principal() {
    let world = world(Duration::from_secs(60)).await;
    let denied = world
        .call("spiffe://demo.local/sa/stranger", bandwidth("i-new-dev", 5))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(world.sim.describe_calls(), 0);
}

/// A caller with a short deadline does not fail the others waiting for the
/// same answer: the shared call has its own budget.
#[tokio::test]
async fn a_hurried_caller_does_not_fail_the_others() {
    let world = world(Duration::from_secs(60)).await;
    world.sim.inject(Fault::Latency(Duration::from_millis(600)));
    let hurried = async {
        let mut request = tonic::Request::new(bandwidth("i-new-dev", 5));
        support::with_identity(&mut request, support::NETOPS);
        request.set_timeout(Duration::from_millis(150));
        world
            .calls
            .clone()
            .modify_instance_network_spec(request)
            .await
    };
    let patient = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        world
            .explain(support::NETOPS, bandwidth("i-new-dev", 6))
            .await
    };
    let (hurried, patient) = tokio::join!(hurried, patient);
    assert!(hurried.is_err(), "{hurried:?}");
    assert_eq!(patient.verdict(), pb::Verdict::Allow, "{patient:?}");
    assert_eq!(world.sim.describe_calls(), 1);
}

/// An Explain's lookup keeps to the caller's deadline: the answer (a
/// denial saying why) comes before the caller gives up.
#[tokio::test]
async fn an_explains_lookup_keeps_to_the_callers_deadline() {
    let world = world(Duration::from_secs(60)).await;
    world
        .sim
        .inject(Fault::Latency(Duration::from_millis(1500)));
    let mut request = tonic::Request::new(pb::ExplainRequest {
        request: Some(bandwidth("i-new-dev", 5)),
        ..Default::default()
    });
    support::with_identity(&mut request, support::NETOPS);
    request.set_timeout(Duration::from_millis(800));
    let refused = world.explain.clone().explain(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("within the call's deadline"),
        "{refused:?}"
    );
}

/// Issue 20, item 3: every call of a mapped identity looked the instance up
/// before any policy ran, even calls the control layer denies on the region
/// alone; webapp's 40 such calls spent 41 lookups. Now a call denied
/// whatever the instance is is denied without asking ECS.
#[tokio::test]
async fn calls_denied_whatever_the_instance_is_need_no_lookup() {
    let world = world(Duration::from_secs(60)).await;
    for i in 0..40 {
        let request = pb::ModifyInstanceNetworkSpecRequest {
            region_id: "ap-southeast-1".into(),
            ..bandwidth(&format!("i-random{i:04}"), 5)
        };
        let denied = world.call(support::WEBAPP, request).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("control.allowed-regions"),
            "{denied:?}"
        );
    }
    assert_eq!(
        world.sim.describe_calls(),
        0,
        "no lookup for region denials"
    );
    // A temporary upgrade by an application team is forbidden whatever the
    // instance is, too.
    let temporary = pb::ModifyInstanceNetworkSpecRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 7200,
            nanos: 0,
        }),
        ..bandwidth("i-new-dev", 5)
    };
    world.call(support::WEBAPP, temporary).await.unwrap_err();
    assert_eq!(world.sim.describe_calls(), 0);
    // Where the instance decides (a billing change: production or not), ECS
    // is asked.
    world
        .call(support::NETOPS, billing_change("i-new-dev"))
        .await
        .expect("a dev instance's billing may change");
    assert_eq!(world.sim.describe_calls(), 1);
}

/// Issue 20, item 3: lookups were not bounded per caller, so webapp's calls
/// spent the account's DescribeInstances quota (the simulator throttles at
/// 10 a second) and netops' legitimate call was denied. Now each identity
/// has a share of the lookups: webapp is refused (retryable) past its
/// share, and netops still gets its own.
#[tokio::test]
async fn one_caller_cannot_spend_the_lookups_of_others() {
    let world = world_with(
        support::demo_credentials(),
        |sim| sim.throttle_per_second = Some(10),
        ecs_gateway::lookup::Config {
            max_per_second: 8,
            max_per_second_per_caller: 2,
            ..Default::default()
        },
    )
    .await;
    let mut throttled = 0;
    for i in 0..15 {
        // Unknown instances in an allowed region: whether ECS would
        // allocate a public IP decides, so each needs a lookup.
        match world
            .call(support::WEBAPP, bandwidth(&format!("i-random{i:04}"), 5))
            .await
        {
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                assert_eq!(support::reason(&status), "GatewayLookupThrottled");
                assert!(
                    status
                        .message()
                        .contains("limit 2 instance lookups per second per caller"),
                    "{status:?}"
                );
                throttled += 1;
            }
            _ => {}
        }
    }
    // Two lookups a second for webapp (a slow machine may give it a third
    // or fourth while the loop runs), far below the simulator's ten.
    assert!(throttled >= 11, "{throttled} of 15 throttled");
    assert_eq!(world.sim.describe_calls(), 15 - throttled);
    world
        .call(support::NETOPS, bandwidth("i-new-dev", 7))
        .await
        .expect("netops still has its lookups");
    assert_eq!(world.lookups("throttled"), throttled);
}

/// Issue 20, item 8: Explain's own permission decisions were counted with
/// calls' in `ecs_gateway_decisions_total`, so asking about denied calls
/// set off denial alerts. They are counted apart.
#[tokio::test]
async fn explains_permission_decisions_are_counted_apart_from_calls() {
    let world = world(Duration::from_secs(60)).await;
    world
        .explain(support::NETOPS, bandwidth("i-new-dev", 5))
        .await;
    let text = world.metrics.encode();
    assert!(
        text.contains("ecs_gateway_explain_decisions_total{result=\"allow\",layer=\"all\"} 1"),
        "{text}"
    );
    assert!(!text.contains("ecs_gateway_decisions_total{"), "{text}");
}

/// The attacker's review of issue 20: the call to ECS runs in the future of
/// the caller that started it; when that caller's deadline ended first, a
/// waiting caller ran the lookup again, uncharged, so callers with staggered
/// deadlines made several DescribeInstances for one charge. Now whoever
/// starts a call to ECS pays for it.
#[tokio::test]
async fn a_lookup_started_again_after_its_caller_left_is_charged() {
    let world = world_with(
        support::demo_credentials(),
        |_| {},
        ecs_gateway::lookup::Config {
            max_per_second: 8,
            max_per_second_per_caller: 1,
            ..Default::default()
        },
    )
    .await;
    for _ in 0..5 {
        world.sim.inject(Fault::Latency(Duration::from_millis(800)));
    }
    let ask = |timeout: Option<Duration>, after: Duration| {
        let mut client = world.explain.clone();
        async move {
            tokio::time::sleep(after).await;
            let mut request = tonic::Request::new(pb::ExplainRequest {
                request: Some(bandwidth("i-new-dev", 5)),
                ..Default::default()
            });
            support::with_identity(&mut request, support::NETOPS);
            if let Some(timeout) = timeout {
                request.set_timeout(timeout);
            }
            client.explain(request).await
        }
    };
    let _ = tokio::join!(
        ask(Some(Duration::from_millis(150)), Duration::ZERO),
        ask(Some(Duration::from_millis(300)), Duration::from_millis(10)),
        ask(Some(Duration::from_millis(450)), Duration::from_millis(20)),
        ask(Some(Duration::from_millis(600)), Duration::from_millis(30)),
        ask(None, Duration::from_millis(40)),
    );
    assert_eq!(
        world.sim.calls(),
        1,
        "one DescribeInstances for netops' one lookup a second"
    );
}

/// The attacker's review of issue 20: Explain looked the instance up before
/// checking `ecsgateway:Explain`, so a caller who may not ask spent lookups.
/// A caller the policies refuse whatever the instance is spends none.
#[tokio::test]
async fn an_explain_refused_whatever_the_instance_is_needs_no_lookup() {
    let world = world(Duration::from_secs(60)).await;
    // webapp may not simulate netops.
    let mut request = tonic::Request::new(pb::ExplainRequest {
        request: Some(bandwidth("i-new-dev", 5)),
        identity: Some(pb::SimulatedIdentity {
            kind: Some(pb::simulated_identity::Kind::SpiffeId(
                support::NETOPS.into(),
            )),
        }),
        ..Default::default()
    });
    support::with_identity(&mut request, support::WEBAPP);
    let status = world.explain.clone().explain(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("ecsgateway:SimulatePrincipal"),
        "{status:?}"
    );
    assert_eq!(world.sim.calls(), 0, "no DescribeInstances");
}

/// The attacker's review of issue 20: a call denied without a lookup was
/// decided by the shadow policies on an instance never looked up, so a
/// candidate that needs the instance was counted as agreeing. Such calls
/// are now counted `not_compared`.
#[tokio::test]
async fn shadow_policies_that_need_the_instance_are_not_compared_on_early_denials() {
    // The candidate drops the region guardrail: whether webapp's call
    // allocates a public IP (so the instance) decides it.
    let candidate = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), candidate.path());
    let guardrails = candidate.path().join("control/guardrails.cedar");
    let text = std::fs::read_to_string(&guardrails).unwrap();
    let start = text.find("@id(\"control.allowed-regions\")").unwrap();
    let end = start + text[start..].find(";\n").unwrap() + 2;
    std::fs::write(&guardrails, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let world = world_with_gateway(
        support::demo_credentials(),
        |_| {},
        ecs_gateway::lookup::Config::default(),
        |c| c.policy.shadow_dir = Some(candidate.path().to_owned()),
    )
    .await;
    let request = pb::ModifyInstanceNetworkSpecRequest {
        region_id: "ap-southeast-1".into(),
        ..bandwidth("i-random0001", 5)
    };
    world.call(support::WEBAPP, request).await.unwrap_err();
    let text = world.metrics.encode();
    assert!(
        text.contains("ecs_gateway_shadow_decisions_total{result=\"not_compared\"} 1"),
        "{text}"
    );
    assert!(!text.contains("result=\"agree\""), "{text}");
}
