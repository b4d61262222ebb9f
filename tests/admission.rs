//! Admission, as a caller who wants to starve others sees it: streams that
//! never send their message hold nothing, one identity cannot take every
//! place, and a caller that goes away is counted CANCELLED. A raw HTTP/2
//! client (the `h2` crate) sends what no well-behaved gRPC client would.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ecs_gateway::pb;
use ecs_gateway::simulator::{self, Fault};
use tonic::Code;

const METHOD: &str = "/ecsgateway.v1.InstanceNetworkService/ModifyInstanceNetworkSpec";

/// An HTTP/2 connection to the gateway; the task drives it.
async fn connect(
    addr: SocketAddr,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, task)
}

/// Opens a call as `identity` and sends its headers, but no message.
async fn open_call(
    send: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    identity: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = http::Request::post(format!("http://{addr}{METHOD}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-forwarded-client-cert", format!("URI={identity}"))
        .body(())
        .unwrap();
    *send = send.clone().ready().await.unwrap();
    send.send_request(request, false).unwrap()
}

/// Netops' call through the gateway at `addr`.
async fn call_netops(
    addr: SocketAddr,
    mbps: i32,
) -> Result<tonic::Response<pb::ModifyInstanceNetworkSpecResponse>, tonic::Status> {
    let mut client = pb::instance_network_service_client::InstanceNetworkServiceClient::new(
        support::channel(addr).await,
    );
    let mut request = tonic::Request::new(out(mbps));
    support::with_identity(&mut request, support::NETOPS);
    client.modify_instance_network_spec(request).await
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

async fn metrics(admin: SocketAddr) -> String {
    ecs_gateway::install_crypto_provider();
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn out(mbps: i32) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(mbps),
        ..support::request("i-demo-postpaid")
    }
}

#[tokio::test]
async fn a_caller_that_goes_away_mid_message_is_counted_cancelled() {
    let h = support::start().await;
    let (addr, admin) = (h.gateway.addr, h.gateway.admin_addr);
    let (mut send, connection) = connect(addr).await;
    let (_response, mut stream) = open_call(&mut send, addr, support::NETOPS).await;
    // A frame header announcing 100 bytes, then only 3 of them.
    stream
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3]), false)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    connection.abort();
    drop((send, stream));
    let series = |code: &str| {
        format!(
            "ecs_gateway_grpc_calls_total{{method=\"ModifyInstanceNetworkSpec\",code=\"{code}\"}}"
        )
    };
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics(admin).await;
        if value(&text, &series("CANCELLED")).is_some()
            || value(&text, &series("UNKNOWN")).is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(value(&text, &series("CANCELLED")), Some(1.0), "{text}");
    assert_eq!(value(&text, &series("UNKNOWN")), None, "{text}");
    assert_eq!(h.sim.calls(), 0);
}

#[tokio::test]
async fn streams_that_never_send_their_message_hold_no_place() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.admission.receive_timeout = Duration::from_secs(2);
        let limits = (c.admission.max_calls, c.admission.max_calls_per_caller);
        assert_eq!(limits, (512, 128), "the shipped defaults");
    })
    .await;
    let addr = h.gateway.addr;
    // An authenticated identity that no principal maps opens 750 calls
    // (3 connections × 250 streams) and never sends a message: before
    // admission waited for the message, these took 512 places.
    let mut held = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let (mut send, task) = connect(addr).await;
        for _ in 0..250 {
            held.push(open_call(&mut send, addr, "spiffe://demo.local/sa/intruder").await);
        }
        connections.push((send, task));
    }
    // Let the server see every stream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    call_netops(addr, 21)
        .await
        .expect("netops is served beside them");
    // The identity's share of messages arriving (4 for an unmapped one) is
    // taken by its first streams; when the receive timeout ends, each gets
    // DEADLINE_EXCEEDED. The others were refused at once.
    let (response, _stream) = held.remove(0);
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered within the receive timeout")
        .unwrap();
    assert_eq!(
        response.headers()["grpc-status"],
        (Code::DeadlineExceeded as i32).to_string().as_str()
    );
    let (refused, _stream) = held.pop().unwrap();
    assert_eq!(
        refused.await.unwrap().headers()["grpc-status"],
        (Code::ResourceExhausted as i32).to_string().as_str()
    );
    assert_eq!(h.sim.calls(), 1);
}

