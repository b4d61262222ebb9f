//! End to end: a real tonic client over TCP, the gateway, and the ECS
//! simulator verifying signatures and applying the reference's rules.

mod support;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use ecs_gateway::pb;
use ecs_gateway::simulator::{self, ChargeType, Fault, Instance, NetworkType, Status};
use support::{reason, request, start, start_with};
use tonic::Code;
use tonic_types::StatusExt;

fn out(instance_id: &str, mbps: i32) -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(mbps),
        ..request(instance_id)
    }
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// The next whole hour at least `hours` from now.
fn hour_from_now(hours: i64) -> DateTime<Utc> {
    let t = Utc::now() + TimeDelta::hours(hours + 1);
    t.with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap()
}

#[tokio::test]
async fn changes_a_pay_as_you_go_instance_without_an_order() {
    let h = start().await;
    let response = h.call(out("i-demo-postpaid", 10)).await.unwrap();
    assert_eq!(
        response.order_id, "",
        "pay-as-you-go instances have no order"
    );
    assert_eq!(response.request_id.len(), 36);
    assert_eq!(response.client_token.len(), 36, "the gateway made a token");
    let instance = h.sim.instance("i-demo-postpaid").unwrap();
    assert_eq!(
        (instance.bandwidth_out, instance.bandwidth_in),
        (10, 10),
        "default inbound applied"
    );
    assert_eq!(
        h.sim.applied(&support::ecs_token(&response.client_token)),
        1
    );
}

#[tokio::test]
async fn changes_a_subscription_instance_with_an_order_and_a_public_ip() {
    let h = start().await;
    assert!(
        h.sim
            .instance("i-demo-prepaid")
            .unwrap()
            .public_ip
            .is_none()
    );
    let response = h.call(out("i-demo-prepaid", 20)).await.unwrap();
    assert!(
        !response.order_id.is_empty(),
        "subscription instances get an order"
    );
    let instance = h.sim.instance("i-demo-prepaid").unwrap();
    assert_eq!((instance.bandwidth_out, instance.bandwidth_in), (20, 20));
    assert!(
        instance.public_ip.is_some(),
        "raised from 0: a public IP is allocated automatically"
    );
}

#[tokio::test]
async fn allocates_a_public_ip_for_pay_as_you_go_only_when_asked() {
    let h = start().await;
    h.call(out("i-demo-stopped", 5)).await.unwrap();
    assert!(
        h.sim
            .instance("i-demo-stopped")
            .unwrap()
            .public_ip
            .is_none()
    );
    let mut ask = request("i-demo-stopped");
    ask.allocate_public_ip = Some(true);
    h.call(ask).await.unwrap();
    assert!(
        h.sim
            .instance("i-demo-stopped")
            .unwrap()
            .public_ip
            .is_some()
    );
}

#[tokio::test]
async fn forwards_every_parameter() {
    let h = start().await;
    let start_time = hour_from_now(1) + TimeDelta::minutes(15);
    let end_time = hour_from_now(6);
    let mut temporary = out("i-demo-prepaid", 30);
    temporary.start_time = ts(start_time);
    temporary.end_time = ts(end_time);
    temporary.client_token = "temp-upgrade-1".into();
    let response = h.call(temporary).await.unwrap();
    assert_eq!(response.client_token, "temp-upgrade-1");
    let upgrade = h
        .sim
        .instance("i-demo-prepaid")
        .unwrap()
        .temporary_upgrade
        .unwrap();
    assert_eq!(
        (upgrade.start, upgrade.end, upgrade.bandwidth_out),
        (start_time, end_time, 30)
    );

    let mut convert = out("i-demo-postpaid", 50);
    convert.internet_max_bandwidth_in = Some(40);
    convert.network_charge_type = pb::NetworkChargeType::PayByBandwidth as i32;
    convert.auto_pay = Some(true);
    h.call(convert).await.unwrap();
    let instance = h.sim.instance("i-demo-postpaid").unwrap();
    assert_eq!((instance.bandwidth_out, instance.bandwidth_in), (50, 40));
    assert_eq!(
        instance.network_charge_type,
        simulator::NetworkChargeType::PayByBandwidth
    );
}

