//! Secrets never reach a log line, a span, an error a caller sees, or a
//! `Debug` output: the AccessKey secret, the STS token and the request
//! signature are searched for in everything the gateway printed at TRACE
//! level while it served successful and failing calls.

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use ecs_gateway::credentials::{Credentials, Secret};
use ecs_gateway::simulator::{self, AccessKey};

const SECRET: &str = "s3cr3t-AccessKey-Value";
const TOKEN: &str = "CAIS-sts-token-Value";

fn credentials() -> Credentials {
    Credentials {
        access_key_id: "STS.NTest".into(),
        access_key_secret: Secret::new(SECRET),
        security_token: Some(Secret::new(TOKEN)),
    }
}

/// An endpoint that records the signed body and answers as ECS does for a
/// bad signature: quoting its string to sign, which holds the STS token.
async fn echoing_endpoint(bodies: Arc<Mutex<Vec<String>>>) -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: Bytes| {
            let bodies = bodies.clone();
            async move {
                let text = String::from_utf8_lossy(&body).into_owned();
                bodies.lock().unwrap().push(text.clone());
                let message = format!("Specified signature is not matched with our calculation. server string to sign is:POST&%2F&{text}");
                let body = serde_json::json!({
                    "RequestId": "5A6B7C8D-0000-0000-0000-000000000000",
                    "HostId": "ecs.cn-hangzhou.aliyuncs.com",
                    "Code": "SignatureDoesNotMatch",
                    "Message": message,
                    "Recommend": "https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch",
                });
                (axum::http::StatusCode::BAD_REQUEST, body.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn secrets_never_leave_the_signer() {
    let logs = support::Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_current_span(true)
        .with_span_list(true)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .init();

    let mut shown = Vec::new();

    // A successful call with STS credentials.
    let mut world = simulator::Config::demo();
    world.access_keys = vec![AccessKey {
        id: "STS.NTest".into(),
        secret: Secret::new(SECRET),
        security_token: Some(Secret::new(TOKEN)),
        account: simulator::DEMO_ACCOUNT_ID.into(),
        expires: None,
    }];
    let h = support::start_with(world, |c| {
        c.credentials = Some(ecs_gateway::credentials::Config::Static(credentials()));
    })
    .await;
    let mut request = support::request("i-demo-postpaid");
    request.internet_max_bandwidth_out = Some(10);
    let response = h.call(request.clone()).await.unwrap();
    shown.push(format!("{response:?}"));

    // ECS refusing the signature and quoting what it signed.
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let endpoint = echoing_endpoint(bodies.clone()).await;
    let mut config = support::config(&endpoint);
    config.credentials = Some(ecs_gateway::credentials::Config::Static(credentials()));
    let refused = support::spawn(config).await;
    let status = refused.call(request.clone()).await.unwrap_err();
    shown.push(format!("{status:?}"));
    shown.push(format!("{:?}", status.metadata()));
    shown.push(String::from_utf8_lossy(status.details()).into_owned());

    // Debug output of every part that holds them.
    let provider = ecs_gateway::credentials::Config::Static(credentials())
        .build()
        .unwrap();
    shown.push(format!(
        "{:?} {provider:?} {:?}",
        credentials(),
        ecs_gateway::credentials::Config::Static(credentials())
    ));
    let client = ecs_gateway::upstream::Config::default()
        .build(
            Arc::new(provider),
            Arc::new(ecs_gateway::telemetry::Metrics::default()),
            ecs_gateway::error::ECS_CODES,
        )
        .unwrap();
    shown.push(format!("{client:?}"));

    let body = bodies
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("the endpoint was called");
    let signature = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "Signature")
        .map(|(_, v)| v.into_owned())
        .expect("a signature was sent");
    assert!(
        body.contains("SecurityToken="),
        "the token was sent to ECS, where it belongs"
    );

    let logs = logs.text();
    assert!(
        logs.contains("SignatureDoesNotMatch"),
        "the refusal was logged: {logs}"
    );
    let encoded_signature = ecs_gateway::sign::percent_encode(&signature);
    for (what, text) in std::iter::once(("logs", &logs)).chain(shown.iter().map(|s| ("shown", s))) {
        for needle in [
            SECRET,
            TOKEN,
            signature.as_str(),
            encoded_signature.as_str(),
        ] {
            assert!(
                !text.contains(needle),
                "{what} contain a secret ({needle}): {text}"
            );
        }
    }
}
