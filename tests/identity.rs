//! Real mTLS (certificates made with rcgen, rustls on both ends) and real
//! JWT verification (RS256 and ES256 against a JWKS file and URL), through a
//! tonic client over TCP, the gateway and the simulator.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ecs_gateway::identity::{self, JwksSource, JwtConfig};
use ecs_gateway::pb::instance_network_service_client::InstanceNetworkServiceClient;
use ecs_gateway::{pb, simulator};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate for `localhost`, with a SPIFFE ID when given.
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, spiffe: Option<&str>) -> (String, String) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    if let Some(id) = spiffe {
        params
            .subject_alt_names
            .push(SanType::URI(id.try_into().unwrap()));
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Running {
    addr: std::net::SocketAddr,
    sim: simulator::Simulator,
    /// The simulator and the gateway live as long as this one.
    _harness: support::Harness,
    /// The gateway's TLS files.
    _tls: Option<ServerTls>,
}

async fn start(tls: Option<ServerTls>, identity: identity::Config) -> Running {
    start_with(tls, |c| c.identity = identity).await
}

async fn start_with(
    tls: Option<ServerTls>,
    tune: impl FnOnce(&mut ecs_gateway::config::Config),
) -> Running {
    let harness = support::start_with(simulator::Config::demo(), |c| {
        c.tls = tls.as_ref().map(|tls| tls.config.clone());
        tune(c);
    })
    .await;
    Running {
        addr: harness.gateway.addr,
        sim: harness.sim.clone(),
        _harness: harness,
        _tls: tls,
    }
}

fn bandwidth(out: i32) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(out),
        ..support::request("i-demo-postpaid")
    }
}

async fn tls_call(
    running: &Running,
    ca_pem: &str,
    client: Option<&(String, String)>,
) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{}", running.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    InstanceNetworkServiceClient::new(channel)
        .modify_instance_network_spec(bandwidth(12))
        .await
        .map(tonic::Response::into_inner)
}

/// The gateway's TLS settings and the directory holding their files.
struct ServerTls {
    config: ecs_gateway::config::TlsConfig,
    _dir: tempfile::TempDir,
}

fn server_tls(
    ca: &CertifiedIssuer<'static, KeyPair>,
    client_ca: &str,
    required: bool,
) -> ServerTls {
    let (cert, key) = leaf(ca, None);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    ServerTls {
        config: ecs_gateway::config::TlsConfig {
            cert: write("server.pem", &cert),
            key: write("server.key", &key),
            client_ca: Some(write("client-ca.pem", client_ca)),
            require_client_cert: required,
        },
        _dir: dir,
    }
}

#[tokio::test]
async fn mtls_accepts_a_client_certificate_from_the_trusted_ca() {
    ecs_gateway::install_crypto_provider();
    let ca = ca("clients and server");
    let running = start(
        Some(server_tls(&ca, &ca.pem(), true)),
        identity::Config::default(),
    )
    .await;
    let netops = leaf(&ca, Some(support::NETOPS));
    let response = tls_call(&running, &ca.pem(), Some(&netops)).await.unwrap();
    assert_eq!(response.request_id.len(), 36);
    assert_eq!(
        running
            .sim
            .instance("i-demo-postpaid")
            .unwrap()
            .bandwidth_out,
        12
    );
}

#[tokio::test]
async fn mtls_refuses_no_certificate_and_other_cas() {
    ecs_gateway::install_crypto_provider();
    let ca = ca("trusted");
    let other = ca_other();
    let running = start(
        Some(server_tls(&ca, &ca.pem(), true)),
        identity::Config::default(),
    )
    .await;
    assert!(
        tls_call(&running, &ca.pem(), None).await.is_err(),
        "no client certificate"
    );
    let stranger = leaf(&other, Some(support::NETOPS));
    assert!(
        tls_call(&running, &ca.pem(), Some(&stranger))
            .await
            .is_err(),
        "another CA"
    );
    assert_eq!(running.sim.calls(), 0);
}

fn ca_other() -> CertifiedIssuer<'static, KeyPair> {
    ca("untrusted")
}

#[tokio::test]
async fn mtls_needs_a_spiffe_id() {
    ecs_gateway::install_crypto_provider();
    let ca = ca("clients and server");
    let running = start(
        Some(server_tls(&ca, &ca.pem(), false)),
        identity::Config::default(),
    )
    .await;
    let no_spiffe = leaf(&ca, None);
    let status = tls_call(&running, &ca.pem(), Some(&no_spiffe))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        support::reason(&status),
        "Unauthenticated.InvalidClientCertificate"
    );
    assert!(
        status.message().contains("no SPIFFE ID"),
        "{}",
        status.message()
    );
    // Client certificates optional: nothing at all is MissingIdentity.
    let status = tls_call(&running, &ca.pem(), None).await.unwrap_err();
    assert_eq!(support::reason(&status), "Unauthenticated.MissingIdentity");
}

