//! The simulator's front door and the rules the gateway cannot reach (its
//! own validation stops those requests first), over real HTTP.

use super::*;
use crate::credentials::Secret;
use crate::sign;
use chrono::DateTime;

/// A simulator serving on a loopback port.
pub(super) struct Running {
    pub(super) url: String,
    pub(super) sim: Simulator,
    pub(super) http: reqwest::Client,
}

pub(super) async fn start(config: Config) -> Running {
    crate::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let sim = Simulator::new(config);
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    Running {
        url,
        sim,
        http: reqwest::Client::new(),
    }
}

pub(super) fn common(key: &str, nonce: &str, timestamp: DateTime<Utc>) -> Vec<(String, String)> {
    [
        ("Format", "JSON"),
        ("Version", "2014-05-26"),
        ("AccessKeyId", key),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .chain([(
        "Timestamp".to_owned(),
        timestamp.format(sign::TIMESTAMP_FORMAT).to_string(),
    )])
    .collect()
}

pub(super) fn action(params: &[(&str, &str)]) -> Vec<(String, String)> {
    [
        ("Action", "ModifyInstanceNetworkSpec"),
        ("RegionId", DEMO_REGION),
    ]
    .iter()
    .chain(params)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

impl Running {
    pub(super) async fn send(
        &self,
        method: &str,
        secret: &str,
        params: Vec<(String, String)>,
    ) -> (u16, serde_json::Value) {
        let query = sign::signed_query(method, secret, &params);
        let request = if method == "GET" {
            self.http.get(format!("{}?{query}", self.url))
        } else {
            self.http
                .post(&self.url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(query)
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
        )
    }

    async fn call(&self, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut all = action(params);
        all.extend(common(
            DEMO_ACCESS_KEY_ID,
            &uuid::Uuid::new_v4().to_string(),
            Utc::now(),
        ));
        self.send("POST", DEMO_ACCESS_KEY_SECRET, all).await
    }
}

pub(super) fn code(answer: &(u16, serde_json::Value)) -> (u16, &str) {
    (answer.0, answer.1["Code"].as_str().unwrap_or("<success>"))
}

#[tokio::test]
async fn accepts_get_and_post_signatures() {
    let sim = start(Config::demo()).await;
    for method in ["GET", "POST"] {
        let mut params = action(&[
            ("InstanceId", "i-demo-postpaid"),
            ("InternetMaxBandwidthOut", "7"),
        ]);
        params.extend(common(
            DEMO_ACCESS_KEY_ID,
            &format!("n-{method}"),
            Utc::now(),
        ));
        let answer = sim.send(method, DEMO_ACCESS_KEY_SECRET, params).await;
        assert_eq!(code(&answer), (200, "<success>"), "{method}: {}", answer.1);
        assert!(
            answer.1["RequestId"]
                .as_str()
                .is_some_and(|r| r.len() == 36)
        );
        assert!(
            answer.1.get("OrderId").is_none(),
            "pay-as-you-go has no order"
        );
    }
    assert_eq!(
        sim.sim.instance("i-demo-postpaid").unwrap().bandwidth_out,
        7
    );
}

#[tokio::test]
async fn refuses_bad_authentication_like_ecs() {
    let sim = start(Config::demo()).await;
    let params = || {
        action(&[
            ("InstanceId", "i-demo-postpaid"),
            ("InternetMaxBandwidthOut", "7"),
        ])
    };
    let with = |key: &str, nonce: &str, at: DateTime<Utc>| {
        let mut p = params();
        p.extend(common(key, nonce, at));
        p
    };

    let wrong_secret = sim
        .send(
            "POST",
            "not-the-secret",
            with(DEMO_ACCESS_KEY_ID, "n1", Utc::now()),
        )
        .await;
    assert_eq!(code(&wrong_secret), (400, "SignatureDoesNotMatch"));
    assert!(
        wrong_secret.1["Message"]
            .as_str()
            .unwrap()
            .contains("server string to sign is:POST&%2F&")
    );
    assert!(wrong_secret.1["HostId"].is_string() && wrong_secret.1["Recommend"].is_string());

    let unknown = sim
        .send(
            "POST",
            DEMO_ACCESS_KEY_SECRET,
            with("LTAIunknown", "n2", Utc::now()),
        )
        .await;
    assert_eq!(code(&unknown), (404, "InvalidAccessKeyId.NotFound"));

    let stale = Utc::now() - chrono::TimeDelta::minutes(16);
    let expired = sim
        .send(
            "POST",
            DEMO_ACCESS_KEY_SECRET,
            with(DEMO_ACCESS_KEY_ID, "n3", stale),
        )
        .await;
    assert_eq!(code(&expired), (400, "InvalidTimeStamp.Expired"));

    let first = sim
        .send(
            "POST",
            DEMO_ACCESS_KEY_SECRET,
            with(DEMO_ACCESS_KEY_ID, "n4", Utc::now()),
        )
        .await;
    assert_eq!(code(&first), (200, "<success>"));
    let replay = sim
        .send(
            "POST",
            DEMO_ACCESS_KEY_SECRET,
            with(DEMO_ACCESS_KEY_ID, "n4", Utc::now()),
        )
        .await;
    assert_eq!(code(&replay), (400, "SignatureNonceUsed"));

    let mut missing = with(DEMO_ACCESS_KEY_ID, "n5", Utc::now());
    missing.retain(|(k, _)| k != "Timestamp");
    let missing = sim.send("POST", DEMO_ACCESS_KEY_SECRET, missing).await;
    assert_eq!(code(&missing), (400, "MissingParameter"));
    assert!(
        missing.1["Message"]
            .as_str()
            .unwrap()
            .contains("\"Timestamp\"")
    );

    let mut no_instance = common(DEMO_ACCESS_KEY_ID, "n6", Utc::now());
    no_instance.extend(action(&[]));
    let no_instance = sim.send("POST", DEMO_ACCESS_KEY_SECRET, no_instance).await;
    assert_eq!(code(&no_instance), (400, "MissingParameter"));
    assert!(
        no_instance.1["Message"]
            .as_str()
            .unwrap()
            .contains("\"InstanceId\"")
    );

    // A tampered parameter after signing.
    let mut tampered = with(DEMO_ACCESS_KEY_ID, "n7", Utc::now());
    let body = sign::signed_query("POST", DEMO_ACCESS_KEY_SECRET, &tampered)
        .replace("InternetMaxBandwidthOut=7", "InternetMaxBandwidthOut=99");
    tampered.clear();
    let response = sim
        .http
        .post(&sim.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["Code"], "SignatureDoesNotMatch");
    assert_eq!(
        sim.sim.instance("i-demo-postpaid").unwrap().bandwidth_out,
        7,
        "only the genuine call applied"
    );
}

#[tokio::test]
async fn sts_keys_need_their_token() {
    let mut config = Config::demo();
    config.access_keys.push(AccessKey {
        id: "STS.key".into(),
        secret: Secret::new("sts-secret"),
        security_token: Some(Secret::new("the-token")),
        account: DEMO_ACCOUNT_ID.into(),
        expires: None,
    });
    let sim = start(config).await;
    let mut params = action(&[
        ("InstanceId", "i-demo-postpaid"),
        ("InternetMaxBandwidthOut", "8"),
    ]);
    params.extend(common("STS.key", "s1", Utc::now()));
    assert_eq!(
        code(&sim.send("POST", "sts-secret", params.clone()).await),
        (400, "MissingSecurityToken")
    );
    let mut wrong = params.clone();
    wrong.push(("SecurityToken".into(), "another-token".into()));
    assert_eq!(
        code(&sim.send("POST", "sts-secret", wrong).await),
        (400, "InvalidSecurityToken.MismatchWithAccessKey")
    );
    params.retain(|(k, _)| k != "SignatureNonce");
    params.push(("SignatureNonce".into(), "s2".into()));
    params.push(("SecurityToken".into(), "the-token".into()));
    assert_eq!(
        code(&sim.send("POST", "sts-secret", params).await),
        (200, "<success>")
    );
}

#[tokio::test]
async fn throttles_above_the_configured_rate() {
    let mut config = Config::demo();
    config.throttle_per_second = Some(2);
    let sim = start(config).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            code(
                &sim.call(&[
                    ("InstanceId", "i-demo-postpaid"),
                    ("InternetMaxBandwidthOut", "6"),
                ])
                .await,
            )
            .1
            .to_owned(),
        );
    }
    assert_eq!(codes[..2], ["<success>", "<success>"]);
    assert!(codes[2..].iter().all(|c| c == "Throttling"), "{codes:?}");
}

#[tokio::test]
async fn checks_parameter_formats_itself() {
    let sim = start(Config::demo()).await;
    type Case<'a> = (&'a [(&'a str, &'a str)], (u16, &'a str));
    let cases: &[Case] = &[
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "ten"),
            ],
            (400, "InvalidInternetMaxBandwidthOut.ValueNotSupported"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "-1"),
            ],
            (400, "InvalidInternetMaxBandwidthOut.ValueNotSupported"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("NetworkChargeType", "PayByMagic"),
            ],
            (400, "InvalidInternetChargeType.ValueNotSupported"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("AllocatePublicIp", "yes"),
            ],
            (400, "InvalidParam.AllocatePublicIp"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "5"),
                ("StartTime", "2030-01-01T10:00:00Z"),
                ("EndTime", "2030-01-01T14Z"),
            ],
            (400, "InvalidStartTime.ValueNotSupported"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "5"),
                ("StartTime", "2030-01-01T10:00Z"),
                ("EndTime", "2030-01-01T14:00Z"),
            ],
            (400, "InvalidEndTime.ValueNotSupported"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "5"),
                ("StartTime", "2030-01-01T10:00Z"),
            ],
            (400, "InvalidParameter.Conflict"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "5"),
                ("ClientToken", &"x".repeat(65)),
            ],
            (400, "InvalidClientToken.ValueNotSupported"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "0"),
                ("ISP", "cmcc"),
            ],
            (400, "InvalidBandwidthOut.LessThanZero"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "5"),
                ("ISP", "cmcc"),
                ("NetworkChargeType", "PayByTraffic"),
            ],
            (400, "UnsupportedIspNetworkChargeType"),
        ),
        (
            &[
                ("InstanceId", "i-demo-prepaid"),
                ("InternetMaxBandwidthOut", "5"),
                ("ISP", "cmcc"),
            ],
            (403, "InvalidIspUID"),
        ),
        (
            &[("InstanceId", "i-demo-prepaid"), ("AutoPay", "maybe")],
            (400, "InvalidParameter"),
        ),
    ];
    for (params, expected) in cases {
        assert_eq!(code(&sim.call(params).await), *expected, "{params:?}");
    }
    let mut other = action(&[("InstanceId", "i-demo-prepaid")]);
    other.retain(|(k, _)| k != "Action");
    other.push(("Action".into(), "DeleteInstance".into()));
    other.extend(common(DEMO_ACCESS_KEY_ID, "a1", Utc::now()));
    assert_eq!(
        code(&sim.send("POST", DEMO_ACCESS_KEY_SECRET, other).await),
        (400, "InvalidAction")
    );
    assert_eq!(
        sim.sim.instance("i-demo-prepaid").unwrap().bandwidth_out,
        0,
        "nothing applied"
    );
}

