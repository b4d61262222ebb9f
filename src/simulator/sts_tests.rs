//! STS's `AssumeRole` and the keys it issues, over real HTTP: what ECS does
//! with them (their account's instances only, refused once expired), and
//! every refusal STS documents.

use chrono::{DateTime, NaiveDateTime, TimeDelta};
use serde_json::Value;

use super::tests::{Running, action, code, common, start};
use super::*;
use crate::sign;

/// A key as an issuer answers it.
pub(super) struct Key {
    pub(super) id: String,
    pub(super) secret: String,
    pub(super) token: String,
}

impl Key {
    /// The key in `credentials` (STS's `Credentials`, or a metadata or
    /// credentials URI body).
    pub(super) fn from(credentials: &Value) -> Self {
        let field = |name: &str| credentials[name].as_str().unwrap().to_owned();
        Self {
            id: field("AccessKeyId"),
            secret: field("AccessKeySecret"),
            token: field("SecurityToken"),
        }
    }
}

/// `params` with the common parameters for `key`, at `version`.
fn signed(
    key: &str,
    token: Option<&str>,
    version: &str,
    params: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut all = common(key, &uuid::Uuid::new_v4().to_string(), Utc::now());
    all.retain(|(k, _)| k != "Version");
    all.push(("Version".into(), version.into()));
    if let Some(token) = token {
        all.push(("SecurityToken".into(), token.into()));
    }
    all.extend(params);
    all
}

fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `AssumeRole` with `params`, signed by the demo key.
async fn assume(sim: &Running, params: &[(&str, &str)]) -> (u16, Value) {
    let mut all = pairs(&[("Action", "AssumeRole")]);
    all.extend(pairs(params));
    let all = signed(DEMO_ACCESS_KEY_ID, None, "2015-04-01", all);
    sim.send("POST", DEMO_ACCESS_KEY_SECRET, all).await
}

/// The demo's second account's role, assumed by the demo key.
pub(super) async fn assume_second_account(sim: &Running) -> Key {
    let answer = assume(
        sim,
        &[
            ("RoleArn", SECOND_ACCOUNT_ROLE_ARN),
            ("RoleSessionName", "gateway"),
            ("ExternalId", DEMO_EXTERNAL_ID),
        ],
    )
    .await;
    assert_eq!(code(&answer), (200, "<success>"), "{}", answer.1);
    Key::from(&answer.1["Credentials"])
}

/// An ECS call with `params` signed by `key` (with its token).
pub(super) async fn ecs(sim: &Running, key: &Key, params: &[(&str, &str)]) -> (u16, Value) {
    let all = signed(&key.id, Some(&key.token), "2014-05-26", action(params));
    sim.send("POST", &key.secret, all).await
}

fn raise(id: &str) -> [(&str, &str); 2] {
    [("InstanceId", id), ("InternetMaxBandwidthOut", "12")]
}

/// A timestamp as STS writes it, `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn parse_time(value: &Value) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(value.as_str().unwrap(), sign::TIMESTAMP_FORMAT)
        .unwrap()
        .and_utc()
}

#[tokio::test]
async fn assume_role_answers_a_key_of_the_roles_account() {
    let sim = start(Config::demo()).await;
    let answer = assume(
        &sim,
        &[
            ("RoleArn", SECOND_ACCOUNT_ROLE_ARN),
            ("RoleSessionName", "gateway@prod"),
            ("ExternalId", DEMO_EXTERNAL_ID),
            ("DurationSeconds", "900"),
            ("Policy", "{\"Version\":\"1\"}"),
        ],
    )
    .await;
    assert_eq!(code(&answer), (200, "<success>"), "{}", answer.1);
    let body = &answer.1;
    assert_eq!(body["RequestId"].as_str().unwrap().len(), 36);
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        "acs:ram::2234567890123456:assumed-role/ecs-gateway/gateway@prod"
    );
    let role_id = body["AssumedRoleUser"]["AssumedRoleId"].as_str().unwrap();
    let (digits, session) = role_id.split_once(':').unwrap();
    assert!(digits.len() >= 10 && digits.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(session, "gateway@prod");
    let credentials = &body["Credentials"];
    let key = Key::from(credentials);
    assert!(key.id.starts_with("STS.") && key.id.len() > 10);
    assert!(!key.secret.is_empty() && !key.token.is_empty());
    let expires = parse_time(&credentials["Expiration"]);
    let lifetime = expires - Utc::now();
    assert!(
        lifetime > TimeDelta::seconds(890) && lifetime <= TimeDelta::seconds(900),
        "{lifetime}"
    );
    assert_eq!(sim.sim.sts_calls(), 1);
    assert_eq!(sim.sim.calls(), 0, "STS calls are not ECS calls");

    // Without DurationSeconds: one hour.
    let default = assume(
        &sim,
        &[
            ("RoleArn", SECOND_ACCOUNT_ROLE_ARN),
            ("RoleSessionName", "gateway"),
            ("ExternalId", DEMO_EXTERNAL_ID),
        ],
    )
    .await;
    let lifetime = parse_time(&default.1["Credentials"]["Expiration"]) - Utc::now();
    assert!(lifetime > TimeDelta::seconds(3590), "{lifetime}");
}

