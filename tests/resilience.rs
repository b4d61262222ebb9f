//! Resilience against a failing ECS and a flood of callers: retries only
//! where they are safe and only with the same ClientToken, exactly-once
//! under random failures, the retry budget, the circuit breaker, load
//! shedding, the shutdown grace period, and hostile frames.

mod support;

use std::time::Duration;

use ecs_gateway::pb;
use ecs_gateway::simulator::{self, Chaos, Fault};
use ecs_gateway::upstream;
use support::reason;
use tonic::Code;
use tonic_types::StatusExt as _;

fn out(mbps: i32, token: &str) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(mbps),
        client_token: token.into(),
        ..support::request("i-demo-postpaid")
    }
}

/// A simulator and a gateway whose upstream settings `tune` changes.
async fn start(tune: impl FnOnce(&mut upstream::Config)) -> support::Harness {
    support::start_with(simulator::Config::demo(), |c| {
        // Fast backoff keeps the tests quick; the logic is the same.
        c.upstream.backoff = Duration::from_millis(5);
        c.upstream.max_backoff = Duration::from_millis(20);
        tune(&mut c.upstream);
    })
    .await
}

#[tokio::test]
async fn retries_transport_errors_and_5xx_with_the_same_token() {
    let h = start(|_| {}).await;
    h.sim.inject(Fault::HttpStatus(503));
    h.sim.inject(Fault::Drop);
    let response = h.call(out(21, "retry-1")).await.unwrap();
    assert_eq!(response.client_token, "retry-1");
    assert_eq!(h.sim.calls(), 3, "two failed attempts, then success");
    assert_eq!(h.sim.applied(&support::ecs_token("retry-1")), 1);
}

#[tokio::test]
async fn retries_ecs_try_again_codes() {
    for code in [
        "LastRequestProcessing",
        "LastOrderProcessing",
        "TaskConflict",
        "OperationConflict",
    ] {
        let h = start(|_| {}).await;
        let http_status = if code == "OperationConflict" {
            409
        } else {
            400
        };
        h.sim.inject(Fault::Error {
            code: code.into(),
            http_status,
        });
        h.call(out(22, code))
            .await
            .unwrap_or_else(|e| panic!("{code}: {e:?}"));
        assert_eq!(
            (h.sim.calls(), h.sim.applied(&support::ecs_token(code))),
            (2, 1),
            "{code}"
        );
    }
}

/// ECS asks a throttled caller to come back in five minutes: retrying
/// within the call cannot succeed and only adds load, so the caller gets
/// the 300 s hint at once. A failed order is not retried either.
#[tokio::test]
async fn throttling_and_failed_orders_are_answered_at_once() {
    for (code, http_status, grpc, retry) in [
        (
            "Throttling",
            400,
            Code::ResourceExhausted,
            Some(Duration::from_secs(300)),
        ),
        (
            "Throttling",
            403,
            Code::ResourceExhausted,
            Some(Duration::from_secs(300)),
        ),
        ("Image.OrderFailed", 500, Code::FailedPrecondition, None),
    ] {
        let h = start(|_| {}).await;
        h.sim.inject(Fault::Error {
            code: code.into(),
            http_status,
        });
        let status = h.call(out(22, code)).await.unwrap_err();
        assert_eq!((status.code(), reason(&status).as_str()), (grpc, code));
        assert_eq!(
            status
                .get_error_details()
                .retry_info()
                .and_then(|r| r.retry_delay),
            retry,
            "{code}"
        );
        assert_eq!(h.sim.calls(), 1, "{code} {http_status} was retried");
    }
}

#[tokio::test]
async fn never_retries_final_answers() {
    let h = start(|_| {}).await;
    h.sim.inject(Fault::Error {
        code: "IncorrectInstanceStatus".into(),
        http_status: 403,
    });
    let status = h.call(out(23, "no-retry")).await.unwrap_err();
    assert_eq!(reason(&status), "IncorrectInstanceStatus");
    assert_eq!(h.sim.calls(), 1, "a 4xx is ECS's final word");
}

#[tokio::test]
async fn gives_up_after_the_last_attempt() {
    let h = start(|c| c.max_attempts = 3).await;
    for _ in 0..3 {
        h.sim.inject(Fault::HttpStatus(502));
    }
    let status = h.call(out(24, "give-up")).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "UpstreamInvalidResponse")
    );
    assert!(status.get_error_details().retry_info().is_some());
    assert_eq!(h.sim.calls(), 3);
}