#[tokio::test]
async fn one_caller_cannot_take_every_place() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.admission.max_calls = 4;
        c.admission.max_calls_per_caller = 2;
    })
    .await;
    let addr = h.gateway.addr;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = pb::instance_network_service_client::InstanceNetworkServiceClient::new(channel);
    let call = |identity: &'static str, mbps: i32| {
        let mut client = client.clone();
        async move {
            let mut request = tonic::Request::new(out(mbps));
            support::with_identity(&mut request, identity);
            client.modify_instance_network_spec(request).await
        }
    };
    h.sim.inject(Fault::Latency(Duration::from_secs(2)));
    h.sim.inject(Fault::Latency(Duration::from_secs(2)));
    let slow = [
        tokio::spawn(call(support::WEBAPP, 6)),
        tokio::spawn(call(support::WEBAPP, 7)),
    ];
    while h.sim.calls() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = call(support::WEBAPP, 8).await.unwrap_err();
    assert_eq!(
        (status.code(), support::reason(&status).as_str()),
        (Code::ResourceExhausted, "GatewayCallerOverloaded"),
        "{status:?}"
    );
    call(support::NETOPS, 22)
        .await
        .expect("another caller still has places");
    for task in slow {
        task.await.unwrap().unwrap();
    }
    call(support::WEBAPP, 9)
        .await
        .expect("the caller's places came back");
}

const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const HEALTH_WATCH: &str = "/grpc.health.v1.Health/Watch";

/// Opens a stream to `path` with no identity, and sends its headers only.
async fn open_stream(
    send: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    *send = send.clone().ready().await.unwrap();
    send.send_request(request, false).unwrap()
}

/// A gRPC frame header announcing `len` bytes, then `sent` of them.
fn partial_message(len: u32, sent: usize) -> Bytes {
    let mut frame = vec![0];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.resize(5 + sent, 7);
    Bytes::from(frame)
}

/// The gRPC status a stream ended with: the trailers', or the headers' of a
/// trailers-only answer.
async fn status_of(response: h2::client::ResponseFuture) -> String {
    let response = response.await.unwrap();
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

/// Issue 20, item 1: a stranger's health and reflection streams were bounded
/// only by the connection's 256 streams and tonic's 4 MiB decoding limit,
/// and lived as long as the stranger liked. Now a larger message is refused
/// before it is buffered, and streams are bounded per connection.
#[tokio::test]
async fn a_strangers_health_and_reflection_streams_are_bounded() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.server.reflection = true;
        assert_eq!(
            (
                c.admission.unauthenticated.max_streams_per_connection,
                c.admission.unauthenticated.idle_timeout
            ),
            (8, Duration::from_secs(10)),
            "the shipped defaults"
        );
    })
    .await;
    let addr = h.gateway.addr;

    // A reflection stream announcing 4 MiB and sending 4 KiB of it is ended
    // at once (it waited for the rest before), long before the idle timeout.
    let (mut send, _c1) = connect(addr).await;
    let (response, mut stream) = open_stream(&mut send, addr, REFLECTION).await;
    stream
        .send_data(partial_message(4 << 20, 4096), false)
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), status_of(response))
        .await
        .expect("a 4 MiB message is refused, not buffered");

    // Eight streams with headers only are open on one connection; the ninth
    // is refused at once.
    let (mut send, _c2) = connect(addr).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(open_stream(&mut send, addr, REFLECTION).await);
    }
    let (ninth, _stream) = open_stream(&mut send, addr, REFLECTION).await;
    let status = tokio::time::timeout(Duration::from_secs(3), status_of(ninth))
        .await
        .expect("refused at once");
    assert_eq!(status, (Code::ResourceExhausted as i32).to_string());

    // Health still answers on another connection.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(support::channel(addr).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers beside them");
    drop(held);
}

/// Issue 20, item 1: a reflection stream that sends nothing, and a health
/// Watch, used to live for as long as their peer liked (reflection outlived
/// `request_timeout`). Now an idle open stream ends after the idle timeout,
/// and every stream at the server's deadline, with DEADLINE_EXCEEDED.
#[tokio::test]
async fn idle_and_long_health_and_reflection_streams_end() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.server.reflection = true;
        c.admission.unauthenticated.idle_timeout = Duration::from_millis(300);
        c.server.request_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = h.gateway.addr;
    let (mut send, _connection) = connect(addr).await;
    let deadline_exceeded = (Code::DeadlineExceeded as i32).to_string();

    let started = std::time::Instant::now();
    let (idle, mut idle_stream) = open_stream(&mut send, addr, REFLECTION).await;
    let status = tokio::time::timeout(Duration::from_secs(5), status_of(idle))
        .await
        .expect("an idle reflection stream ends");
    assert_eq!(status, deadline_exceeded);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    // Its request side is let go too: the server resets the stream, and
    // the reflection task holds nothing (it held the stream before).
    tokio::time::timeout(
        Duration::from_secs(3),
        std::future::poll_fn(|cx| idle_stream.poll_reset(cx)),
    )
    .await
    .expect("the server lets the request side go")
    .unwrap();

    // A Watch sends its one message and closes its side: only the deadline
    // ends it, after its first answer (SERVING).
    let (watch, mut stream) = open_stream(&mut send, addr, HEALTH_WATCH).await;
    stream.send_data(partial_message(0, 0), true).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(6), status_of(watch))
        .await
        .expect("a Watch ends at the deadline");
    assert_eq!(status, deadline_exceeded);
}