#[tokio::test]
async fn an_issued_key_reaches_only_its_accounts_instances() {
    let sim = start(Config::demo()).await;
    let key = assume_second_account(&sim).await;
    assert_eq!(
        code(&ecs(&sim, &key, &raise("i-prod-web")).await),
        (200, "<success>")
    );
    assert_eq!(sim.sim.instance("i-prod-web").unwrap().bandwidth_out, 12);
    // The first account's instance is unknown to the second account's key,
    // and the second account's to the demo key: as an unknown instance.
    assert_eq!(
        code(&ecs(&sim, &key, &raise("i-demo-postpaid")).await),
        (404, "InvalidInstanceId.NotFound")
    );
    let demo = Key {
        id: DEMO_ACCESS_KEY_ID.into(),
        secret: DEMO_ACCESS_KEY_SECRET.into(),
        token: String::new(),
    };
    let mut params = action(&raise("i-prod-batch"));
    params.extend(common(DEMO_ACCESS_KEY_ID, "cross", Utc::now()));
    assert_eq!(
        code(&sim.send("POST", &demo.secret, params).await),
        (404, "InvalidInstanceId.NotFound")
    );
    assert_eq!(sim.sim.instance("i-prod-batch").unwrap().bandwidth_out, 0);
    assert_eq!(sim.sim.calls_by_account(SECOND_ACCOUNT_ID), 2);
    assert_eq!(sim.sim.calls_by_account(DEMO_ACCOUNT_ID), 1);

    // DescribeInstances lists the key's account's instances only.
    let listed = |answer: &(u16, Value)| -> Vec<String> {
        answer.1["Instances"]["Instance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["InstanceId"].as_str().unwrap().to_owned())
            .collect()
    };
    let describe = [("Action", "DescribeInstances"), ("RegionId", DEMO_REGION)];
    let all = signed(&key.id, Some(&key.token), "2014-05-26", pairs(&describe));
    let second = sim.send("POST", &key.secret, all).await;
    assert_eq!(listed(&second), ["i-prod-batch", "i-prod-web"]);
    let ids = [
        ("Action", "DescribeInstances"),
        ("RegionId", DEMO_REGION),
        ("InstanceIds", "[\"i-prod-web\",\"i-demo-eip\"]"),
    ];
    let all = signed(DEMO_ACCESS_KEY_ID, None, "2014-05-26", pairs(&ids));
    let first = sim.send("POST", DEMO_ACCESS_KEY_SECRET, all).await;
    assert_eq!(listed(&first), ["i-demo-eip"]);
    assert_eq!(sim.sim.expired_key_calls(), 0);
}

/// Each account's quota and arrears are its own.
#[tokio::test]
async fn account_state_is_the_instances_accounts() {
    let sim = start(Config::demo()).await;
    let key = assume_second_account(&sim).await;
    sim.sim.update_account(|a| a.in_arrears = true);
    assert_eq!(
        code(&ecs(&sim, &key, &raise("i-prod-web")).await),
        (200, "<success>")
    );
    sim.sim
        .update_account_of(SECOND_ACCOUNT_ID, |a| a.in_arrears = true);
    assert_eq!(
        code(&ecs(&sim, &key, &raise("i-prod-batch")).await),
        (400, "Account.Arrearage")
    );
}

#[tokio::test]
async fn an_expired_key_is_refused_and_counted() {
    let mut config = Config::demo();
    config.issued_lifetime = Some(Duration::from_secs(1));
    let sim = start(config).await;
    let key = assume_second_account(&sim).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code(&ecs(&sim, &key, &raise("i-prod-web")).await),
        (400, "InvalidSecurityToken.Expired")
    );
    assert_eq!(sim.sim.expired_key_calls(), 1);
    assert_eq!(sim.sim.instance("i-prod-web").unwrap().bandwidth_out, 10);
}

