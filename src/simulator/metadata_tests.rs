//! The metadata server (hardened mode and IMDSv1) and the credentials URI
//! over real HTTP, and what ECS does with their keys.

use reqwest::StatusCode;
use serde_json::Value;

use super::sts_tests::{Key, ecs, parse_time};
use super::tests::{Running, code, start};
use super::*;

const CREDENTIALS: &str = "latest/meta-data/ram/security-credentials/";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";

/// The demo world with the second account's role attached to the instance.
fn world() -> Config {
    let mut config = Config::demo();
    config.metadata.role = Some("ecs-gateway".into());
    config
}

/// `PUT /latest/api/token` with `ttl` as the TTL header (none when `None`).
async fn put_token(sim: &Running, ttl: Option<&str>) -> (StatusCode, String) {
    let mut request = sim.http.put(format!("{}latest/api/token", sim.url));
    if let Some(ttl) = ttl {
        request = request.header("X-aliyun-ecs-metadata-token-ttl-seconds", ttl);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// `GET` of `path` under the server, with `token` when given.
async fn get(sim: &Running, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = sim.http.get(format!("{}{path}", sim.url));
    if let Some(token) = token {
        request = request.header(TOKEN_HEADER, token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

fn body(answer: &(StatusCode, String)) -> Value {
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    serde_json::from_str(&answer.1).unwrap()
}

#[tokio::test]
async fn hardened_mode_serves_the_attached_roles_key() {
    let sim = start(world()).await;
    let (status, token) = put_token(&sim, Some("21600")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(token.len() >= 32);
    let role = get(&sim, CREDENTIALS, Some(&token)).await;
    assert_eq!(role, (StatusCode::OK, "ecs-gateway".to_owned()));
    let path = format!("{CREDENTIALS}ecs-gateway");
    let first = body(&get(&sim, &path, Some(&token)).await);
    assert_eq!(first["Code"], "Success");
    for field in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "LastUpdated",
    ] {
        assert!(
            first[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    let lifetime = parse_time(&first["Expiration"]) - parse_time(&first["LastUpdated"]);
    assert_eq!(lifetime, chrono::TimeDelta::hours(6));
    // The same key until the last third of its lifetime.
    let again = body(&get(&sim, &path, Some(&token)).await);
    assert_eq!(again["AccessKeyId"], first["AccessKeyId"]);
    // It is the role's account's key.
    let key = Key::from(&first);
    let raise = [
        ("InstanceId", "i-prod-web"),
        ("InternetMaxBandwidthOut", "11"),
    ];
    assert_eq!(code(&ecs(&sim, &key, &raise).await), (200, "<success>"));
    assert_eq!(sim.sim.metadata_calls(), 3);
    assert_eq!(sim.sim.metadata_token_calls(), 1);
    assert_eq!(
        get(&sim, &format!("{CREDENTIALS}another-role"), Some(&token))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn tokens_are_checked_and_imdsv1_follows_the_world() {
    let sim = start(world()).await;
    let path = format!("{CREDENTIALS}ecs-gateway");
    // IMDSv1: no token, served while allowed.
    body(&get(&sim, &path, None).await);
    assert_eq!(get(&sim, CREDENTIALS, None).await.0, StatusCode::OK);
    sim.sim.set_imdsv1_allowed(false);
    assert_eq!(get(&sim, &path, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&sim, CREDENTIALS, None).await.0, StatusCode::FORBIDDEN);
    // A token the server never issued, whatever IMDSv1 allows.
    assert_eq!(
        get(&sim, &path, Some("guessed")).await.0,
        StatusCode::UNAUTHORIZED
    );
    sim.sim.set_imdsv1_allowed(true);
    assert_eq!(
        get(&sim, &path, Some("guessed")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The TTL header: required, 1 to 21,600 seconds.
    for ttl in [None, Some("0"), Some("21601"), Some("soon")] {
        assert_eq!(
            put_token(&sim, ttl).await.0,
            StatusCode::BAD_REQUEST,
            "{ttl:?}"
        );
    }
    // An expired token.
    let (_, short) = put_token(&sim, Some("1")).await;
    assert_eq!(get(&sim, &path, Some(&short)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&sim, &path, Some(&short)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sim.sim.metadata_token_calls(), 5);
    assert_eq!(sim.sim.metadata_calls(), 8);

    // No role attached.
    let bare = start(Config::demo()).await;
    assert_eq!(get(&bare, CREDENTIALS, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&bare, &path, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_new_key_comes_in_the_last_third_of_its_lifetime() {
    let mut config = world();
    config.issued_lifetime = Some(Duration::from_secs(3));
    let sim = start(config).await;
    let path = format!("{CREDENTIALS}ecs-gateway");
    let first = body(&get(&sim, &path, None).await);
    let lifetime = parse_time(&first["Expiration"]) - parse_time(&first["LastUpdated"]);
    assert!(lifetime <= chrono::TimeDelta::seconds(3), "{lifetime}");
    let again = body(&get(&sim, &path, None).await);
    assert_eq!(again["AccessKeyId"], first["AccessKeyId"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let renewed = body(&get(&sim, &path, None).await);
    assert_ne!(renewed["AccessKeyId"], first["AccessKeyId"]);
    // The old key still works until it expires.
    let raise = [
        ("InstanceId", "i-prod-batch"),
        ("InternetMaxBandwidthOut", "1"),
    ];
    assert_eq!(
        code(&ecs(&sim, &Key::from(&first), &raise).await),
        (200, "<success>")
    );
}

#[tokio::test]
async fn the_credentials_uri_serves_its_roles_key_or_fails() {
    let mut config = Config::demo();
    config.credentials_uri_role = Some(SECOND_ACCOUNT_ROLE_ARN.into());
    let sim = start(config).await;
    let answer = body(&get(&sim, "credentials-uri", None).await);
    assert_eq!(answer["Code"], "Success");
    let expires = parse_time(&answer["Expiration"]);
    assert!(expires - Utc::now() > chrono::TimeDelta::minutes(59));
    let key = Key::from(&answer);
    let raise = [
        ("InstanceId", "i-prod-web"),
        ("InternetMaxBandwidthOut", "13"),
    ];
    assert_eq!(code(&ecs(&sim, &key, &raise).await), (200, "<success>"));
    sim.sim.set_credentials_uri_failing(true);
    let failing = get(&sim, "credentials-uri", None).await;
    assert_eq!(failing.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        serde_json::from_str::<Value>(&failing.1).unwrap()["Code"],
        "Failure"
    );
    sim.sim.set_credentials_uri_failing(false);
    assert_eq!(
        body(&get(&sim, "credentials-uri", None).await)["AccessKeyId"],
        answer["AccessKeyId"]
    );

    let none = start(Config::demo()).await;
    assert_eq!(
        get(&none, "credentials-uri", None).await.0,
        StatusCode::NOT_FOUND
    );
}