/// Issue 20, item 2: the caller's share was taken only once a message had
/// arrived, so an identity could have any number of messages arriving, each
/// holding up to 64 KiB. Now receiving is counted per caller before the
/// first byte: an unmapped identity gets
/// `server.max_concurrent_calls_per_unmapped_caller` (4) streams receiving,
/// a mapped one `max_concurrent_calls_per_caller`; the rest are refused at
/// once, and other callers are served.
#[tokio::test]
async fn one_identitys_unfinished_messages_are_bounded_by_its_share() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.admission.max_calls_per_caller = 6;
        c.admission.receive_timeout = Duration::from_secs(4);
        assert_eq!(c.admission.max_calls_per_unmapped_caller, 4);
    })
    .await;
    let addr = h.gateway.addr;

    let resource_exhausted = (Code::ResourceExhausted as i32).to_string();
    for (identity, opened, share) in [
        ("spiffe://demo.local/sa/intruder", 12, 4),
        (support::WEBAPP, 12, 6),
    ] {
        let (mut send, _connection) = connect(addr).await;
        let mut pending = Vec::new();
        for _ in 0..opened {
            let (response, mut stream) = open_call(&mut send, addr, identity).await;
            // 30 KiB of a 60 KiB message.
            stream
                .send_data(partial_message(60 * 1024, 30 * 1024), false)
                .unwrap();
            pending.push((response, stream));
        }
        let mut answers = tokio::task::JoinSet::new();
        let mut streams = Vec::new();
        for (response, stream) in pending {
            answers.spawn(tokio::time::timeout(
                Duration::from_millis(1500),
                status_of(response),
            ));
            streams.push(stream);
        }
        let (mut refused, mut waiting) = (0, 0);
        while let Some(answer) = answers.join_next().await {
            match answer.unwrap() {
                Ok(status) => {
                    assert_eq!(status, resource_exhausted, "{identity}");
                    refused += 1;
                }
                Err(_) => waiting += 1,
            }
        }
        assert_eq!((refused, waiting), (opened - share, share), "{identity}");
        // Netops is served beside them, by the same gateway.
        call_netops(addr, 23).await.expect("netops is served");
        drop(streams);
    }
}

/// The attacker's review of issue 20: a peer that opens no flow-control
/// window never has its response bodies polled, so a timer inside them never
/// fired and the streams kept their places for good; the kubelet's health
/// check was then refused. Now each stream's timer gives its places back at
/// the deadline whatever the peer does, and health Check is never refused
/// for want of a place in all.
#[tokio::test]
async fn a_peer_that_opens_no_window_cannot_keep_the_places() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.admission.unauthenticated.max_streams = 8;
        c.server.request_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = h.gateway.addr;

    // Eight Watch streams, on a connection whose window is zero.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut stuck, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let _connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut held = Vec::new();
    for _ in 0..8 {
        let (response, mut stream) = open_stream(&mut stuck, addr, HEALTH_WATCH).await;
        stream.send_data(partial_message(0, 0), true).unwrap();
        held.push((response, stream));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut send, _c) = connect(addr).await;
    let watch = |send: &mut h2::client::SendRequest<Bytes>| {
        let mut send = send.clone();
        async move {
            let (response, mut stream) = open_stream(&mut send, addr, HEALTH_WATCH).await;
            stream.send_data(partial_message(0, 0), true).unwrap();
            let response = response.await.unwrap();
            (response.headers().get("grpc-status").cloned(), stream)
        }
    };
    let (refused, _s) = watch(&mut send).await;
    assert_eq!(
        refused.unwrap().to_str().unwrap(),
        (Code::ResourceExhausted as i32).to_string(),
        "every place in all is taken"
    );
    // The kubelet's check still answers.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(support::channel(addr).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health Check is not refused for want of a place in all");
    // At the deadline the places come back, though the stuck peer's bodies
    // were never polled.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (accepted, _s) = watch(&mut send).await;
    assert_eq!(accepted, None, "a Watch is served again");
    drop(held);
}