#[tokio::test]
async fn an_issued_key_needs_its_own_token() {
    let sim = start(Config::demo()).await;
    let key = assume_second_account(&sim).await;
    let without = signed(&key.id, None, "2014-05-26", action(&raise("i-prod-web")));
    assert_eq!(
        code(&sim.send("POST", &key.secret, without).await),
        (400, "MissingSecurityToken")
    );
    let other = assume_second_account(&sim).await;
    let mismatched = signed(
        &key.id,
        Some(&other.token),
        "2014-05-26",
        action(&raise("i-prod-web")),
    );
    assert_eq!(
        code(&sim.send("POST", &key.secret, mismatched).await),
        (400, "InvalidSecurityToken.MismatchWithAccessKey")
    );
    // STS itself wants the token of a temporary key too.
    let chained = signed(
        &key.id,
        None,
        "2015-04-01",
        pairs(&[
            ("Action", "AssumeRole"),
            ("RoleArn", SECOND_ACCOUNT_ROLE_ARN),
            ("RoleSessionName", "chained"),
        ]),
    );
    assert_eq!(
        code(&sim.send("POST", &key.secret, chained).await),
        (400, "MissingSecurityToken")
    );
    assert_eq!(sim.sim.instance("i-prod-web").unwrap().bandwidth_out, 10);
}

