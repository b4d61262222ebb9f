//! `AssumeRoleWithOIDC` over real HTTP: anonymous, a token of a provider
//! the role trusts, and each refusal in STS's order.

use chrono::DateTime;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::sts_tests::{Key, ecs, parse_time};
use super::tests::{Running, code, start};
use super::*;

const ISSUER: &str = "https://oidc.example.com/cluster-1";
const PROVIDER: &str = "acs:ram::2234567890123456:oidc-provider/cluster-1";
const ROLE: &str = "acs:ram::2234567890123456:role/oidc-gateway";
const OTHER_PROVIDER: &str = "acs:ram::2234567890123456:oidc-provider/cluster-2";
const NARROW_ROLE: &str = "acs:ram::2234567890123456:role/oidc-narrow";
const SUBJECT: &str = "system:serviceaccount:ecs:gateway";

/// A P-256 key made by rcgen: the signing key and the public key's PEM.
fn rcgen_key() -> (EncodingKey, String) {
    let pair = rcgen::KeyPair::generate().unwrap();
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    (key, pair.public_key_pem())
}

/// A token signed by `key` with `alg`.
fn token(key: &EncodingKey, alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn claims(iss: &str, aud: Value, exp: DateTime<Utc>) -> Value {
    json!({"iss": iss, "sub": SUBJECT, "aud": aud, "exp": exp.timestamp(), "iat": Utc::now().timestamp()})
}

fn in_an_hour() -> DateTime<Utc> {
    Utc::now() + chrono::TimeDelta::hours(1)
}

/// The demo world with a provider (public key `pem`), a role trusting it,
/// a second provider, and a role trusting another subject only.
fn world(pem: &str) -> Config {
    let mut config = Config::demo();
    config.oidc_providers = vec![
        OidcProvider {
            arn: PROVIDER.into(),
            issuer: ISSUER.into(),
            client_ids: vec!["gateway-client".into(), DEFAULT_OIDC_CLIENT_ID.into()],
            public_key_pem: pem.into(),
        },
        OidcProvider {
            arn: OTHER_PROVIDER.into(),
            issuer: ISSUER.into(),
            client_ids: Vec::new(),
            public_key_pem: pem.into(),
        },
    ];
    let mut role = Role::new(ROLE);
    role.oidc_provider_arn = Some(PROVIDER.into());
    let mut narrow = Role::new(NARROW_ROLE);
    narrow.oidc_provider_arn = Some(PROVIDER.into());
    narrow.oidc_subjects = vec!["system:serviceaccount:other:app".into()];
    config.roles.extend([role, narrow]);
    config
}

/// An anonymous `AssumeRoleWithOIDC` with `params`.
async fn assume(sim: &Running, params: &[(&str, &str)]) -> (u16, Value) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "AssumeRoleWithOIDC")
        .append_pair("Version", "2015-04-01")
        .append_pair("Format", "JSON")
        .append_pair(
            "Timestamp",
            &Utc::now().format(crate::sign::TIMESTAMP_FORMAT).to_string(),
        );
    for (k, v) in params {
        form.append_pair(k, v);
    }
    let response = sim
        .http
        .post(&sim.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn answers_a_key_for_a_trusted_providers_token() {
    let (key, pem) = rcgen_key();
    let sim = start(world(&pem)).await;
    let jwt = token(
        &key,
        Algorithm::ES256,
        &claims(
            ISSUER,
            json!(["another-app", "gateway-client"]),
            in_an_hour(),
        ),
    );
    let answer = assume(
        &sim,
        &[
            ("RoleArn", ROLE),
            ("OIDCProviderArn", PROVIDER),
            ("OIDCToken", &jwt),
            ("RoleSessionName", "pod-1"),
            ("DurationSeconds", "1800"),
        ],
    )
    .await;
    assert_eq!(code(&answer), (200, "<success>"), "{}", answer.1);
    let body = &answer.1;
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        "acs:ram::2234567890123456:assumed-role/oidc-gateway/pod-1"
    );
    let info = &body["OIDCTokenInfo"];
    assert_eq!(info["Subject"], SUBJECT);
    assert_eq!(info["Issuer"], ISSUER);
    assert_eq!(info["ClientIds"], "another-app,gateway-client");
    let lifetime = parse_time(&body["Credentials"]["Expiration"]) - Utc::now();
    assert!(lifetime > chrono::TimeDelta::seconds(1790), "{lifetime}");
    // The key is the role's account's.
    let key = Key::from(&body["Credentials"]);
    let raise = [
        ("InstanceId", "i-prod-web"),
        ("InternetMaxBandwidthOut", "20"),
    ];
    assert_eq!(code(&ecs(&sim, &key, &raise).await), (200, "<success>"));
    assert_eq!(sim.sim.sts_calls(), 1);
}