#[tokio::test]
async fn injects_faults_in_order() {
    let sim = start(Config::demo()).await;
    sim.sim.inject(Fault::Error {
        code: "LastRequestProcessing".into(),
        http_status: 400,
    });
    sim.sim.inject(Fault::HttpStatus(502));
    let params = [
        ("InstanceId", "i-demo-postpaid"),
        ("InternetMaxBandwidthOut", "6"),
    ];
    assert_eq!(
        code(&sim.call(&params).await),
        (400, "LastRequestProcessing")
    );
    let mut all = action(&params);
    all.extend(common(DEMO_ACCESS_KEY_ID, "f2", Utc::now()));
    let response = sim
        .http
        .post(&sim.url)
        .body(sign::signed_query("POST", DEMO_ACCESS_KEY_SECRET, &all))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    assert_eq!(code(&sim.call(&params).await), (200, "<success>"));
    assert_eq!(sim.sim.calls(), 3);
}

/// A world with the instances the reference's special cases need.
fn world() -> Config {
    let mut config = Config::demo();
    let mut add = |id: &str, charge: ChargeType, edit: &dyn Fn(&mut Instance)| {
        let mut instance = Instance::new(id, DEMO_REGION, charge);
        edit(&mut instance);
        config.instances.push(instance);
    };
    add("i-classic", ChargeType::PostPaid, &|i| {
        i.network_type = NetworkType::Classic;
    });
    add("i-classic-stopped", ChargeType::PostPaid, &|i| {
        i.network_type = NetworkType::Classic;
        i.status = Status::Stopped;
    });
    add("i-classic-public", ChargeType::PostPaid, &|i| {
        i.network_type = NetworkType::Classic;
        i.bandwidth_out = 5;
        i.public_ip = Some("42.120.1.1".into());
    });
    add("i-prepaid-5", ChargeType::PrePaid, &|i| {
        i.bandwidth_out = 5;
        i.network_charge_type = NetworkChargeType::PayByBandwidth;
    });
    config
}