type Case<'a> = (&'a [(&'a str, &'a str)], (u16, &'a str));

/// Sends each case as `AssumeRole` by the demo key and checks its answer.
async fn check(sim: &Running, cases: &[Case<'_>]) {
    for (params, expected) in cases {
        let answer = assume(sim, params).await;
        assert_eq!(code(&answer), *expected, "{params:?}: {}", answer.1);
        if answer.0 != 200 {
            assert_eq!(answer.1["HostId"], "sts.aliyuncs.com");
            let recommend = answer.1["Recommend"].as_str().unwrap();
            assert!(recommend.contains("product=Sts"), "{recommend}");
        }
    }
}

const ROLE: (&str, &str) = ("RoleArn", SECOND_ACCOUNT_ROLE_ARN);
const EXTERNAL: (&str, &str) = ("ExternalId", DEMO_EXTERNAL_ID);
const SESSION: (&str, &str) = ("RoleSessionName", "gateway");

#[tokio::test]
async fn assume_role_refuses_callers_the_role_does_not_trust() {
    let mut config = Config::demo();
    let mut stranger = Role::new("acs:ram::2234567890123456:role/stranger");
    stranger.trusted_accounts = vec!["9999999999999999".into()];
    config.roles.push(stranger);
    let sim = start(config).await;
    let unknown = ("RoleArn", "acs:ram::2234567890123456:role/nobody");
    let stranger = ("RoleArn", "acs:ram::2234567890123456:role/stranger");
    check(
        &sim,
        &[
            (&[unknown, SESSION], (404, "EntityNotExist.Role")),
            (&[stranger, SESSION], (403, "NoPermission")),
            (&[ROLE, SESSION], (403, "NoPermission")),
            (
                &[ROLE, SESSION, ("ExternalId", "guess")],
                (403, "NoPermission"),
            ),
        ],
    )
    .await;
    assert_eq!(sim.sim.sts_calls(), 4);

    let params = pairs(&[("Action", "AssumeRole"), ROLE, SESSION, EXTERNAL]);
    let params = signed(DEMO_ACCESS_KEY_ID, None, "2015-04-01", params);
    assert_eq!(
        code(&sim.send("POST", "not-the-secret", params).await),
        (400, "SignatureDoesNotMatch")
    );
    let unknown_key = signed(
        "LTAIunknown",
        None,
        "2015-04-01",
        pairs(&[("Action", "AssumeRole")]),
    );
    assert_eq!(
        code(&sim.send("POST", DEMO_ACCESS_KEY_SECRET, unknown_key).await),
        (404, "InvalidAccessKeyId.NotFound")
    );
}

#[tokio::test]
async fn assume_role_checks_its_parameters() {
    let mut config = Config::demo();
    let mut long = Role::new("acs:ram::2234567890123456:role/long");
    long.trusted_accounts = vec![DEMO_ACCOUNT_ID.into()];
    long.max_session = Duration::from_secs(7200);
    config.roles.push(long);
    let sim = start(config).await;
    let long = ("RoleArn", "acs:ram::2234567890123456:role/long");
    let too_long = "s".repeat(65);
    let name = |n| [ROLE, EXTERNAL, ("RoleSessionName", n)];
    let lasting = |d| [ROLE, EXTERNAL, SESSION, ("DurationSeconds", d)];
    let bad_name = (400, "InvalidParameter.RoleSessionName");
    let bad_duration = (400, "InvalidParameter.DurationSeconds");
    check(
        &sim,
        &[
            (&[ROLE, EXTERNAL], (400, "MissingParameter")),
            (&[SESSION, EXTERNAL], (400, "MissingParameter")),
            (&name("a"), bad_name),
            (&name("a*b"), bad_name),
            (&name(too_long.as_str()), bad_name),
            (&name(&too_long[..64]), (200, "<success>")),
            (&lasting("899"), bad_duration),
            (&lasting("3601"), bad_duration),
            (&lasting("an hour"), bad_duration),
            (
                &[long, SESSION, ("DurationSeconds", "7200")],
                (200, "<success>"),
            ),
            (&[long, SESSION, ("DurationSeconds", "7201")], bad_duration),
        ],
    )
    .await;
    let unknown = signed(
        DEMO_ACCESS_KEY_ID,
        None,
        "2015-04-01",
        pairs(&[("Action", "GetCallerIdentity")]),
    );
    assert_eq!(
        code(&sim.send("GET", DEMO_ACCESS_KEY_SECRET, unknown).await),
        (400, "InvalidAction")
    );
}

#[tokio::test]
async fn sts_can_be_made_to_fail() {
    let sim = start(Config::demo()).await;
    sim.sim.set_sts_down(true);
    let answer = assume(
        &sim,
        &[
            ("RoleArn", SECOND_ACCOUNT_ROLE_ARN),
            ("RoleSessionName", "gateway"),
            ("ExternalId", DEMO_EXTERNAL_ID),
        ],
    )
    .await;
    assert_eq!(code(&answer), (503, "ServiceUnavailable"));
    assert!(answer.1["RequestId"].is_string() && answer.1["Message"].is_string());
    // ECS is up.
    let mut params = action(&raise("i-demo-postpaid"));
    params.extend(common(DEMO_ACCESS_KEY_ID, "up", Utc::now()));
    assert_eq!(
        code(&sim.send("POST", DEMO_ACCESS_KEY_SECRET, params).await),
        (200, "<success>")
    );
    sim.sim.set_sts_down(false);
    assume_second_account(&sim).await;
    assert_eq!(sim.sim.sts_calls(), 2);
    assert_eq!(sim.sim.calls(), 1);
}

#[test]
fn a_roles_account_and_name_come_from_its_arn() {
    let role = Role::new(SECOND_ACCOUNT_ROLE_ARN);
    assert_eq!(
        (role.account(), role.name()),
        (SECOND_ACCOUNT_ID, "ecs-gateway")
    );
    let odd = Role::new("acs:ram::123:user/someone");
    assert_eq!((odd.account(), odd.name()), ("", ""));
    let demo = Config::demo();
    assert_eq!(demo.roles[0].max_session, Duration::from_secs(3600));
    assert_eq!(
        demo.instances
            .iter()
            .filter(|i| i.account == SECOND_ACCOUNT_ID)
            .count(),
        2
    );
}

/// `catalogue::get` panics on a code it does not know: every code the
/// simulator answers by name is a row.
#[test]
fn every_code_the_simulator_answers_is_catalogued() {
    let sources = [
        include_str!("auth.rs"),
        include_str!("describe.rs"),
        include_str!("metadata.rs"),
        include_str!("mod.rs"),
        include_str!("oidc.rs"),
        include_str!("rules.rs"),
        include_str!("sts.rs"),
        include_str!("uri.rs"),
    ];
    let mut seen = 0;
    for source in sources {
        for call in ["Failure::new(\"", "Failure::with_status(\""] {
            for (at, _) in source.match_indices(call) {
                let rest = &source[at + call.len()..];
                let code = &rest[..rest.find('"').unwrap()];
                assert!(
                    crate::error::catalogue::lookup(code, 400).is_some(),
                    "{code} is not in the catalogue"
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 40, "{seen} codes found");
}
