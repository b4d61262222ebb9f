//! Keyless credentials and accounts, over TCP against the simulator's STS,
//! metadata server, credentials URI and ECS: each source of the SDKs'
//! chain, refresh before expiry, STS failing before and after expiry (no
//! call is ever signed with an expired key: the simulator counts them),
//! AssumeRole per account with its ExternalId, an account not served, and
//! a Resource Directory folder's guardrail.

mod support;

use std::time::Duration;

use ecs_gateway::credentials::{self, metadata, oidc};
use ecs_gateway::pb;
use ecs_gateway::simulator::{self, OidcProvider, Role};

const ISSUER: &str = "https://oidc.demo.local/cluster";
const PROVIDER_ARN: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-demo";
const POD_ROLE_ARN: &str = "acs:ram::1234567890123456:role/ecs-gateway-pod";
const NODE_ROLE: &str = "ecs-gateway-node";

/// An OIDC issuer's key, minting service-account tokens as the kubelet
/// would.
struct Issuer {
    key: jsonwebtoken::EncodingKey,
    public_pem: String,
}

impl Issuer {
    fn new() -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        Self {
            key: jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            public_pem: pair.public_key_pem(),
        }
    }

    /// A token for `sts.aliyuncs.com` living `life` from now.
    fn token(&self, life: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "aud": "sts.aliyuncs.com",
            "sub": "system:serviceaccount:platform:ecs-gateway",
            "iat": now,
            "exp": now + life,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &self.key,
        )
        .unwrap()
    }

    fn provider(&self) -> OidcProvider {
        OidcProvider {
            arn: PROVIDER_ARN.into(),
            issuer: ISSUER.into(),
            client_ids: vec!["sts.aliyuncs.com".into()],
            public_key_pem: self.public_pem.clone(),
        }
    }
}

/// The demo world with an RRSA role, a node role for the metadata server
/// and a credentials URI, its keys living `lifetime`.
fn world(issuer: &Issuer, lifetime: Option<Duration>) -> simulator::Config {
    let mut world = simulator::Config::demo();
    world.oidc_providers.push(issuer.provider());
    let mut pod = Role::new(POD_ROLE_ARN);
    pod.oidc_provider_arn = Some(PROVIDER_ARN.into());
    world.roles.push(pod);
    let node = Role::new(&format!("acs:ram::1234567890123456:role/{NODE_ROLE}"));
    world.roles.push(node);
    world.metadata.role = Some(NODE_ROLE.into());
    world.credentials_uri_role = Some(POD_ROLE_ARN.into());
    world.issued_lifetime = lifetime;
    world
}

fn raise(instance: &str, out: i32) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(out),
        ..support::request(instance)
    }
}

/// A gateway signing with `source`, STS at the simulator.
async fn gateway(
    sim_url: &str,
    source: credentials::Config,
    tune: impl FnOnce(&mut ecs_gateway::config::Config),
) -> support::Gateway {
    let mut config = support::config(sim_url);
    config.credentials = Some(source);
    config.sts.endpoint = sim_url.to_owned();
    tune(&mut config);
    support::spawn(config).await
}

fn rrsa(token_file: &std::path::Path) -> credentials::Config {
    credentials::Config::Oidc(oidc::Config {
        role_arn: POD_ROLE_ARN.into(),
        provider_arn: PROVIDER_ARN.into(),
        token_file: token_file.to_owned(),
    })
}

fn retry_info(status: &tonic::Status) -> Option<Duration> {
    use tonic_types::StatusExt;
    status.get_error_details().retry_info()?.retry_delay
}