/// RS256 with the repository's RSA test key, and the library's own test
/// issuer (ES256, default client ID).
#[tokio::test]
async fn accepts_rs256_and_the_test_issuers_tokens() {
    let private = include_str!("../../tests/data/jwt-test-rs256.pem");
    let public = rcgen::KeyPair::from_pem(private).unwrap().public_key_pem();
    let sim = start(world(&public)).await;
    let rsa = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let jwt = token(
        &rsa,
        Algorithm::RS256,
        &claims(ISSUER, json!("gateway-client"), in_an_hour()),
    );
    let params = [("RoleArn", ROLE), ("OIDCProviderArn", PROVIDER)];
    let mut with_token = params.to_vec();
    with_token.push(("OIDCToken", &jwt));
    let answer = assume(&sim, &with_token).await;
    assert_eq!(code(&answer), (200, "<success>"), "{}", answer.1);
    let session = answer.1["AssumedRoleUser"]["AssumedRoleId"]
        .as_str()
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_owned();
    assert!(session.len() >= 2, "a session name is made: {session}");

    let (pem, issuer) = oidc::test_issuer("https://issuer.test");
    assert_eq!(pem, issuer.public_key_pem());
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let mut config = Config::demo();
    config.oidc_providers = vec![issuer.provider(PROVIDER)];
    let mut role = Role::new(ROLE);
    role.oidc_provider_arn = Some(PROVIDER.into());
    config.roles.push(role);
    let sim = start(config).await;
    let jwt = issuer.token("pod", &[DEFAULT_OIDC_CLIENT_ID], in_an_hour());
    let mut with_token = params.to_vec();
    with_token.push(("OIDCToken", &jwt));
    let answer = assume(&sim, &with_token).await;
    assert_eq!(code(&answer), (200, "<success>"), "{}", answer.1);
    assert_eq!(answer.1["OIDCTokenInfo"]["Subject"], "pod");
    let two = issuer.token("pod", &["a", "b"], in_an_hour());
    let mut with_two = params.to_vec();
    with_two.push(("OIDCToken", &two));
    assert_eq!(
        code(&assume(&sim, &with_two).await),
        (401, "AuthenticationFail.OIDCToken.AudienceNotMatch")
    );
}

type Case<'a> = (Vec<(&'a str, &'a str)>, (u16, &'a str));