#[tokio::test]
async fn rejects_invalid_requests_before_sending_anything() {
    let h = start().await;
    type Edit = fn(&mut pb::ModifyInstanceNetworkSpecRequest);
    let cases: &[(Edit, &str, &str)] = &[
        (|r| r.region_id.clear(), "region_id", "MissingParameter"),
        (
            |r| r.region_id = "cn_hangzhou".into(),
            "region_id",
            "InvalidRegionId.Malformed",
        ),
        (|r| r.instance_id.clear(), "instance_id", "MissingParameter"),
        (
            |r| r.instance_id = "ins-1".into(),
            "instance_id",
            "InvalidInstanceId.Malformed",
        ),
        (
            |r| r.internet_max_bandwidth_out = Some(201),
            "internet_max_bandwidth_out",
            "InvalidInternetMaxBandwidthOut.ValueNotSupported",
        ),
        (
            |r| r.internet_max_bandwidth_out = Some(-5),
            "internet_max_bandwidth_out",
            "InvalidInternetMaxBandwidthOut.ValueNotSupported",
        ),
        (
            |r| {
                r.internet_max_bandwidth_out = Some(150);
                r.network_charge_type = 2
            },
            "internet_max_bandwidth_out",
            "InvalidInternetMaxBandwidthOut.ValueNotSupported",
        ),
        (
            |r| r.internet_max_bandwidth_in = Some(201),
            "internet_max_bandwidth_in",
            "InvalidInternetMaxBandwidthIn.ValueNotSupported",
        ),
        (
            |r| {
                r.internet_max_bandwidth_out = Some(30);
                r.internet_max_bandwidth_in = Some(31)
            },
            "internet_max_bandwidth_in",
            "InvalidInternetMaxBandwidthIn.ValueNotSupported",
        ),
        (
            |r| r.internet_max_bandwidth_in = Some(0),
            "internet_max_bandwidth_in",
            "InvalidInternetMaxBandwidthIn.ValueNotSupported",
        ),
        (
            |r| r.isp = "cmcc".into(),
            "isp",
            "InvalidIspType.ValueNotSupported",
        ),
        (
            |r| r.network_charge_type = 9,
            "network_charge_type",
            "InvalidInternetChargeType.ValueNotSupported",
        ),
        (
            |r| {
                r.internet_max_bandwidth_out = Some(0);
                r.allocate_public_ip = Some(true)
            },
            "allocate_public_ip",
            "InvalidParam.AllocatePublicIp",
        ),
        (
            |r| {
                r.start_time = ts(hour_from_now(1) + TimeDelta::seconds(30));
                r.end_time = ts(hour_from_now(5))
            },
            "start_time",
            "InvalidStartTime.ValueNotSupported",
        ),
        (
            |r| {
                r.start_time = ts(hour_from_now(1));
                r.end_time = ts(hour_from_now(5) + TimeDelta::minutes(30))
            },
            "end_time",
            "InvalidEndTime.ValueNotSupported",
        ),
        (
            |r| {
                r.start_time = ts(hour_from_now(1));
                r.end_time = ts(hour_from_now(3))
            },
            "end_time",
            "InvalidEndTime.ValueNotSupported",
        ),
        (
            |r| r.start_time = ts(hour_from_now(1)),
            "end_time",
            "InvalidParameter.Conflict",
        ),
        (
            |r| r.end_time = ts(hour_from_now(5)),
            "start_time",
            "InvalidParameter.Conflict",
        ),
        (
            |r| r.client_token = "x".repeat(65),
            "client_token",
            "InvalidClientToken.ValueNotSupported",
        ),
        (
            |r| r.client_token = "jeton-é".into(),
            "client_token",
            "InvalidClientToken.ValueNotSupported",
        ),
        (
            |r| {
                r.internet_max_bandwidth_in = None;
                r.internet_max_bandwidth_out = None
            },
            "internet_max_bandwidth_in",
            "MissingParameter",
        ),
    ];
    for (edit, field, code) in cases {
        let mut r = pb::ModifyInstanceNetworkSpecRequest {
            internet_max_bandwidth_in: Some(5),
            ..out("i-demo-postpaid", 10)
        };
        edit(&mut r);
        let status = h.call(r).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{field} {code}: {status:?}"
        );
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, *code, "{field}");
        assert_eq!(
            info.domain,
            if code.ends_with("Malformed") {
                "ecs-gateway"
            } else {
                "ecs.aliyuncs.com"
            }
        );
        let violation = &details.bad_request().unwrap().field_violations[0];
        // "Nothing to change" names the first field a caller could set.
        let expected_field = if *code == "MissingParameter" && *field == "internet_max_bandwidth_in"
        {
            "internet_max_bandwidth_out"
        } else {
            field
        };
        assert_eq!(
            (violation.field.as_str(), violation.reason.as_str()),
            (expected_field, *code)
        );
        assert!(!violation.description.is_empty());
    }
    assert_eq!(h.sim.calls(), 0, "no invalid request reached ECS");
}