#[tokio::test]
async fn rrsa_exchanges_the_token_and_rereads_it_when_the_kubelet_rotates_it() {
    let issuer = Issuer::new();
    let (sim, sim_url, _stop) =
        support::simulator(world(&issuer, Some(Duration::from_secs(3)))).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    // The first token expires before the second refresh.
    std::fs::write(&token_file, issuer.token(2)).unwrap();
    let gw = gateway(&sim_url, rrsa(&token_file), |_| {}).await;
    gw.call(raise("i-demo-postpaid", 6)).await.unwrap();
    assert_eq!(sim.sts_calls(), 1);

    // The kubelet rotates the token; the old one expires.
    std::fs::write(&token_file, issuer.token(600)).unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    gw.call(raise("i-demo-postpaid", 7)).await.unwrap();
    assert!(sim.sts_calls() >= 2, "refreshed with the rotated token");
    assert_eq!(sim.expired_key_calls(), 0);
    assert_eq!(sim.instance("i-demo-postpaid").unwrap().bandwidth_out, 7);
}

#[tokio::test]
async fn refreshes_before_expiry_without_any_call_waiting() {
    let issuer = Issuer::new();
    let (sim, sim_url, _stop) =
        support::simulator(world(&issuer, Some(Duration::from_secs(2)))).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, issuer.token(600)).unwrap();
    let gw = gateway(&sim_url, rrsa(&token_file), |_| {}).await;
    // Stale after half of 2 s: refreshed in the background.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(sim.sts_calls() >= 2, "{} STS calls", sim.sts_calls());
    for out in [6, 7, 8] {
        gw.call(raise("i-demo-postpaid", out)).await.unwrap();
    }
    assert_eq!(sim.expired_key_calls(), 0);
}

#[tokio::test]
async fn sts_down_keeps_valid_credentials_and_never_signs_with_expired_ones() {
    let issuer = Issuer::new();
    // STS writes Expiration to the second: a 6 s key lives 5 to 6 s.
    let (sim, sim_url, _stop) =
        support::simulator(world(&issuer, Some(Duration::from_secs(6)))).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, issuer.token(600)).unwrap();
    let gw = gateway(&sim_url, rrsa(&token_file), |_| {}).await;
    gw.call(raise("i-demo-postpaid", 6)).await.unwrap();

    sim.set_sts_down(true);
    // Stale (past half its life), still usable: the call goes through.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    gw.call(raise("i-demo-postpaid", 7)).await.unwrap();
    let sent = sim.calls();

    // In its last fifth: nothing is signed, the caller is told to retry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let refused = gw.call(raise("i-demo-postpaid", 8)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(retry_info(&refused).is_some(), "{refused:?}");
    assert!(
        support::reason(&refused).contains("GatewayCredentialsUnavailable"),
        "{refused:?}"
    );
    assert_eq!(sim.calls(), sent, "nothing was sent");
    assert_eq!(sim.expired_key_calls(), 0);
    let metrics = reqwest_text(gw.admin_addr, "/metrics").await;
    assert!(
        metrics
            .contains("ecs_gateway_credential_refreshes_total{source=\"rrsa\",result=\"failure\"}"),
        "{metrics}"
    );

    // STS is back: a caller that retries as RetryInfo says gets through
    // (a refresh that just failed is not repeated for every caller within
    // that second).
    sim.set_sts_down(false);
    let mut answer = gw.call(raise("i-demo-postpaid", 9)).await;
    for _ in 0..3 {
        let Err(refused) = &answer else { break };
        tokio::time::sleep(retry_info(refused).unwrap()).await;
        answer = gw.call(raise("i-demo-postpaid", 9)).await;
    }
    answer.unwrap();
    assert_eq!(sim.expired_key_calls(), 0);
}

#[tokio::test]
async fn not_ready_until_a_source_answers() {
    let issuer = Issuer::new();
    let (sim, sim_url, _stop) = support::simulator(world(&issuer, None)).await;
    sim.set_sts_down(true);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, issuer.token(600)).unwrap();
    let gw = gateway(&sim_url, rrsa(&token_file), |_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of(gw.admin_addr, "/readyz").await, 503);
    sim.set_sts_down(false);
    let mut ready = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if status_of(gw.admin_addr, "/readyz").await == 200 {
            ready = true;
            break;
        }
    }
    assert!(ready, "ready once STS answers (retried with backoff)");
    gw.call(raise("i-demo-postpaid", 6)).await.unwrap();
}