#[tokio::test]
async fn the_retry_budget_stops_retries_multiplying_an_outage() {
    // No free retries and 10 % of calls: a burst of failures gets almost no
    // retries instead of three attempts each.
    let h = start(|c| {
        c.retry_min_per_second = 0;
        c.retry_ratio = 0.1;
        c.max_attempts = 3;
        c.breaker_failures = 1000;
    })
    .await;
    h.sim.set_chaos(Chaos {
        fail_before: 1.0,
        ..Chaos::default()
    });
    for i in 0..20 {
        assert!(h.call(out(25, &format!("budget-{i}"))).await.is_err());
    }
    let attempts = h.sim.calls();
    assert!(
        attempts < 26,
        "20 calls made {attempts} attempts: retries must stay near 10 %"
    );
    assert!(attempts >= 20);
}

#[tokio::test]
async fn every_change_is_applied_exactly_once_despite_random_failures() {
    let h = start(|c| {
        c.max_attempts = 8;
        c.retry_ratio = 1.0;
        c.retry_min_per_second = 1000;
        c.breaker_failures = 1000;
    })
    .await;
    // About one attempt in five fails: half before ECS applies anything,
    // half after, with the answer lost.
    h.sim.set_chaos(Chaos {
        fail_before: 0.1,
        drop_after: 0.1,
        ..Chaos::default()
    });
    let calls = 60;
    let mut tasks = Vec::new();
    for i in 0..calls {
        let client = h.gateway.client.clone();
        tasks.push(tokio::spawn(async move {
            let mut request = tonic::Request::new(out(1 + (i % 10), &format!("once-{i}")));
            support::with_identity(&mut request, support::NETOPS);
            let mut client = client;
            client.modify_instance_network_spec(request).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("no logical call is lost");
    }
    for i in 0..calls {
        assert_eq!(
            h.sim.applied(&support::ecs_token(&format!("once-{i}"))),
            1,
            "once-{i}"
        );
    }
    assert!(
        h.sim.calls() > u64::try_from(calls).unwrap(),
        "some attempts failed and were retried"
    );
}

#[tokio::test]
async fn the_circuit_opens_on_a_dead_endpoint_and_answers_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = support::config(&format!("http://127.0.0.1:{port}"));
    config.upstream.max_attempts = 1;
    config.upstream.breaker_failures = 2;
    config.upstream.breaker_open_for = Duration::from_secs(30);
    let h = support::spawn(config).await;
    for _ in 0..2 {
        let status = h.call(out(26, "")).await.unwrap_err();
        assert_eq!(reason(&status), "UpstreamUnavailable");
    }
    let status = h.call(out(26, "")).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "UpstreamCircuitOpen")
    );
    let delay = status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap();
    assert!(
        delay > Duration::from_secs(25) && delay <= Duration::from_secs(30),
        "{delay:?}"
    );
}

#[tokio::test]
async fn faults_reach_the_caller_with_the_right_code() {
    let h = start(|c| {
        c.max_attempts = 1;
        c.breaker_failures = 1000;
    })
    .await;
    let cases = [
        (Fault::Garbage, Code::Unavailable, "UpstreamInvalidResponse"),
        (Fault::Truncated, Code::Unavailable, "UpstreamUnavailable"),
        (Fault::Drop, Code::Unavailable, "UpstreamUnavailable"),
        (
            Fault::HttpStatus(500),
            Code::Unavailable,
            "UpstreamInvalidResponse",
        ),
        (
            Fault::Error {
                code: "InternalError".into(),
                http_status: 500,
            },
            Code::Unavailable,
            "InternalError",
        ),
        (
            Fault::Error {
                code: "Throttling".into(),
                http_status: 400,
            },
            Code::ResourceExhausted,
            "Throttling",
        ),
    ];
    for (fault, code, expected) in cases {
        h.sim.inject(fault.clone());
        let status = h.call(out(27, "")).await.unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (code, expected),
            "{fault:?}: {status:?}"
        );
        assert!(!status.message().is_empty());
    }
    h.sim.inject(Fault::Latency(Duration::from_secs(5)));
    let mut slow = tonic::Request::new(out(28, ""));
    support::with_identity(&mut slow, support::NETOPS);
    slow.metadata_mut()
        .insert("grpc-timeout", "400m".parse().unwrap());
    let status = h
        .gateway
        .client
        .clone()
        .modify_instance_network_spec(slow)
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::DeadlineExceeded, "UpstreamTimeout")
    );
}