const ISSUER: &str = "https://idp.demo.local";
const AUDIENCE: &str = "ecs-gateway";

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    exp: i64,
    nbf: i64,
    amr: Vec<&'a str>,
}

fn claims(sub: &str) -> Claims<'_> {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: ISSUER,
        aud: AUDIENCE,
        sub,
        exp: now + 300,
        nbf: now - 10,
        amr: vec!["pwd", "mfa"],
    }
}

struct Keys {
    jwks: serde_json::Value,
    rsa: EncodingKey,
    ec: EncodingKey,
    ec_other: EncodingKey,
}

fn keys() -> Keys {
    let rsa_jwk: serde_json::Value =
        serde_json::from_str(include_str!("data/jwt-test-rs256.jwk.json")).unwrap();
    let ec = KeyPair::generate().unwrap();
    let point = ec.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let ec_jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "ec-test", "alg": "ES256", "use": "sig",
        "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..]),
    });
    Keys {
        jwks: serde_json::json!({ "keys": [rsa_jwk, ec_jwk] }),
        rsa: EncodingKey::from_rsa_pem(include_bytes!("data/jwt-test-rs256.pem")).unwrap(),
        ec: EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
        ec_other: EncodingKey::from_ec_pem(KeyPair::generate().unwrap().serialize_pem().as_bytes())
            .unwrap(),
    }
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Claims<'_>) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// The keys' JWKS in a file of its own directory (removed when dropped).
fn jwks_file(keys: &Keys) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, keys.jwks.to_string()).unwrap();
    (dir, jwks)
}

fn jwt_config(jwks: JwksSource) -> identity::Config {
    identity::Config {
        jwt: Some(JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks,
            leeway: Duration::ZERO,
            jwks_refresh: Duration::from_secs(300),
            jwks_max_age: Duration::from_secs(3600),
        }),
        trust_forwarded_client_cert: false,
        source_address_header: Default::default(),
    }
}

async fn bearer_call(
    running: &Running,
    token: &str,
) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(bandwidth(14));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    InstanceNetworkServiceClient::new(channel)
        .modify_instance_network_spec(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn jwt_accepts_valid_tokens_and_refuses_bad_ones() {
    let keys = keys();
    let (_dir, jwks) = jwks_file(&keys);
    let running = start(None, jwt_config(JwksSource::File(jwks))).await;

    let alice = claims("alice@demo.local");
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-test", &keys.rsa),
        (Algorithm::ES256, "ec-test", &keys.ec),
    ] {
        let ok = bearer_call(&running, &token(alg, kid, key, &alice)).await;
        assert!(ok.is_ok(), "{alg:?}: {ok:?}");
    }

    let now = chrono::Utc::now().timestamp();
    let expired = Claims {
        exp: now - 60,
        nbf: now - 600,
        ..claims("alice@demo.local")
    };
    let early = Claims {
        nbf: now + 600,
        ..claims("alice@demo.local")
    };
    let wrong_aud = Claims {
        aud: "someone-else",
        ..claims("alice@demo.local")
    };
    let wrong_iss = Claims {
        iss: "https://evil.example",
        ..claims("alice@demo.local")
    };
    let cases = [
        (
            token(Algorithm::ES256, "ec-test", &keys.ec, &expired),
            "expired",
        ),
        (
            token(Algorithm::ES256, "ec-test", &keys.ec, &early),
            "not valid yet",
        ),
        (
            token(Algorithm::ES256, "ec-test", &keys.ec, &wrong_aud),
            "wrong audience",
        ),
        (
            token(Algorithm::RS256, "rsa-test", &keys.rsa, &wrong_iss),
            "wrong issuer",
        ),
        (
            token(Algorithm::ES256, "ec-test", &keys.ec_other, &alice),
            "bad signature",
        ),
        (
            token(Algorithm::ES256, "unknown-kid", &keys.ec, &alice),
            "no key",
        ),
        (
            token(
                Algorithm::HS256,
                "ec-test",
                &EncodingKey::from_secret(b"guess"),
                &alice,
            ),
            "not accepted",
        ),
        ("not.a.jwt".to_owned(), "malformed"),
    ];
    for (token, expected) in cases {
        let status = bearer_call(&running, &token).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{expected}: {status:?}"
        );
        assert_eq!(support::reason(&status), "Unauthenticated.InvalidToken");
        assert!(
            status.message().contains(expected),
            "{expected}: {}",
            status.message()
        );
        assert!(
            !status.message().contains(&token),
            "the token is never echoed"
        );
    }
    // Only the two valid calls reached ECS.
    assert_eq!(running.sim.calls(), 2);
}