#[tokio::test]
async fn the_instance_ram_role_is_read_in_hardened_mode() {
    let issuer = Issuer::new();
    let (sim, sim_url, _stop) = support::simulator(world(&issuer, None)).await;
    sim.set_imdsv1_allowed(false);
    let source = credentials::Config::EcsRamRole(metadata::Config {
        endpoint: sim_url.clone(),
        role: None,
        imdsv1_disabled: true,
    });
    let gw = gateway(&sim_url, source, |_| {}).await;
    gw.call(raise("i-demo-postpaid", 6)).await.unwrap();
    assert!(sim.metadata_token_calls() >= 1);
    assert!(
        sim.metadata_calls() >= 2,
        "the role's name, then its credentials"
    );
    assert_eq!(sim.expired_key_calls(), 0);
}

#[tokio::test]
async fn the_credentials_uri_is_read() {
    let issuer = Issuer::new();
    let (_sim, sim_url, _stop) = support::simulator(world(&issuer, None)).await;
    let source = credentials::Config::Uri(credentials::uri::Config {
        uri: format!("{sim_url}/credentials-uri"),
    });
    let gw = gateway(&sim_url, source, |_| {}).await;
    gw.call(raise("i-demo-postpaid", 6)).await.unwrap();
}

fn second_account(external_id: &str) -> credentials::Account {
    credentials::Account {
        id: simulator::SECOND_ACCOUNT_ID.into(),
        role_arn: simulator::SECOND_ACCOUNT_ROLE_ARN.into(),
        external_id: Some(external_id.into()),
    }
}

fn in_second_account(instance: &str, out: i32) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        account_id: simulator::SECOND_ACCOUNT_ID.into(),
        ..raise(instance, out)
    }
}

#[tokio::test]
async fn another_account_is_reached_through_its_role_with_the_external_id() {
    let logs = support::capture_json_logs();
    let (sim, sim_url, _stop) = support::simulator(simulator::Config::demo()).await;
    let gw = gateway(
        &sim_url,
        credentials::Config::Static(support::demo_credentials()),
        |c| c.accounts = vec![second_account(simulator::DEMO_EXTERNAL_ID)],
    )
    .await;
    gw.call(in_second_account("i-prod-web", 20)).await.unwrap();
    assert_eq!(sim.calls_by_account(simulator::SECOND_ACCOUNT_ID), 1);
    assert_eq!(sim.instance("i-prod-web").unwrap().bandwidth_out, 20);
    // The default account is still signed with the gateway's own key.
    gw.call(raise("i-demo-postpaid", 6)).await.unwrap();
    assert_eq!(sim.calls_by_account(simulator::DEMO_ACCOUNT_ID), 1);
    // The decision log names the account and the role that signed.
    let lines: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["target"] == "decision")
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["account"], simulator::SECOND_ACCOUNT_ID);
    assert_eq!(lines[0]["signed_as"], simulator::SECOND_ACCOUNT_ROLE_ARN);
    assert_eq!(lines[1]["account"], simulator::DEMO_ACCOUNT_ID);
    assert_eq!(lines[1]["signed_as"], "");
}

#[tokio::test]
async fn a_wrong_external_id_is_refused_by_sts_and_nothing_is_sent() {
    let logs = support::capture_json_logs();
    let (sim, sim_url, _stop) = support::simulator(simulator::Config::demo()).await;
    let gw = gateway(
        &sim_url,
        credentials::Config::Static(support::demo_credentials()),
        |c| c.accounts = vec![second_account("not-the-external-id")],
    )
    .await;
    let refused = gw
        .call(in_second_account("i-prod-web", 20))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(sim.calls(), 0);
    let text = logs.text();
    assert!(
        text.contains("NoPermission") && text.contains("assume_role"),
        "{text}"
    );
}