/// Sends each case and checks its answer.
async fn check(sim: &Running, cases: &[Case<'_>]) {
    for (params, expected) in cases {
        let answer = assume(sim, params).await;
        assert_eq!(code(&answer), *expected, "{params:?}: {}", answer.1);
    }
}

/// The role and provider with `jwt`.
fn with(jwt: &str) -> Vec<(&str, &str)> {
    vec![
        ("RoleArn", ROLE),
        ("OIDCProviderArn", PROVIDER),
        ("OIDCToken", jwt),
    ]
}

const ROLE_PARAM: (&str, &str) = ("RoleArn", ROLE);
const PROVIDER_PARAM: (&str, &str) = ("OIDCProviderArn", PROVIDER);

#[tokio::test]
async fn refuses_missing_parameters_and_unknown_entities() {
    let (key, pem) = rcgen_key();
    let sim = start(world(&pem)).await;
    let good = token(
        &key,
        Algorithm::ES256,
        &claims(ISSUER, json!("gateway-client"), in_an_hour()),
    );
    let (role, provider) = (ROLE_PARAM, PROVIDER_PARAM);
    let unknown_provider = (
        "OIDCProviderArn",
        "acs:ram::2234567890123456:oidc-provider/none",
    );
    let unknown_role = ("RoleArn", "acs:ram::2234567890123456:role/none");
    let session = |name| vec![role, provider, ("OIDCToken", good.as_str()), name];
    check(
        &sim,
        &[
            (
                vec![provider, ("OIDCToken", &good)],
                (400, "MissingParameter"),
            ),
            (vec![role, ("OIDCToken", &good)], (400, "MissingParameter")),
            (vec![role, provider], (400, "MissingParameter")),
            // The provider first, then the role.
            (
                vec![unknown_role, unknown_provider, ("OIDCToken", &good)],
                (404, "EntityNotExist.OIDCProvider"),
            ),
            (
                vec![unknown_role, provider, ("OIDCToken", "not-a-jwt")],
                (404, "EntityNotExist.Role"),
            ),
            (
                session(("RoleSessionName", "x")),
                (400, "InvalidParameter.RoleSessionName"),
            ),
            (
                session(("DurationSeconds", "60")),
                (400, "InvalidParameter.DurationSeconds"),
            ),
        ],
    )
    .await;
    let missing = assume(&sim, &[role, provider]).await;
    let message = missing.1["Message"].as_str().unwrap();
    assert!(message.contains("\"OIDCToken\""), "{message}");
    assert_eq!(code(&assume(&sim, &with(&good)).await), (200, "<success>"));
}

#[tokio::test]
async fn refuses_bad_tokens_in_stss_order() {
    let (key, pem) = rcgen_key();
    let (stranger, _) = rcgen_key();
    let sim = start(world(&pem)).await;
    let aud = || json!("gateway-client");
    let es256 = |claims: &Value| token(&key, Algorithm::ES256, claims);
    let forged = token(
        &stranger,
        Algorithm::ES256,
        &claims(ISSUER, aud(), in_an_hour()),
    );
    let hmac = token(
        &EncodingKey::from_secret(pem.as_bytes()),
        Algorithm::HS256,
        &claims(ISSUER, aud(), in_an_hour()),
    );
    // Each is wrong in its own way and in every later one.
    let past = Utc::now() - chrono::TimeDelta::minutes(5);
    let wrong_issuer = es256(&claims("https://elsewhere", json!("someone-else"), past));
    let wrong_audience = es256(&claims(ISSUER, json!("someone-else"), past));
    let expired = es256(&claims(ISSUER, aud(), past));
    let invalid = (401, "AuthenticationFail.OIDCToken.Invalid");
    check(
        &sim,
        &[
            (with("not-a-jwt"), invalid),
            (with("e30.e30.c2ln"), invalid),
            (with(&hmac), invalid),
            (
                with(&forged),
                (401, "AuthenticationFail.OIDCToken.InvalidSignature"),
            ),
            (
                with(&wrong_issuer),
                (401, "AuthenticationFail.OIDCToken.IssuerNotMatch"),
            ),
            (
                with(&wrong_audience),
                (401, "AuthenticationFail.OIDCToken.AudienceNotMatch"),
            ),
            (
                with(&expired),
                (401, "AuthenticationFail.OIDCToken.Expired"),
            ),
        ],
    )
    .await;
    assert_eq!(sim.sim.sts_calls(), 7);
}

#[tokio::test]
async fn refuses_providers_and_subjects_the_role_does_not_trust() {
    let (key, pem) = rcgen_key();
    let sim = start(world(&pem)).await;
    let good = token(
        &key,
        Algorithm::ES256,
        &claims(ISSUER, json!("gateway-client"), in_an_hour()),
    );
    // The second provider accepts only the default client ID.
    let default_audience = token(
        &key,
        Algorithm::ES256,
        &claims(ISSUER, json!(DEFAULT_OIDC_CLIENT_ID), in_an_hour()),
    );
    let other = ("OIDCProviderArn", OTHER_PROVIDER);
    check(
        &sim,
        &[
            (
                vec![ROLE_PARAM, other, ("OIDCToken", &good)],
                (401, "AuthenticationFail.OIDCToken.AudienceNotMatch"),
            ),
            (
                vec![ROLE_PARAM, other, ("OIDCToken", &default_audience)],
                (401, "AuthenticationFail.NoPermission"),
            ),
            (
                vec![
                    ("RoleArn", NARROW_ROLE),
                    PROVIDER_PARAM,
                    ("OIDCToken", &good),
                ],
                (401, "AuthenticationFail.NoPermission"),
            ),
        ],
    )
    .await;
    // No answer quotes the token.
    let refused = assume(&sim, &[ROLE_PARAM, other, ("OIDCToken", &default_audience)]).await;
    assert!(!refused.1.to_string().contains(&default_audience));
}