#[tokio::test]
async fn jwt_keys_come_from_a_jwks_url() {
    let keys = keys();
    let body = keys.jwks.to_string();
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let running = start(None, jwt_config(JwksSource::Url(url))).await;
    let ok = bearer_call(
        &running,
        &token(
            Algorithm::ES256,
            "ec-test",
            &keys.ec,
            &claims("alice@demo.local"),
        ),
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn forwarded_client_cert_is_ignored_unless_trusted() {
    let running = start(None, identity::Config::default()).await;
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(bandwidth(14));
    support::with_identity(&mut request, support::NETOPS);
    let status = InstanceNetworkServiceClient::new(channel)
        .modify_instance_network_spec(request)
        .await
        .unwrap_err();
    assert_eq!(support::reason(&status), "Unauthenticated.MissingIdentity");
}

#[tokio::test]
async fn behind_a_sidecar_the_source_ip_is_the_forwarded_one() {
    let h = support::start().await;
    let mut call = tonic::Request::new(bandwidth(16));
    support::with_identity(&mut call, support::NETOPS);
    call.metadata_mut()
        .insert("x-forwarded-for", "192.168.1.10".parse().unwrap());
    let status = h
        .gateway
        .client
        .clone()
        .modify_instance_network_spec(call)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("control.admins-from-management-network"),
        "{}",
        status.message()
    );

    let mut call = tonic::Request::new(bandwidth(16));
    support::with_identity(&mut call, support::NETOPS);
    call.metadata_mut()
        .insert("x-forwarded-for", "10.9.8.7".parse().unwrap());
    h.gateway
        .client
        .clone()
        .modify_instance_network_spec(call)
        .await
        .unwrap();
}

/// Calls with the given metadata (name, value) pairs, appended in order.
async fn call_with(
    h: &support::Harness,
    out: i32,
    metadata: &[(&'static str, &str)],
) -> Result<pb::ModifyInstanceNetworkSpecResponse, tonic::Status> {
    let mut call = tonic::Request::new(bandwidth(out));
    for (name, value) in metadata {
        call.metadata_mut().append(*name, value.parse().unwrap());
    }
    h.gateway
        .client
        .clone()
        .modify_instance_network_spec(call)
        .await
        .map(tonic::Response::into_inner)
}

/// What an append-style sidecar adds after the caller's own header.
const SIDECAR_ELEMENT: &str =
    ",By=spiffe://mesh.local/sa/gateway;Hash=0a1b;URI=spiffe://demo.local/sa/webapp";

#[tokio::test]
async fn a_forged_forwarded_client_cert_never_becomes_netops() {
    let h = support::start().await;
    // webapp may not set 50 Mbit/s; netops may. Each forgery was accepted as
    // netops before the header was parsed by its grammar.
    for forged in [
        r"URI=spiffe://demo.local/sa/netops;a=\",
        r#"Subject="CN=x\";URI=spiffe://demo.local/sa/netops;a=\""#,
        r#"URI=spiffe://demo.local/sa/netops;a="\"#,
    ] {
        let header = format!("{forged}{SIDECAR_ELEMENT}");
        let status = call_with(&h, 50, &[("x-forwarded-client-cert", &header)])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{header}: {status:?}");
        assert_eq!(
            support::reason(&status),
            "Unauthenticated.InvalidForwardedClientCert"
        );
    }
    // A well-formed forgery before the sidecar's element is just another
    // hop: the caller is the sidecar's client, webapp, and is denied 50.
    let header = format!("URI=spiffe://demo.local/sa/netops{SIDECAR_ELEMENT}");
    let status = call_with(&h, 50, &[("x-forwarded-client-cert", &header)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("role/webapp"),
        "{}",
        status.message()
    );
    assert_eq!(h.sim.calls(), 0);
}

#[tokio::test]
async fn several_forwarded_client_cert_fields_are_refused() {
    let h = support::start().await;
    let status = call_with(
        &h,
        50,
        &[
            (
                "x-forwarded-client-cert",
                "URI=spiffe://demo.local/sa/netops",
            ),
            (
                "x-forwarded-client-cert",
                "By=spiffe://mesh.local/sa/gateway;URI=spiffe://demo.local/sa/webapp",
            ),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(
        support::reason(&status),
        "Unauthenticated.InvalidForwardedClientCert"
    );
    assert!(
        status.message().contains("more than one"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_forwarded_for_entry_that_does_not_parse_denies() {
    let h = support::start().await;
    let netops = (
        "x-forwarded-client-cert",
        "URI=spiffe://demo.local/sa/netops",
    );
    // Each of these became the sidecar's loopback address, which the demo's
    // management-network guardrail trusts.
    for xff in ["8.8.8.8:443", "10.1.1.1, 8.8.8.8:443", "[2001:db8::1]:443"] {
        let status = call_with(&h, 16, &[netops, ("x-forwarded-for", xff)])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{xff}: {status:?}");
        assert!(
            status
                .message()
                .contains("control.admins-from-management-network"),
            "{xff}: {}",
            status.message()
        );
    }
    for xff in ["unknown", "10.1.1.1, unknown", "10.1.1.1,", "_hidden"] {
        let status = call_with(&h, 16, &[netops, ("x-forwarded-for", xff)])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{xff}: {status:?}");
        assert!(
            status.message().contains("ImplicitDeny"),
            "an unknown source denies: {xff}: {}",
            status.message()
        );
    }
    // The forms proxies write, with a port, still decide by the address.
    for xff in [
        "10.9.8.7:5000",
        "203.0.113.9, 10.9.8.7",
        "[::ffff:10.9.8.7]:5000",
    ] {
        call_with(&h, 16, &[netops, ("x-forwarded-for", xff)])
            .await
            .unwrap_or_else(|status| panic!("{xff}: {status:?}"));
    }
    assert_eq!(h.sim.calls(), 3);
}

#[tokio::test]
async fn a_jwt_subject_that_reads_like_a_spiffe_id_is_not_that_identity() {
    let keys = keys();
    let (_dir, jwks) = jwks_file(&keys);
    let running = start(None, jwt_config(JwksSource::File(jwks))).await;
    let status = bearer_call(
        &running,
        &token(
            Algorithm::ES256,
            "ec-test",
            &keys.ec,
            &claims(support::NETOPS),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("ImplicitDeny"),
        "{}",
        status.message()
    );
    assert_eq!(running.sim.calls(), 0);
}

/// Serves `routes` on loopback; returns the base URL.
async fn serve_http(routes: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes).await });
    url
}

#[tokio::test]
async fn jwks_fetching_follows_no_redirect_and_reads_a_bounded_body() {
    use axum::response::Redirect;
    let keys = keys();
    let body = keys.jwks.to_string();
    let mut padded = keys.jwks.clone();
    padded["padding"] = serde_json::Value::String("x".repeat(300 * 1024));
    let padded = padded.to_string();
    let base = serve_http(
        axum::Router::new()
            .route("/jwks", axum::routing::get(move || async move { body }))
            .route(
                "/moved",
                axum::routing::get(|| async { Redirect::temporary("/jwks") }),
            )
            .route("/big", axum::routing::get(move || async move { padded })),
    )
    .await;
    let alice = token(
        Algorithm::ES256,
        "ec-test",
        &keys.ec,
        &claims("alice@demo.local"),
    );
    for path in ["/moved", "/big"] {
        let running = start(None, jwt_config(JwksSource::Url(format!("{base}{path}")))).await;
        let status = bearer_call(&running, &alice).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
        assert!(
            status.message().contains("could not be fetched"),
            "{path}: {}",
            status.message()
        );
    }
    let running = start(None, jwt_config(JwksSource::Url(format!("{base}/jwks")))).await;
    bearer_call(&running, &alice).await.unwrap();
}

#[tokio::test]
async fn jwks_keys_stop_being_trusted_when_they_cannot_be_refreshed() {
    let keys = keys();
    let body = keys.jwks.to_string();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    // The identity provider answers once, then fails.
    let base = serve_http(axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let first = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            let body = body.clone();
            async move {
                if first {
                    (axum::http::StatusCode::OK, body)
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new())
                }
            }
        }),
    ))
    .await;
    let mut config = jwt_config(JwksSource::Url(format!("{base}/jwks")));
    if let Some(jwt) = config.jwt.as_mut() {
        jwt.jwks_refresh = Duration::ZERO;
        jwt.jwks_max_age = Duration::from_millis(300);
    }
    let running = start(None, config).await;
    let alice = token(
        Algorithm::ES256,
        "ec-test",
        &keys.ec,
        &claims("alice@demo.local"),
    );
    bearer_call(&running, &alice).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = bearer_call(&running, &alice).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("no longer trusted"),
        "{}",
        status.message()
    );
}

/// Time spent before the handler (here a slow JWKS fetch) counts against
/// the call's deadline: the gateway answers, with the client_token, before
/// the server's own request timeout cancels the call without one.
#[tokio::test]
async fn the_caller_gets_its_client_token_even_when_identity_was_slow() {
    let keys = keys();
    let body = keys.jwks.to_string();
    let base = serve_http(axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(800)).await;
                body
            }
        }),
    ))
    .await;
    let running = start_with(None, |c| {
        c.upstream.timeout = Duration::from_secs(1);
        c.upstream.attempt_timeout = Duration::from_secs(1);
        c.identity = jwt_config(JwksSource::Url(format!("{base}/jwks")));
        c.server.request_timeout = Duration::from_millis(1500);
    })
    .await;
    running
        .sim
        .inject(simulator::Fault::Latency(Duration::from_secs(5)));
    let status = bearer_call(
        &running,
        &token(
            Algorithm::ES256,
            "ec-test",
            &keys.ec,
            &claims("alice@demo.local"),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    use tonic_types::StatusExt as _;
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("the gateway's own answer, with details");
    assert_eq!(info.metadata["client_token"].len(), 36, "{info:?}");
}

/// Behind the sidecar a JWT caller's address is the one the sidecar
/// forwarded, never the sidecar's own loopback address.
#[tokio::test]
async fn behind_a_sidecar_a_jwt_callers_address_is_the_forwarded_one() {
    let keys = keys();
    let (_dir, jwks) = jwks_file(&keys);
    let mut config = jwt_config(JwksSource::File(jwks));
    config.trust_forwarded_client_cert = true;
    let running = start(None, config).await;
    let alice = token(
        Algorithm::ES256,
        "ec-test",
        &keys.ec,
        &claims("alice@demo.local"),
    );
    let call = |xff: Option<&'static str>| {
        let alice = alice.clone();
        let addr = running.addr;
        async move {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut request = tonic::Request::new(bandwidth(14));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {alice}").parse().unwrap());
            if let Some(xff) = xff {
                request
                    .metadata_mut()
                    .insert("x-forwarded-for", xff.parse().unwrap());
            }
            InstanceNetworkServiceClient::new(channel)
                .modify_instance_network_spec(request)
                .await
        }
    };
    // The TCP peer is loopback, which the guardrail trusts: it must not count.
    let status = call(None).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = call(Some("192.168.1.10")).await.unwrap_err();
    assert!(
        status
            .message()
            .contains("control.admins-from-management-network"),
        "{}",
        status.message()
    );
    call(Some("10.9.8.7")).await.unwrap();
    assert_eq!(running.sim.calls(), 1);
}

