//! What operators rely on: Prometheus metrics scraped from the admin port
//! after a handful of calls (counts and labels), liveness and readiness,
//! gRPC health and reflection (v1 and v1alpha) without an identity, and
//! readiness turning false while calls in flight drain at shutdown.

mod support;

use std::time::Duration;

use ecs_gateway::pb;
use ecs_gateway::simulator::{self, Fault};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

async fn get(url: String) -> (u16, String) {
    ecs_gateway::install_crypto_provider();
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn call_as(
    addr: std::net::SocketAddr,
    identity: Option<&str>,
    out: i32,
) -> Result<(), tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(out),
        ..support::request("i-demo-postpaid")
    });
    if let Some(identity) = identity {
        support::with_identity(&mut request, identity);
    }
    pb::instance_network_service_client::InstanceNetworkServiceClient::new(channel)
        .modify_instance_network_spec(request)
        .await
        .map(|_| ())
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[tokio::test]
async fn metrics_count_calls_decisions_and_upstream() {
    let r = support::start().await;
    call_as(r.gateway.addr, Some(support::NETOPS), 11)
        .await
        .unwrap();
    call_as(r.gateway.addr, Some(support::NETOPS), 12)
        .await
        .unwrap();
    call_as(r.gateway.addr, Some(support::WEBAPP), 50)
        .await
        .unwrap_err();
    call_as(r.gateway.addr, Some(support::NETOPS), 999)
        .await
        .unwrap_err();
    call_as(r.gateway.addr, None, 10).await.unwrap_err();
    // A previous request still running, then served on the retry.
    r.sim.inject(Fault::Error {
        code: "LastRequestProcessing".into(),
        http_status: 400,
    });
    call_as(r.gateway.addr, Some(support::NETOPS), 13)
        .await
        .unwrap();
    // A final refusal.
    r.sim.inject(Fault::Error {
        code: "IncorrectInstanceStatus".into(),
        http_status: 403,
    });
    call_as(r.gateway.addr, Some(support::NETOPS), 14)
        .await
        .unwrap_err();

    // A made-up method must not mint a label value.
    let channel = Channel::from_shared(format!("http://{}", r.gateway.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let made_up = grpc
        .unary::<_, pb::ModifyInstanceNetworkSpecResponse, _>(
            tonic::Request::new(support::request("i-demo-postpaid")),
            http::uri::PathAndQuery::from_static("/attacker.Service/Random123"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert!(made_up.is_err());
    // Nor a made-up method under a real service.
    let mut grpc = tonic::client::Grpc::new(
        Channel::from_shared(format!("http://{}", r.gateway.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let mut minted = tonic::Request::new(support::request("i-demo-postpaid"));
    support::with_identity(&mut minted, support::NETOPS);
    let minted = grpc
        .unary::<_, pb::ModifyInstanceNetworkSpecResponse, _>(
            minted,
            http::uri::PathAndQuery::from_static("/ecsgateway.v1.InstanceNetworkService/Minted123"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert!(minted.is_err());

    let (status, metrics) = get(format!("http://{}/metrics", r.gateway.admin_addr)).await;
    assert!(
        !metrics.contains("Random123")
            && !metrics.contains("attacker")
            && !metrics.contains("Minted123"),
        "{metrics}"
    );
    assert!(metrics.contains("method=\"unknown\""), "{metrics}");
    assert_eq!(status, 200);
    let calls = |code: &str| {
        value(
            &metrics,
            &format!(
                "ecs_gateway_grpc_calls_total{{method=\"ModifyInstanceNetworkSpec\",code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(calls("OK"), Some(3.0), "{metrics}");
    assert_eq!(calls("PERMISSION_DENIED"), Some(1.0));
    assert_eq!(calls("INVALID_ARGUMENT"), Some(1.0));
    assert_eq!(calls("UNAUTHENTICATED"), Some(1.0));
    assert_eq!(calls("FAILED_PRECONDITION"), Some(1.0));
    assert_eq!(
        value(
            &metrics,
            "ecs_gateway_grpc_call_duration_seconds_count{method=\"ModifyInstanceNetworkSpec\",code=\"OK\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&metrics, "ecs_gateway_grpc_calls_in_flight"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &metrics,
            "ecs_gateway_decisions_total{result=\"allow\",layer=\"all\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &metrics,
            "ecs_gateway_decisions_total{result=\"deny\",layer=\"identity\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "ecs_gateway_upstream_duration_seconds_count{outcome=\"ok\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &metrics,
            "ecs_gateway_upstream_duration_seconds_count{outcome=\"IncorrectInstanceStatus\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "ecs_gateway_policy_reloads_total{outcome=\"failure\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        r.sim.calls(),
        5,
        "only the allowed and valid calls reached ECS, the throttled one twice"
    );
    assert_eq!(
        value(&metrics, "ecs_gateway_upstream_retries_total"),
        Some(1.0)
    );
    assert!(
        metrics.contains("ecs_gateway_policy_version_info{version=\""),
        "{metrics}"
    );
    assert!(value(&metrics, "ecs_gateway_policies").is_some_and(|n| n >= 10.0));
    assert!(metrics.contains("# TYPE ecs_gateway_grpc_call_duration_seconds histogram"));

    assert_eq!(
        get(format!("http://{}/healthz", r.gateway.admin_addr))
            .await
            .0,
        200
    );
    assert_eq!(
        get(format!("http://{}/readyz", r.gateway.admin_addr))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn health_and_reflection_need_no_identity() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.server.reflection = true;
    })
    .await;
    let addr = h.gateway.addr;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "ecsgateway.v1.InstanceNetworkService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    use tonic_reflection::pb::v1 as reflection;
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers =
        reflection::server_reflection_client::ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"ecsgateway.v1.InstanceNetworkService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    use tonic_reflection::pb::v1alpha as alpha;
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "ecsgateway.v1.InstanceNetworkService".into(),
            ),
        ),
    };
    let answer = alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        answer.message_response,
        Some(alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

/// `serve` answers reflection only when `server.reflection` is on (the demo
/// turns it on); health is always there.
#[tokio::test]
async fn reflection_is_off_unless_enabled() {
    use tonic_reflection::pb::v1 as reflection;
    let r = support::start().await;
    let channel = Channel::from_shared(format!("http://{}", r.gateway.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let status = reflection::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn readiness_turns_false_while_calls_drain() {
    let mut r = support::start().await;
    r.sim.inject(Fault::Latency(Duration::from_secs(3)));
    let addr = r.gateway.addr;
    let slow = tokio::spawn(async move { call_as(addr, Some(support::NETOPS), 15).await });
    // Let the slow call reach the simulator, then ask the gateway to stop.
    while r.sim.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.gateway.stop();
    let mut not_ready = false;
    for _ in 0..50 {
        if get(format!("http://{}/readyz", r.gateway.admin_addr))
            .await
            .0
            == 503
        {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(not_ready, "readiness stayed true during shutdown");
    slow.await.unwrap().expect("the call in flight finished");
    assert_eq!(r.sim.instance("i-demo-postpaid").unwrap().bandwidth_out, 15);
}