#[tokio::test]
async fn reports_every_violation_at_once() {
    let h = start().await;
    let status = h
        .call(pb::ModifyInstanceNetworkSpecRequest {
            region_id: "x".into(),
            instance_id: String::new(),
            internet_max_bandwidth_out: Some(999),
            isp: "bgp".into(),
            client_token: "ü".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        support::violated_fields(&status),
        [
            "region_id",
            "instance_id",
            "internet_max_bandwidth_out",
            "isp",
            "client_token"
        ]
    );
    assert!(status.message().contains("region_id") && status.message().contains("client_token"));
}

/// A world with one instance per refusal the simulator knows.
fn refusing_world() -> simulator::Config {
    let mut world = simulator::Config::demo();
    let region = support::DEMO_REGION;
    let mut add = |id: &str, charge: ChargeType, edit: &dyn Fn(&mut Instance)| {
        let mut instance = Instance::new(id, region, charge);
        edit(&mut instance);
        world.instances.push(instance);
    };
    add("i-classic", ChargeType::PostPaid, &|i| {
        i.network_type = NetworkType::Classic
    });
    add("i-locked", ChargeType::PostPaid, &|i| {
        i.locked_for_security = true
    });
    add("i-expired", ChargeType::PrePaid, &|i| {
        i.expired_at = Some(Utc::now() - TimeDelta::days(1))
    });
    add("i-starting", ChargeType::PostPaid, &|i| {
        i.status = Status::Starting
    });
    add("i-prepaid-stopped", ChargeType::PrePaid, &|i| {
        i.status = Status::Stopped
    });
    add("i-expiring", ChargeType::PrePaid, &|i| {
        i.expired_at = Some(Utc::now() + TimeDelta::hours(4))
    });
    add("i-prepaid-big", ChargeType::PrePaid, &|i| {
        i.bandwidth_out = 50;
        i.network_charge_type = simulator::NetworkChargeType::PayByBandwidth;
    });
    add("i-prepaid-traffic", ChargeType::PrePaid, &|i| {
        i.network_charge_type = simulator::NetworkChargeType::PayByTraffic
    });
    add("i-downgraded", ChargeType::PrePaid, &|i| {
        i.bandwidth_out = 50;
        i.downgrades = 3;
    });
    add("i-bandwidth-hog", ChargeType::PostPaid, &|i| {
        i.bandwidth_out = 100;
        i.network_charge_type = simulator::NetworkChargeType::PayByBandwidth;
    });
    world.account.bandwidth_quota = 150;
    world
}

#[tokio::test]
async fn passes_on_every_refusal_of_the_simulator() {
    let h = start_with(refusing_world(), |_| {}).await;
    let temporary = |id: &str, mbps: i32, start: DateTime<Utc>, end: DateTime<Utc>| {
        let mut r = out(id, mbps);
        r.start_time = ts(start);
        r.end_time = ts(end);
        r
    };
    let now_minute = Utc::now()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let in_only = |id: &str, mbps: i32| pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_in: Some(mbps),
        ..request(id)
    };
    let allocate = |id: &str| pb::ModifyInstanceNetworkSpecRequest {
        allocate_public_ip: Some(true),
        ..request(id)
    };
    let cases: Vec<(pb::ModifyInstanceNetworkSpecRequest, Code, &str)> = vec![
        (
            out("i-nonexistent", 5),
            Code::NotFound,
            "InvalidInstanceId.NotFound",
        ),
        (
            out("i-demo-eip", 5),
            Code::FailedPrecondition,
            "InvalidInstance.InstanceNotSupported",
        ),
        (
            temporary("i-demo-eip", 5, hour_from_now(1), hour_from_now(5)),
            Code::FailedPrecondition,
            "BandwidthUpgradeDenied.EipBoundInstance",
        ),
        (
            allocate("i-demo-eip"),
            Code::FailedPrecondition,
            "InvalidInstance.EipNotSupport",
        ),
        (
            out("i-classic", 5),
            Code::FailedPrecondition,
            "InvalidInstanceStatus.NotStopped",
        ),
        (
            out("i-locked", 5),
            Code::FailedPrecondition,
            "InstanceLockedForSecurity",
        ),
        (
            out("i-expired", 5),
            Code::FailedPrecondition,
            "InstanceExpiredOrInArrears",
        ),
        (
            out("i-starting", 5),
            Code::FailedPrecondition,
            "InvalidOperation.InstanceStatusUnsupported",
        ),
        (
            out("i-demo-postpaid", 150),
            Code::InvalidArgument,
            "InvalidInternetMaxBandwidthOut.ValueNotSupported",
        ),
        (
            out("i-prepaid-traffic", 150),
            Code::InvalidArgument,
            "InvalidInternetMaxBandwidthOut.ValueNotSupported",
        ),
        (
            in_only("i-demo-postpaid", 20),
            Code::InvalidArgument,
            "InvalidInternetMaxBandwidthIn.ValueNotSupported",
        ),
        (
            allocate("i-demo-postpaid"),
            Code::InvalidArgument,
            "InvalidParam.AllocatePublicIp",
        ),
        (
            temporary("i-demo-postpaid", 20, hour_from_now(1), hour_from_now(5)),
            Code::FailedPrecondition,
            "ChargeTypeViolation",
        ),
        (
            temporary("i-prepaid-stopped", 20, hour_from_now(1), hour_from_now(5)),
            Code::FailedPrecondition,
            "IncorrectInstanceStatus",
        ),
        (
            temporary(
                "i-demo-prepaid",
                20,
                now_minute - TimeDelta::hours(2),
                hour_from_now(5),
            ),
            Code::InvalidArgument,
            "InvalidStartTime.ValueNotSupported",
        ),
        (
            temporary("i-expiring", 20, hour_from_now(1), hour_from_now(8)),
            Code::OutOfRange,
            "InvalidEndTime.BeyondLifeCycle",
        ),
        (
            temporary("i-expiring", 20, hour_from_now(6), hour_from_now(10)),
            Code::OutOfRange,
            "InvalidStartTime.BeyondLifeCycle",
        ),
        (
            temporary("i-prepaid-big", 20, hour_from_now(1), hour_from_now(5)),
            Code::FailedPrecondition,
            "InvalidBandwidth.ValueNotSupported",
        ),
        (
            out("i-downgraded", 10),
            Code::ResourceExhausted,
            "InstanceDowngrade.QuotaExceed",
        ),
        (
            pb::ModifyInstanceNetworkSpecRequest {
                network_charge_type: 1,
                ..out("i-demo-postpaid", 60)
            },
            Code::ResourceExhausted,
            "QuotaExceeded.InternetBandwidth",
        ),
    ];
    for (r, code, expected) in cases {
        let instance_id = r.instance_id.clone();
        let before = h.sim.instance(&instance_id);
        let status = h.call(r).await.unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (code, expected),
            "{instance_id}: {status:?}"
        );
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.domain, "ecs.aliyuncs.com");
        assert_eq!(
            info.metadata["request_id"].len(),
            36,
            "ECS's request id reaches the caller"
        );
        assert!(info.metadata["http_status"].starts_with('4'));
        assert_eq!(
            info.metadata["client_token"].len(),
            36,
            "the generated token is returned for a retry"
        );
        assert_eq!(
            h.sim.instance(&instance_id),
            before,
            "a refused call changes nothing"
        );
    }
}