/// The classic network, as the reference describes it: served, but an
/// instance must be stopped to leave 0 Mbit/s, and ISP is refused.
#[tokio::test]
async fn serves_classic_network_instances_by_their_rules() {
    let sim = start(world()).await;
    let raise = |id| [("InstanceId", id), ("InternetMaxBandwidthOut", "5")];
    assert_eq!(
        code(&sim.call(&raise("i-classic")).await),
        (400, "InvalidInstanceStatus.NotStopped")
    );
    assert_eq!(sim.sim.instance("i-classic").unwrap().bandwidth_out, 0);
    assert_eq!(
        code(&sim.call(&raise("i-classic-stopped")).await),
        (200, "<success>")
    );
    assert_eq!(
        sim.sim.instance("i-classic-stopped").unwrap().bandwidth_out,
        5
    );
    // Running, but its bandwidth is already above 0.
    assert_eq!(
        code(
            &sim.call(&[
                ("InstanceId", "i-classic-public"),
                ("InternetMaxBandwidthOut", "20")
            ])
            .await
        ),
        (200, "<success>")
    );
    assert_eq!(
        code(
            &sim.call(&[
                ("InstanceId", "i-classic-public"),
                ("InternetMaxBandwidthOut", "20"),
                ("ISP", "BGP_PRO"),
            ])
            .await
        ),
        (403, "UnsupportedIspClassicNetwork")
    );
}

