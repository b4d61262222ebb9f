//! Every documented rule, one case per row: the request, then the expected
//! (field, code) pairs.

use super::*;

fn valid() -> pb::ModifyInstanceNetworkSpecRequest {
    pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: "i-bp67acfmxazb4ph3abcd".into(),
        internet_max_bandwidth_out: Some(10),
        ..Default::default()
    }
}

fn ts(rfc3339: &str) -> Option<prost_types::Timestamp> {
    let t = DateTime::parse_from_rfc3339(rfc3339).unwrap();
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap(),
    })
}

fn violations(request: pb::ModifyInstanceNetworkSpecRequest) -> Vec<(&'static str, &'static str)> {
    match modify_request(request) {
        Ok(_) => vec![],
        Err(rejection) => rejection
            .violations
            .iter()
            .map(|v| match v.field {
                std::borrow::Cow::Borrowed(field) => (field, v.code),
                std::borrow::Cow::Owned(_) => unreachable!("a call's fields are named statically"),
            })
            .collect(),
    }
}

type Case = (
    &'static str,
    fn(&mut pb::ModifyInstanceNetworkSpecRequest),
    &'static [(&'static str, &'static str)],
);

const OUT: &str = "InvalidInternetMaxBandwidthOut.ValueNotSupported";
const IN: &str = "InvalidInternetMaxBandwidthIn.ValueNotSupported";
const START: &str = "InvalidStartTime.ValueNotSupported";
const END: &str = "InvalidEndTime.ValueNotSupported";
const CONFLICT: &str = "InvalidParameter.Conflict";
const TOKEN: &str = "InvalidClientToken.ValueNotSupported";

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("valid baseline", |_| {}, &[]),
    ("region required", |r| r.region_id.clear(), &[("region_id", "MissingParameter")]),
    ("region malformed: upper case", |r| r.region_id = "CN-hangzhou".into(), &[("region_id", "InvalidRegionId.Malformed")]),
    ("region malformed: one part", |r| r.region_id = "hangzhou".into(), &[("region_id", "InvalidRegionId.Malformed")]),
    ("region malformed: host injection", |r| r.region_id = "cn-hangzhou.evil.com/".into(), &[("region_id", "InvalidRegionId.Malformed")]),
    ("region with digits", |r| r.region_id = "ap-southeast-1".into(), &[]),
    ("region with three parts", |r| r.region_id = "cn-shanghai-finance-1".into(), &[]),
    ("instance required", |r| r.instance_id.clear(), &[("instance_id", "MissingParameter")]),
    ("instance malformed: prefix", |r| r.instance_id = "bp67acfmxazb4".into(), &[("instance_id", "InvalidInstanceId.Malformed")]),
    ("instance malformed: masked", |r| r.instance_id = "i-bp67acfmxazb4****".into(), &[("instance_id", "InvalidInstanceId.Malformed")]),
    ("instance malformed: empty suffix", |r| r.instance_id = "i-".into(), &[("instance_id", "InvalidInstanceId.Malformed")]),
    ("instance malformed: too long", |r| r.instance_id = format!("i-{}", "a".repeat(63)), &[("instance_id", "InvalidInstanceId.Malformed")]),
    ("instance longest", |r| r.instance_id = format!("i-{}", "a".repeat(62)), &[]),
    ("out 0", |r| r.internet_max_bandwidth_out = Some(0), &[]),
    ("out 200", |r| r.internet_max_bandwidth_out = Some(200), &[]),
    ("out 201", |r| r.internet_max_bandwidth_out = Some(201), &[("internet_max_bandwidth_out", OUT)]),
    ("out negative", |r| r.internet_max_bandwidth_out = Some(-1), &[("internet_max_bandwidth_out", OUT)]),
    ("out 100 pay-by-traffic", |r| { r.internet_max_bandwidth_out = Some(100); r.network_charge_type = 2 }, &[]),
    ("out 101 pay-by-traffic", |r| { r.internet_max_bandwidth_out = Some(101); r.network_charge_type = 2 }, &[("internet_max_bandwidth_out", OUT)]),
    ("out 101 pay-by-bandwidth", |r| { r.internet_max_bandwidth_out = Some(101); r.network_charge_type = 1 }, &[]),
    ("in 10 with out 5", |r| { r.internet_max_bandwidth_out = Some(5); r.internet_max_bandwidth_in = Some(10) }, &[]),
    ("in 11 with out 5", |r| { r.internet_max_bandwidth_out = Some(5); r.internet_max_bandwidth_in = Some(11) }, &[("internet_max_bandwidth_in", IN)]),
    ("in 0", |r| r.internet_max_bandwidth_in = Some(0), &[("internet_max_bandwidth_in", IN)]),
    ("in 50 with out 50", |r| { r.internet_max_bandwidth_out = Some(50); r.internet_max_bandwidth_in = Some(50) }, &[]),
    ("in 51 with out 50", |r| { r.internet_max_bandwidth_out = Some(50); r.internet_max_bandwidth_in = Some(51) }, &[("internet_max_bandwidth_in", IN)]),
    ("in alone 200", |r| { r.internet_max_bandwidth_out = None; r.internet_max_bandwidth_in = Some(200) }, &[]),
    ("in alone 201", |r| { r.internet_max_bandwidth_out = None; r.internet_max_bandwidth_in = Some(201) }, &[("internet_max_bandwidth_in", IN)]),
    ("isp rejected", |r| r.isp = "cmcc".into(), &[("isp", "InvalidIspType.ValueNotSupported")]),
    ("unknown charge type", |r| r.network_charge_type = 7, &[("network_charge_type", "InvalidInternetChargeType.ValueNotSupported")]),
    ("charge type alone", |r| { r.internet_max_bandwidth_out = None; r.network_charge_type = 1 }, &[]),
    ("allocate with out 0", |r| { r.internet_max_bandwidth_out = Some(0); r.allocate_public_ip = Some(true) }, &[("allocate_public_ip", "InvalidParam.AllocatePublicIp")]),
    ("allocate alone", |r| { r.internet_max_bandwidth_out = None; r.allocate_public_ip = Some(true) }, &[]),
    ("nothing to change", |r| r.internet_max_bandwidth_out = None, &[("internet_max_bandwidth_out", "MissingParameter")]),
    ("temporary upgrade", |r| { r.start_time = ts("2030-01-01T10:15:00Z"); r.end_time = ts("2030-01-01T14:00:00Z") }, &[]),
    ("temporary exactly 3 hours", |r| { r.start_time = ts("2030-01-01T10:00:00Z"); r.end_time = ts("2030-01-01T13:00:00Z") }, &[]),
    ("temporary under 3 hours", |r| { r.start_time = ts("2030-01-01T10:01:00Z"); r.end_time = ts("2030-01-01T13:00:00Z") }, &[("end_time", END)]),
    ("temporary end before start", |r| { r.start_time = ts("2030-01-01T10:00:00Z"); r.end_time = ts("2030-01-01T09:00:00Z") }, &[("end_time", END)]),
    ("start with seconds", |r| { r.start_time = ts("2030-01-01T10:15:30Z"); r.end_time = ts("2030-01-01T14:00:00Z") }, &[("start_time", START)]),
    ("start with nanos", |r| { r.start_time = ts("2030-01-01T10:15:00.5Z"); r.end_time = ts("2030-01-01T14:00:00Z") }, &[("start_time", START)]),
    ("end with minutes", |r| { r.start_time = ts("2030-01-01T10:00:00Z"); r.end_time = ts("2030-01-01T14:30:00Z") }, &[("end_time", END)]),
    ("start out of range", |r| { r.start_time = Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }); r.end_time = ts("2030-01-01T14:00:00Z") }, &[("start_time", START)]),
    ("end negative nanos", |r| { r.start_time = ts("2030-01-01T10:00:00Z"); r.end_time = Some(prost_types::Timestamp { seconds: 1_893_492_000, nanos: -1 }) }, &[("end_time", END)]),
    ("start without end", |r| r.start_time = ts("2030-01-01T10:00:00Z"), &[("end_time", CONFLICT)]),
    ("end without start", |r| r.end_time = ts("2030-01-01T14:00:00Z"), &[("start_time", CONFLICT)]),
    ("temporary without out", |r| { r.internet_max_bandwidth_out = None; r.internet_max_bandwidth_in = Some(5); r.start_time = ts("2030-01-01T10:00:00Z"); r.end_time = ts("2030-01-01T14:00:00Z") }, &[("internet_max_bandwidth_out", CONFLICT)]),
    ("token 64 ASCII", |r| r.client_token = "t".repeat(64), &[]),
    ("token 65", |r| r.client_token = "t".repeat(65), &[("client_token", TOKEN)]),
    ("token non-ASCII", |r| r.client_token = "tök".into(), &[("client_token", TOKEN)]),
    ("every field wrong at once", |r| {
        r.region_id.clear();
        r.instance_id = "x".into();
        r.internet_max_bandwidth_out = Some(500);
        r.internet_max_bandwidth_in = Some(0);
        r.isp = "bgp".into();
        r.client_token = "é".into();
    }, &[
        ("region_id", "MissingParameter"),
        ("instance_id", "InvalidInstanceId.Malformed"),
        ("internet_max_bandwidth_out", OUT),
        ("internet_max_bandwidth_in", IN),
        ("isp", "InvalidIspType.ValueNotSupported"),
        ("client_token", TOKEN),
    ]),
];