#[tokio::test]
async fn passes_on_account_refusals() {
    let h = start().await;
    h.sim.update_account(|a| a.balance_insufficient = true);
    let status = h.call(out("i-demo-prepaid", 10)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (
            Code::FailedPrecondition,
            "InvalidAccountStatus.NotEnoughBalance"
        )
    );

    // The failed payment left an abnormal order, which blocks the instance
    // until it is cancelled.
    assert!(
        h.sim
            .instance("i-demo-prepaid")
            .unwrap()
            .abnormal_order
            .is_some()
    );
    let mut unpaid = out("i-demo-prepaid", 10);
    unpaid.auto_pay = Some(false);
    let status = h.call(unpaid).await.unwrap_err();
    assert_eq!(reason(&status), "InvalidInstance.UnPaidOrder");

    // Without automatic payment the order waits, unpaid, and blocks the next change.
    h.sim.put_instance(Instance::new(
        "i-prepaid-2",
        support::DEMO_REGION,
        ChargeType::PrePaid,
    ));
    let mut unpaid = out("i-prepaid-2", 10);
    unpaid.auto_pay = Some(false);
    let response = h.call(unpaid).await.unwrap();
    assert!(!response.order_id.is_empty());
    let instance = h.sim.instance("i-prepaid-2").unwrap();
    assert_eq!(
        instance.unpaid_order.as_deref(),
        Some(response.order_id.as_str())
    );
    assert_eq!(
        instance.bandwidth_out, 0,
        "the change waits for the payment"
    );
    let status = h.call(out("i-prepaid-2", 10)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::FailedPrecondition, "InvalidInstance.UnPaidOrder")
    );

    h.sim.update_account(|a| a.in_arrears = true);
    let status = h.call(out("i-demo-postpaid", 10)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::FailedPrecondition, "Account.Arrearage")
    );
}