/// Issue 20, item 8: Istio's inbound sidecar passes a caller's own
/// `x-forwarded-for` through, so its last entry is the caller's choice and
/// the management-network guardrail could be passed by any mesh client.
/// With `identity.source_address_header` naming a header the sidecar
/// overwrites, only that header is read.
#[tokio::test]
async fn behind_istio_the_source_is_the_header_the_sidecar_overwrites() {
    let h = support::start_with(simulator::Config::demo(), |c| {
        c.identity.source_address_header =
            ecs_gateway::identity::forwarded::SourceHeader::Overwritten(
                "x-ecs-gateway-source-address".parse().unwrap(),
            );
    })
    .await;
    let addr = h.gateway.addr;
    let mut client = pb::instance_network_service_client::InstanceNetworkServiceClient::new(
        support::channel(addr).await,
    );
    let call = |headers: &[(&'static str, &str)]| {
        let mut call = tonic::Request::new(bandwidth(17));
        call.metadata_mut().append(
            "x-forwarded-client-cert",
            "URI=spiffe://demo.local/sa/netops".parse().unwrap(),
        );
        for (name, value) in headers {
            call.metadata_mut().append(*name, value.parse().unwrap());
        }
        call
    };
    // The caller writes a management-network address; the sidecar saw a
    // public one.
    let status = client
        .modify_instance_network_spec(call(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-ecs-gateway-source-address", "203.0.113.9"),
        ]))
        .await
        .unwrap_err();
    assert!(
        status
            .message()
            .contains("control.admins-from-management-network"),
        "{status:?}"
    );
    // Without the sidecar's header the source is unknown, whatever
    // x-forwarded-for says.
    let status = client
        .modify_instance_network_spec(call(&[("x-forwarded-for", "10.0.0.1")]))
        .await
        .unwrap_err();
    assert!(status.message().contains("ImplicitDeny"), "{status:?}");
    // The sidecar saw the management network: allowed.
    client
        .modify_instance_network_spec(call(&[("x-ecs-gateway-source-address", "10.0.0.1")]))
        .await
        .expect("netops from the management network");
}
