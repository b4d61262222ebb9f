//! Admission, as a caller who wants to starve others sees it: streams that
//! never send their message hold nothing, one identity cannot take every
//! place, and a caller that goes away is counted CANCELLED. A raw HTTP/2
//! client (the `h2` crate) sends what no well-behaved gRPC client would.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ecs_gateway::pb;
use ecs_gateway::simulator::Fault;
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
    let parts = support::parts(&h.sim_url, support::demo_credentials(), |_| {});
    let (addr, admin, _stop) = support::spawn_gateway_with_admin(parts).await;
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
    let h = support::start().await;
    let mut parts = support::parts(&h.sim_url, support::demo_credentials(), |_| {});
    parts.settings.receive_timeout = Duration::from_secs(2);
    let limits = (
        parts.settings.max_concurrent_calls,
        parts.settings.max_concurrent_calls_per_caller,
    );
    assert_eq!(limits, (512, 128), "the shipped defaults");
    let (addr, _stop) = support::spawn_gateway(parts).await;
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
    h.call(out(21)).await.expect("netops is served beside them");
    // When the receive timeout ends, each gets DEADLINE_EXCEEDED.
    let (response, _stream) = held.pop().unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered within the receive timeout")
        .unwrap();
    assert_eq!(
        response.headers()["grpc-status"],
        (Code::DeadlineExceeded as i32).to_string().as_str()
    );
    assert_eq!(h.sim.calls(), 1);
}

#[tokio::test]
async fn one_caller_cannot_take_every_place() {
    let h = support::start().await;
    let mut parts = support::parts(&h.sim_url, support::demo_credentials(), |_| {});
    parts.settings.max_concurrent_calls = 4;
    parts.settings.max_concurrent_calls_per_caller = 2;
    let (addr, _stop) = support::spawn_gateway(parts).await;
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