#[tokio::test]
async fn throttling_reaches_the_caller_with_retry_info() {
    let mut world = simulator::Config::demo();
    world.throttle_per_second = Some(1);
    let h = start_with(world, |_| {}).await;
    h.call(out("i-demo-postpaid", 6)).await.unwrap();
    let status = h.call(out("i-demo-postpaid", 7)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "Throttling")
    );
    assert!(status.get_error_details().retry_info().is_some());
}

#[tokio::test]
async fn applies_a_repeated_client_token_once() {
    let h = start().await;
    let mut first = out("i-demo-prepaid", 20);
    first.client_token = "123e4567-e89b-12d3-a456-426655440000".into();
    let a = h.call(first.clone()).await.unwrap();
    let b = h.call(first.clone()).await.unwrap();
    // A repeat gets the first result, under a RequestId of its own.
    assert_eq!(
        (&a.order_id, &a.client_token),
        (&b.order_id, &b.client_token)
    );
    assert!(!a.order_id.is_empty());
    assert_ne!(a.request_id, b.request_id);
    // The same token with other parameters is a mistake ECS refuses.
    let mut changed = first;
    changed.internet_max_bandwidth_out = Some(40);
    let status = h.call(changed).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::InvalidArgument, "IdempotentParameterMismatch")
    );
    assert_eq!(
        h.sim
            .applied(&support::ecs_token("123e4567-e89b-12d3-a456-426655440000")),
        1
    );
    assert_eq!(h.sim.instance("i-demo-prepaid").unwrap().bandwidth_out, 20);
}

/// A gateway signing with `credentials`, forwarding to `endpoint`.
async fn spawn_signing_with(
    endpoint: &str,
    credentials: ecs_gateway::credentials::Credentials,
) -> support::Gateway {
    let mut config = support::config(endpoint);
    config.credentials = Some(ecs_gateway::credentials::Config::Static(credentials));
    support::spawn(config).await
}

#[tokio::test]
async fn a_gateway_with_a_wrong_secret_is_refused() {
    let sim = start().await;
    let mut credentials = support::demo_credentials();
    credentials.access_key_secret = ecs_gateway::credentials::Secret::new("wrong-secret");
    let h = spawn_signing_with(&sim.sim_url, credentials).await;
    let status = h.call(out("i-demo-postpaid", 10)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Internal, "SignatureDoesNotMatch")
    );
    assert!(
        !status.message().contains("string to sign"),
        "ECS's echo stays in the log: {}",
        status.message()
    );
    assert_eq!(
        sim.sim.instance("i-demo-postpaid").unwrap().bandwidth_out,
        5
    );

    let mut unknown = support::demo_credentials();
    unknown.access_key_id = "LTAIunknown".into();
    let h = spawn_signing_with(&sim.sim_url, unknown).await;
    let status = h.call(out("i-demo-postpaid", 10)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Internal, "InvalidAccessKeyId.NotFound")
    );
}

