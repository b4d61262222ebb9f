//! Traces over OTLP/HTTP with protobuf bodies (`OTEL_EXPORTER_OTLP_PROTOCOL=
//! http/protobuf`), received by a real HTTP endpoint decoding the
//! collector's protobuf request. Its own test binary: the subscriber is
//! global.

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use ecs_gateway::telemetry;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_http_protobuf() {
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(ExportTraceServiceRequest::decode(body).unwrap());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The generic endpoint gets the signal's path, as the specification says.
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "gw-http"),
    ];
    let config = telemetry::config(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    let telemetry =
        Arc::new(telemetry::init_with_writer(&config, support::captured_logs()).unwrap());

    let h = support::start().await;
    let mut request = support::request("i-demo-postpaid");
    request.internet_max_bandwidth_out = Some(17);
    h.call(request).await.unwrap();
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.shutdown())
        .await
        .unwrap();

    let names: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.resource_spans.iter())
        .flat_map(|r| r.scope_spans.iter())
        .flat_map(|s| s.spans.iter().map(|s| s.name.clone()))
        .collect();
    for expected in [
        "ecsgateway.v1.InstanceNetworkService/ModifyInstanceNetworkSpec",
        "validate",
        "authorize",
        "POST",
        "sign",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}