#[test]
fn applies_every_documented_rule() {
    for (name, edit, expected) in CASES {
        let mut request = valid();
        edit(&mut request);
        assert_eq!(violations(request), *expected, "case: {name}");
    }
}

#[test]
fn every_violation_code_is_in_the_catalogue() {
    for (_, _, expected) in CASES {
        for (_, code) in *expected {
            let entry = crate::error::catalogue::get(code);
            assert_eq!(entry.grpc, tonic::Code::InvalidArgument, "{code}");
        }
    }
}

#[test]
fn generates_a_client_token_when_none_is_sent() {
    let a = modify_request(valid()).unwrap();
    let b = modify_request(valid()).unwrap();
    assert!(a.client_token.generated);
    assert_eq!(a.client_token.value.len(), 36);
    assert_ne!(a.client_token.value, b.client_token.value);

    let mut request = valid();
    request.client_token = "mine".into();
    let c = modify_request(request).unwrap();
    assert_eq!(
        c.client_token,
        ClientToken {
            value: "mine".into(),
            generated: false
        }
    );
}

#[test]
fn applies_documented_inbound_defaults() {
    let with_out = |out: i32| {
        let mut r = valid();
        r.internet_max_bandwidth_out = Some(out);
        modify_request(r).unwrap().effective_bandwidth_in()
    };
    assert_eq!(with_out(0), Some(10));
    assert_eq!(with_out(10), Some(10));
    assert_eq!(with_out(11), Some(11));
    assert_eq!(with_out(150), Some(150));
    let mut r = valid();
    r.internet_max_bandwidth_out = None;
    r.network_charge_type = 1;
    assert_eq!(modify_request(r).unwrap().effective_bandwidth_in(), None);
}

#[test]
fn keeps_typed_values() {
    let mut r = valid();
    r.network_charge_type = 2;
    r.allocate_public_ip = Some(true);
    r.auto_pay = Some(false);
    r.start_time = ts("2030-01-01T10:15:00Z");
    r.end_time = ts("2030-01-01T14:00:00Z");
    let v = modify_request(r).unwrap();
    assert_eq!(v.network_charge_type, Some(NetworkChargeType::PayByTraffic));
    assert_eq!(v.bandwidth_out, Some(10));
    assert_eq!(v.allocate_public_ip, Some(true));
    assert_eq!(v.auto_pay, Some(false));
    let t = v.temporary.unwrap();
    assert_eq!(t.start.to_rfc3339(), "2030-01-01T10:15:00+00:00");
    assert_eq!(t.end.to_rfc3339(), "2030-01-01T14:00:00+00:00");
}