#[tokio::test]
async fn an_account_not_served_or_malformed_is_refused_before_anything_is_sent() {
    let (sim, sim_url, _stop) = support::simulator(simulator::Config::demo()).await;
    let gw = gateway(
        &sim_url,
        credentials::Config::Static(support::demo_credentials()),
        |c| c.accounts = vec![second_account(simulator::DEMO_EXTERNAL_ID)],
    )
    .await;
    // The served accounts' credentials are fetched at start, not per call.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sts_calls = sim.sts_calls();
    for (account, code) in [
        ("3334567890123456", "InvalidAccountId.NotServed"),
        ("12ab", "InvalidAccountId.Malformed"),
    ] {
        let request = pb::ModifyInstanceNetworkSpecRequest {
            account_id: account.into(),
            ..raise("i-prod-web", 20)
        };
        let refused = gw.call(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert_eq!(support::violated_fields(&refused), ["account_id"]);
        assert!(format!("{refused:?}").contains(code), "{refused:?}");
    }
    assert_eq!((sim.calls(), sim.sts_calls()), (0, sts_calls));
}

#[tokio::test]
async fn a_folder_guardrail_governs_every_account_in_the_folder() {
    let (sim, sim_url, _stop) = support::simulator(simulator::Config::demo()).await;
    let gw = gateway(
        &sim_url,
        credentials::Config::Static(support::demo_credentials()),
        |c| c.accounts = vec![second_account(simulator::DEMO_EXTERNAL_ID)],
    )
    .await;
    let denied = gw
        .call_as(support::WEBAPP, in_second_account("i-prod-web", 8))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        format!("{denied:?}").contains("control.production-folder-network-admins-only"),
        "{denied:?}"
    );
    // The same caller, in the default account (folder "workloads").
    gw.call_as(support::WEBAPP, raise("i-demo-postpaid", 8))
        .await
        .unwrap();
    assert_eq!(sim.calls_by_account(simulator::SECOND_ACCOUNT_ID), 0);
}

#[tokio::test]
async fn no_source_secret_reaches_a_log_or_an_error() {
    let logs = support::capture_json_logs();
    let issuer = Issuer::new();
    let (sim, sim_url, _stop) =
        support::simulator(world(&issuer, Some(Duration::from_secs(2)))).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let token = issuer.token(600);
    std::fs::write(&token_file, &token).unwrap();
    let gw = gateway(&sim_url, rrsa(&token_file), |c| {
        c.accounts = vec![second_account(simulator::DEMO_EXTERNAL_ID)];
    })
    .await;
    gw.call(raise("i-demo-postpaid", 6)).await.unwrap();
    gw.call(in_second_account("i-prod-web", 20)).await.unwrap();
    // Failures too: STS down until the keys expire.
    sim.set_sts_down(true);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let refused = gw.call(raise("i-demo-postpaid", 7)).await.unwrap_err();
    let metadata = gateway(
        &sim_url,
        credentials::Config::EcsRamRole(metadata::Config {
            endpoint: sim_url.clone(),
            role: None,
            imdsv1_disabled: false,
        }),
        |_| {},
    )
    .await;
    metadata.call(raise("i-demo-postpaid", 6)).await.unwrap();
    let seen = format!("{}\n{refused:?}", logs.text());
    assert!(!seen.contains(&token), "the OIDC token leaked");
    for issued in sim.issued_secrets() {
        assert!(!seen.contains(&issued), "an issued secret or token leaked");
    }
    assert!(seen.contains("rrsa"), "the failing source is named: {seen}");
}