/// An EIP-bound VPC instance: bandwidth is not needed
/// (`InvalidInstance.InstanceNotSupported`), other changes wait for the EIP
/// to go (`InvalidInstance.EipNotSupport`), a temporary upgrade is refused
/// as such.
#[tokio::test]
async fn answers_eip_bound_instances_as_the_reference_does() {
    let sim = start(Config::demo()).await;
    type Case<'a> = (&'a [(&'a str, &'a str)], (u16, &'a str));
    let cases: &[Case] = &[
        (
            &[
                ("InstanceId", "i-demo-eip"),
                ("InternetMaxBandwidthOut", "5"),
            ],
            (403, "InvalidInstance.InstanceNotSupported"),
        ),
        (
            &[
                ("InstanceId", "i-demo-eip"),
                ("InternetMaxBandwidthIn", "5"),
            ],
            (403, "InvalidInstance.InstanceNotSupported"),
        ),
        (
            &[("InstanceId", "i-demo-eip"), ("AllocatePublicIp", "true")],
            (403, "InvalidInstance.EipNotSupport"),
        ),
        (
            &[
                ("InstanceId", "i-demo-eip"),
                ("NetworkChargeType", "PayByBandwidth"),
            ],
            (403, "InvalidInstance.EipNotSupport"),
        ),
    ];
    for (params, expected) in cases {
        assert_eq!(code(&sim.call(params).await), *expected, "{params:?}");
    }
}

/// OrderId comes back only when a subscription instance's bandwidth
/// configuration changes.
#[tokio::test]
async fn returns_an_order_only_for_a_subscriptions_bandwidth_change() {
    let sim = start(world()).await;
    let order = |answer: &(u16, serde_json::Value)| answer.1.get("OrderId").cloned();
    let changed = sim
        .call(&[
            ("InstanceId", "i-prepaid-5"),
            ("InternetMaxBandwidthOut", "8"),
        ])
        .await;
    assert_eq!(code(&changed), (200, "<success>"));
    assert!(order(&changed).is_some(), "{}", changed.1);
    let same = sim
        .call(&[
            ("InstanceId", "i-prepaid-5"),
            ("InternetMaxBandwidthOut", "8"),
        ])
        .await;
    assert_eq!(code(&same), (200, "<success>"));
    assert_eq!(order(&same), None, "nothing changed: {}", same.1);
    let ip_only = sim
        .call(&[("InstanceId", "i-prepaid-5"), ("AllocatePublicIp", "true")])
        .await;
    assert_eq!(code(&ip_only), (200, "<success>"));
    assert_eq!(order(&ip_only), None, "an IP is no bandwidth change");
    assert!(sim.sim.instance("i-prepaid-5").unwrap().public_ip.is_some());
}

/// A ClientToken used again: the first result with a RequestId of its own;
/// with other parameters, `IdempotentParameterMismatch`.
#[tokio::test]
async fn replays_a_client_token_with_a_new_request_id_and_checks_its_parameters() {
    let sim = start(Config::demo()).await;
    let params = [
        ("InstanceId", "i-demo-prepaid"),
        ("InternetMaxBandwidthOut", "10"),
        ("ClientToken", "token-1"),
    ];
    let first = sim.call(&params).await;
    let again = sim.call(&params).await;
    assert_eq!(code(&first), (200, "<success>"));
    assert_eq!(code(&again), (200, "<success>"));
    assert_ne!(first.1["RequestId"], again.1["RequestId"]);
    assert_eq!(first.1["OrderId"], again.1["OrderId"]);
    assert!(first.1["OrderId"].is_string());
    // ECS compares what it reads: AutoPay left out is AutoPay=true.
    let mut explicit = params.to_vec();
    explicit.push(("AutoPay", "true"));
    let same = sim.call(&explicit).await;
    assert_eq!(code(&same), (200, "<success>"), "{}", same.1);
    assert_eq!(same.1["OrderId"], first.1["OrderId"]);
    assert_eq!(sim.sim.applied("token-1"), 1);
    let other = sim
        .call(&[
            ("InstanceId", "i-demo-prepaid"),
            ("InternetMaxBandwidthOut", "20"),
            ("ClientToken", "token-1"),
        ])
        .await;
    assert_eq!(code(&other), (400, "IdempotentParameterMismatch"));
    assert_eq!(
        sim.sim.instance("i-demo-prepaid").unwrap().bandwidth_out,
        10
    );
}

/// `AutoPay=true` without the balance: ECS creates an abnormal order that
/// can only be cancelled, and the instance's later calls see it.
#[tokio::test]
async fn failed_automatic_payment_leaves_an_abnormal_order() {
    let sim = start(Config::demo()).await;
    sim.sim.update_account(|a| a.balance_insufficient = true);
    let raise = [
        ("InstanceId", "i-demo-prepaid"),
        ("InternetMaxBandwidthOut", "10"),
    ];
    assert_eq!(
        code(&sim.call(&raise).await),
        (403, "InvalidAccountStatus.NotEnoughBalance")
    );
    let instance = sim.sim.instance("i-demo-prepaid").unwrap();
    assert!(instance.abnormal_order.is_some());
    assert_eq!(instance.bandwidth_out, 0, "nothing applied");
    sim.sim.update_account(|a| a.balance_insufficient = false);
    assert_eq!(
        code(&sim.call(&raise).await),
        (403, "InvalidInstance.UnPaidOrder")
    );
    // Cancelled, the order no longer blocks the instance.
    sim.sim.cancel_orders("i-demo-prepaid");
    assert_eq!(code(&sim.call(&raise).await), (200, "<success>"));
    assert_eq!(
        sim.sim.instance("i-demo-prepaid").unwrap().bandwidth_out,
        10
    );
}

/// The pay-by-bandwidth quota is the account's in the instance's region,
/// whatever region (if any) the request names.
#[tokio::test]
async fn counts_the_bandwidth_quota_in_the_instances_region() {
    let mut config = Config::demo();
    config.account.bandwidth_quota = 150;
    let mut hog = Instance::new("i-shanghai-hog", "cn-shanghai", ChargeType::PostPaid);
    hog.bandwidth_out = 100;
    hog.network_charge_type = NetworkChargeType::PayByBandwidth;
    config.instances.push(hog);
    let sim = start(config).await;
    // No RegionId: the endpoint is regional and ECS needs none.
    let mut params: Vec<(String, String)> = [
        ("Action", "ModifyInstanceNetworkSpec"),
        ("InstanceId", "i-demo-postpaid"),
        ("InternetMaxBandwidthOut", "60"),
        ("NetworkChargeType", "PayByBandwidth"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    params.extend(common(DEMO_ACCESS_KEY_ID, "quota-1", Utc::now()));
    let answer = sim.send("POST", DEMO_ACCESS_KEY_SECRET, params).await;
    assert_eq!(code(&answer), (200, "<success>"), "{}", answer.1);
    // In its own region the quota still holds.
    let mut neighbour = Instance::new("i-hangzhou-hog", DEMO_REGION, ChargeType::PostPaid);
    neighbour.bandwidth_out = 100;
    neighbour.network_charge_type = NetworkChargeType::PayByBandwidth;
    sim.sim.put_instance(neighbour);
    assert_eq!(
        code(
            &sim.call(&[
                ("InstanceId", "i-demo-postpaid"),
                ("InternetMaxBandwidthOut", "70"),
            ])
            .await
        ),
        (400, "QuotaExceeded.InternetBandwidth")
    );
}