#[tokio::test]
async fn signs_with_sts_credentials() {
    let mut world = simulator::Config::demo();
    world.access_keys = vec![simulator::AccessKey {
        id: "STS.NUxyz".into(),
        secret: ecs_gateway::credentials::Secret::new("sts-secret"),
        security_token: Some(ecs_gateway::credentials::Secret::new("CAIS-token")),
        account: simulator::DEMO_ACCOUNT_ID.into(),
        expires: None,
    }];
    let credentials = ecs_gateway::credentials::Credentials {
        access_key_id: "STS.NUxyz".into(),
        access_key_secret: ecs_gateway::credentials::Secret::new("sts-secret"),
        security_token: Some(ecs_gateway::credentials::Secret::new("CAIS-token")),
    };
    let h = start_with(world, |c| {
        c.credentials = Some(ecs_gateway::credentials::Config::Static(credentials));
    })
    .await;
    h.call(out("i-demo-postpaid", 9)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = support::spawn(support::config(&format!("http://127.0.0.1:{port}"))).await;
    let status = h.call(out("i-demo-postpaid", 10)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "UpstreamUnavailable")
    );
    assert!(status.get_error_details().retry_info().is_some());
}

#[tokio::test]
async fn a_slow_endpoint_is_deadline_exceeded() {
    let h = start_with(simulator::Config::demo(), |c| {
        c.upstream.timeout = Duration::from_millis(200);
    })
    .await;
    h.sim.inject(Fault::Latency(Duration::from_secs(3)));
    let status = h.call(out("i-demo-postpaid", 10)).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::DeadlineExceeded, "UpstreamTimeout")
    );
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_upstream_call() {
    let h = start().await;
    h.sim.inject(Fault::Latency(Duration::from_secs(3)));
    let mut call = tonic::Request::new(out("i-demo-postpaid", 10));
    support::with_identity(&mut call, support::NETOPS);
    // The header alone, without a client-side timer, so that the answer
    // comes from the gateway.
    call.metadata_mut()
        .insert("grpc-timeout", "300m".parse().unwrap());
    let status = h
        .gateway
        .client
        .clone()
        .modify_instance_network_spec(call)
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::DeadlineExceeded, "UpstreamTimeout")
    );
    // The gateway's own answer (not the caller's timer, not the 3 s
    // upstream) proves it gave up with the caller.
    // A tenth of the 300 ms is kept back, counted from the call's arrival.
    let waited: f64 = status
        .message()
        .strip_prefix("ECS did not answer within ")
        .and_then(|rest| rest.strip_suffix("ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{}", status.message()));
    assert!((200.0..=270.0).contains(&waited), "{}", status.message());
}

#[tokio::test]
async fn unreadable_answers_are_unavailable() {
    // One attempt: tests/resilience.rs covers the retries.
    let h = start_with(simulator::Config::demo(), |c| c.upstream.max_attempts = 1).await;
    h.sim.inject(Fault::Garbage);
    h.sim.inject(Fault::HttpStatus(502));
    for _ in 0..2 {
        let status = h.call(out("i-demo-postpaid", 10)).await.unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unavailable, "UpstreamInvalidResponse")
        );
    }
}

#[tokio::test]
async fn one_callers_client_token_never_replays_another_callers_change() {
    let h = start().await;
    let mut netops = out("i-demo-postpaid", 9);
    netops.client_token = "shared-token".into();
    let a = h.call(netops).await.unwrap();
    // webapp picks the same token for its own change: it must get its own
    // change, not netops' answer (RequestId) replayed.
    let mut webapp = out("i-demo-postpaid", 8);
    webapp.client_token = "shared-token".into();
    let b = h.call_as(support::WEBAPP, webapp).await.unwrap();
    assert_ne!(a.request_id, b.request_id, "not a replay of netops' answer");
    assert_eq!(
        b.client_token, "shared-token",
        "the caller's own token back"
    );
    assert_eq!(h.sim.instance("i-demo-postpaid").unwrap().bandwidth_out, 8);
    assert_eq!(h.sim.applied(&support::ecs_token("shared-token")), 1);
    assert_eq!(
        h.sim.applied(&ecs_gateway::upstream::ecs_client_token(
            support::WEBAPP,
            None,
            "shared-token"
        )),
        1
    );
    assert_eq!(h.sim.applied("shared-token"), 0, "ECS never sees it raw");
}