async fn status_of(addr: std::net::SocketAddr, path: &str) -> u16 {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn reqwest_text(addr: std::net::SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Naming the default account is the same call as naming none: one ECS
/// ClientToken, so a retry spelled either way applies the change once.
#[tokio::test]
async fn the_default_account_named_or_not_is_one_call() {
    let (sim, sim_url, _stop) = support::simulator(simulator::Config::demo()).await;
    let gw = gateway(
        &sim_url,
        credentials::Config::Static(support::demo_credentials()),
        |_| {},
    )
    .await;
    for account in ["", simulator::DEMO_ACCOUNT_ID] {
        let request = pb::ModifyInstanceNetworkSpecRequest {
            account_id: account.into(),
            client_token: "same-token".into(),
            ..raise("i-demo-postpaid", 9)
        };
        gw.call(request).await.unwrap();
    }
    assert_eq!(sim.applied(&support::ecs_token("same-token")), 1);
}

/// Explain refuses an account the gateway does not serve, as a call would
/// be refused.
#[tokio::test]
async fn explain_refuses_an_account_not_served() {
    use ecs_gateway::pb::authorization_service_client::AuthorizationServiceClient;
    let (_sim, sim_url, _stop) = support::simulator(simulator::Config::demo()).await;
    let gw = gateway(
        &sim_url,
        credentials::Config::Static(support::demo_credentials()),
        |_| {},
    )
    .await;
    let mut client = AuthorizationServiceClient::new(support::channel(gw.addr).await);
    let mut request = tonic::Request::new(pb::ExplainRequest {
        request: Some(pb::ModifyInstanceNetworkSpecRequest {
            account_id: "3334567890123456".into(),
            ..raise("i-demo-postpaid", 9)
        }),
        ..Default::default()
    });
    support::with_identity(&mut request, support::NETOPS);
    let refused = client.explain(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(support::violated_fields(&refused), ["account_id"]);
}

/// With `credentials.session_name_from_caller`, each caller's calls to
/// another account are signed in a session of that account's role named
/// after the caller (what ActionTrail shows), and the same caller keeps its
/// session.
#[tokio::test]
async fn sessions_are_named_after_callers_when_asked() {
    const ONCALL: &str = "spiffe://demo.local/ns/ops/sa/oncall";
    let (sim, sim_url, _stop) = support::simulator(simulator::Config::demo()).await;
    // A second network admin.
    let policies = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), policies.path());
    let principals = policies.path().join("principals.toml");
    let mut text = std::fs::read_to_string(&principals).unwrap();
    text.push_str(&format!(
        "\n[[principal]]\nspiffe_id = \"{ONCALL}\"\narn = \"acs:ram::1234567890123456:role/oncall\"\ngroups = [\"NetworkAdmins\"]\n"
    ));
    std::fs::write(&principals, text).unwrap();
    let gw = gateway(
        &sim_url,
        credentials::Config::Static(support::demo_credentials()),
        |c| {
            c.accounts = vec![second_account(simulator::DEMO_EXTERNAL_ID)];
            c.sts.sessions_per_caller = true;
            c.policy.dir = policies.path().to_owned();
        },
    )
    .await;
    for out in [20, 21] {
        gw.call(in_second_account("i-prod-web", out)).await.unwrap();
    }
    gw.call_as(ONCALL, in_second_account("i-prod-web", 22))
        .await
        .unwrap();
    let sessions = sim.role_sessions();
    let role = simulator::SECOND_ACCOUNT_ROLE_ARN;
    let named = |who: &str| format!("{role}/{}", credentials::sts::session_name_for(who));
    assert_eq!(
        sessions
            .iter()
            .filter(|s| **s == named(support::NETOPS))
            .count(),
        1,
        "one session for netops' two calls: {sessions:?}"
    );
    assert!(sessions.contains(&named(ONCALL)), "{sessions:?}");
    assert!(
        sessions.contains(&format!("{role}/ecs-gateway")),
        "the gateway's own session, fetched at start: {sessions:?}"
    );
}
