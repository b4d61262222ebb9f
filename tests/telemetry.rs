//! Traces through a real OTLP/gRPC receiver (a tonic server implementing the
//! collector's TraceService): the span tree of a call, its attributes, the
//! parent taken from an incoming `traceparent`, the context injected into the
//! ECS request, failed stages marked as errors, and no secret in any span.
//! One test function: the subscriber is global to this test binary.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecs_gateway::pb;
use ecs_gateway::simulator::Fault;
use ecs_gateway::telemetry::{self, LogFormat, Otlp, Protocol, SamplerConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    fn spans(&self) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }

    fn resource(&self) -> HashMap<String, String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .filter_map(|r| r.resource.as_ref())
            .flat_map(|r| r.attributes.iter())
            .map(|kv| {
                (
                    kv.key.clone(),
                    text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect()
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == status::StatusCode::Error as i32)
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

async fn flush(telemetry: &Arc<telemetry::Telemetry>) {
    // force_flush blocks until the exporter answers; keep it off the
    // runtime's worker threads.
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.flush())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_the_span_tree_of_every_call() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let telemetry = Arc::new(
        telemetry::init_with_writer(
            &telemetry::Config {
                log_filter: "info".into(),
                log_format: LogFormat::Json,
                otlp: Some(Otlp {
                    endpoint: collector,
                    protocol: Protocol::Grpc,
                    service_name: "ecs-gateway-test".into(),
                    resource: vec![("deployment.environment".into(), "test".into())],
                    sampler: SamplerConfig::ParentAlwaysOn,
                    timeout: Duration::from_secs(5),
                }),
            },
            support::captured_logs(),
        )
        .unwrap(),
    );

    let h = support::start().await;
    // 1. An allowed call, child of the caller's trace.
    let mut call = tonic::Request::new(pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(11),
        ..support::request("i-demo-postpaid")
    });
    support::with_identity(&mut call, support::NETOPS);
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{PARENT}-01").parse().unwrap(),
    );
    call.metadata_mut()
        .insert("baggage", "user.email=ops%40example.com".parse().unwrap());
    let response = h
        .gateway
        .client
        .clone()
        .modify_instance_network_spec(call)
        .await
        .unwrap()
        .into_inner();
    // 2. A denied call, 3. an invalid one, 4. one ECS fails.
    let denied = pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(50),
        ..support::request("i-demo-postpaid")
    };
    assert!(h.call_as(support::WEBAPP, denied).await.is_err());
    let invalid = pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(999),
        ..support::request("i-demo-postpaid")
    };
    assert!(h.call(invalid).await.is_err());
    // Every attempt fails: the first and both retries.
    for _ in 0..3 {
        h.sim.inject(Fault::HttpStatus(502));
    }
    let failing = pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(12),
        ..support::request("i-demo-postpaid")
    };
    assert!(h.call(failing).await.is_err());
    flush(&telemetry).await;

    let spans = receiver.spans();
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let children = |parent: &Span, name: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id && s.name == name)
            .collect()
    };
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "ecsgateway.v1.InstanceNetworkService/ModifyInstanceNetworkSpec")
        .collect();
    assert_eq!(
        servers.len(),
        4,
        "one server span per call: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );

    // The allowed call: parent from traceparent, every stage, the client span.
    let server = servers
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE)
        .expect("the caller's trace id");
    assert_eq!(hex(&server.parent_span_id), PARENT);
    assert_eq!(server.kind, span::SpanKind::Server as i32);
    let a = attrs(server);
    assert_eq!(a["rpc.system"], "grpc");
    assert_eq!(a["rpc.service"], "ecsgateway.v1.InstanceNetworkService");
    assert_eq!(a["rpc.method"], "ModifyInstanceNetworkSpec");
    assert_eq!(a["rpc.grpc.status_code"], "0");
    assert_eq!(a["enduser.id"], support::NETOPS);
    assert_eq!(a["ecs.instance_id"], "i-demo-postpaid");
    for stage in ["identity", "validate", "authorize", "POST"] {
        assert_eq!(children(server, stage).len(), 1, "stage {stage}");
    }
    let authorize = attrs(children(server, "authorize")[0]);
    assert_eq!(authorize["authz.decision"], "Allow");
    assert_eq!(
        authorize["authz.principal"],
        "acs:ram::1234567890123456:role/netops"
    );
    assert_eq!(authorize["authz.actions"], "ecs:ModifyInstanceNetworkSpec");
    assert_eq!(
        authorize["authz.policies"],
        "control.baseline,identity.network-admins"
    );
    let client = children(server, "POST")[0];
    assert_eq!(client.kind, span::SpanKind::Client as i32);
    let c = attrs(client);
    assert_eq!(c["http.request.method"], "POST");
    assert_eq!(c["server.address"], "127.0.0.1");
    assert_eq!(c["http.response.status_code"], "200");
    assert_eq!(c["ecs.request_id"], response.request_id);
    assert_eq!(c["http.request.resend_count"], "0");
    assert_eq!(children(client, "sign").len(), 1);
    assert!(!is_error(server) && !is_error(client));

    // The ECS request carried the trace, with the client span as parent.
    let sent = h.sim.traceparents();
    let expected = format!("00-{TRACE}-{}-01", hex(&client.span_id));
    assert!(sent.contains(&expected), "{sent:?} lacks {expected}");
    // The caller's baggage stays with the caller.
    assert_eq!(h.sim.baggage(), Vec::<String>::new());

    // Failed stages are errors with their code.
    let failed = |stage: &str, code: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == stage && attrs(s).get("error.type").map(String::as_str) == Some(code)
            })
            .unwrap_or_else(|| panic!("no failed {stage} span with {code}"))
    };
    assert!(is_error(failed("authorize", "AccessDenied")));
    assert!(is_error(failed(
        "validate",
        "InvalidInternetMaxBandwidthOut.ValueNotSupported"
    )));
    // Each attempt is its own client span, signed anew.
    let attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.name == "POST"
                && attrs(s).get("error.type").map(String::as_str) == Some("UpstreamInvalidResponse")
        })
        .collect();
    assert_eq!(attempts.len(), 3, "the first attempt and two retries");
    let mut resends: Vec<String> = attempts
        .iter()
        .map(|s| attrs(s)["http.request.resend_count"].clone())
        .collect();
    resends.sort();
    assert_eq!(resends, ["0", "1", "2"]);
    for attempt in &attempts {
        assert!(is_error(attempt));
        assert_eq!(attrs(attempt)["http.response.status_code"], "502");
        assert_eq!(children(attempt, "sign").len(), 1);
    }
    let bad_gateway = attempts[0];
    let denied_server = by_id[&hex(&failed("authorize", "AccessDenied").parent_span_id)];
    assert_eq!(attrs(denied_server)["rpc.grpc.status_code"], "7");
    assert!(
        !is_error(denied_server),
        "PERMISSION_DENIED is the caller's, not the server's, error"
    );
    let unavailable_server = by_id[&hex(&bad_gateway.parent_span_id)];
    assert_eq!(attrs(unavailable_server)["rpc.grpc.status_code"], "14");
    assert!(is_error(unavailable_server));

    // The resource, and no secret anywhere in what was exported.
    let resource = receiver.resource();
    assert_eq!(resource["service.name"], "ecs-gateway-test");
    assert_eq!(resource["deployment.environment"], "test");
    let exported = format!("{:?}", receiver.0.lock().unwrap());
    for secret in [
        support::DEMO_ACCESS_KEY_SECRET,
        "Signature=",
        "SignatureNonce",
    ] {
        assert!(!exported.contains(secret), "{secret} was exported");
    }
    telemetry.shutdown();
}