#[tokio::test]
async fn sheds_calls_beyond_the_limit_at_once() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.admission.max_calls = 2;
    })
    .await;
    let addr = h.gateway.addr;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = pb::instance_network_service_client::InstanceNetworkServiceClient::new(channel);
    let call = |mbps: i32| {
        let mut client = client.clone();
        async move {
            let mut request = tonic::Request::new(out(mbps, ""));
            support::with_identity(&mut request, support::NETOPS);
            client.modify_instance_network_spec(request).await
        }
    };
    h.sim.inject(Fault::Latency(Duration::from_secs(3)));
    h.sim.inject(Fault::Latency(Duration::from_secs(3)));
    let slow = [tokio::spawn(call(31)), tokio::spawn(call(32))];
    while h.sim.calls() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = call(33).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "GatewayOverloaded")
    );
    assert!(status.get_error_details().retry_info().is_some());
    // Refused while both slow calls still hold their places: not queued
    // behind them.
    assert!(
        slow.iter().all(|task| !task.is_finished()),
        "the refusal waited for capacity"
    );
    for task in slow {
        task.await.unwrap().unwrap();
    }
    call(34).await.expect("capacity is back");
}

#[tokio::test]
async fn shutdown_cuts_calls_still_running_after_the_grace_period() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.upstream.attempt_timeout = Duration::from_secs(20);
        c.server.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let addr = h.gateway.addr;
    h.sim.inject(Fault::Latency(Duration::from_secs(10)));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stuck = tokio::spawn(async move {
        let mut request = tonic::Request::new(out(35, ""));
        support::with_identity(&mut request, support::NETOPS);
        pb::instance_network_service_client::InstanceNetworkServiceClient::new(channel)
            .modify_instance_network_spec(request)
            .await
    });
    while h.sim.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.gateway.stopped().await.unwrap();
    // Answered by the gateway at the end of the grace period; waiting out
    // the 10 s upstream would have brought ECS's success instead.
    let status = stuck.await.unwrap().unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "GatewayShuttingDown")
    );
    assert_eq!(
        status.get_error_details().error_info().unwrap().metadata["client_token"].len(),
        36
    );
}

/// Sends raw bytes as the request message, as a broken client would.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

#[tokio::test]
async fn hostile_frames_get_a_clean_error_and_the_server_stays_up() {
    let h = support::start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.gateway.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/ecsgateway.v1.InstanceNetworkService/ModifyInstanceNetworkSpec",
    );
    let send = |bytes: Vec<u8>| {
        let channel = channel.clone();
        let path = path.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.unwrap();
            let mut request = tonic::Request::new(bytes);
            support::with_identity(&mut request, support::NETOPS);
            grpc.unary(request, path, RawCodec).await
        }
    };
    // Not protobuf at all.
    let status = send(vec![0xff; 64]).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    // A valid message far above the size limit.
    let mut huge = Vec::new();
    prost::Message::encode(
        &pb::ModifyInstanceNetworkSpecRequest {
            instance_id: "i-".to_owned() + &"a".repeat(200_000),
            ..support::request("i-x")
        },
        &mut huge,
    )
    .unwrap();
    let status = send(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    assert_eq!(h.sim.calls(), 0);
    // The gateway still serves.
    h.call(out(36, "")).await.unwrap();
}

#[tokio::test]
async fn a_flood_is_served_or_refused_and_nothing_breaks() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.admission.max_calls = 16;
    })
    .await;
    h.sim.set_chaos(Chaos {
        latency: Duration::from_millis(100),
        ..Chaos::default()
    });
    let addr = h.gateway.addr;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let mut client =
            pb::instance_network_service_client::InstanceNetworkServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut request = tonic::Request::new(out(1 + (i % 50), ""));
            support::with_identity(&mut request, support::NETOPS);
            client
                .modify_instance_network_spec(request)
                .await
                .map(|_| ())
        }));
    }
    let (mut served, mut shed) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => served += 1,
            Err(status) => {
                assert_eq!(
                    (status.code(), reason(&status).as_str()),
                    (Code::ResourceExhausted, "GatewayOverloaded")
                );
                shed += 1;
            }
        }
    }
    assert_eq!(served + shed, 300);
    assert!(served >= 16 && shed > 0, "served {served}, shed {shed}");
    h.call(out(40, ""))
        .await
        .expect("still serving after the flood");
}
