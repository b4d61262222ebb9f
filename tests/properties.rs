//! Property tests: whatever the input, the validator answers without
//! panicking, every request the gateway signs verifies exactly as the
//! simulator (and ECS) checks it, and percent-encoding round-trips.

use ecs_gateway::credentials::{Credentials, Secret};
use ecs_gateway::{pb, sign, upstream, validate};
use proptest::prelude::*;

fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    proptest::option::of(
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
}

prop_compose! {
    fn any_request()(
        region_id in ".{0,40}",
        instance_id in ".{0,80}",
        out in proptest::option::of(any::<i32>()),
        inb in proptest::option::of(any::<i32>()),
        isp in ".{0,5}",
        charge in any::<i32>(),
        allocate in proptest::option::of(any::<bool>()),
        start in timestamp(),
        end in timestamp(),
        auto_pay in proptest::option::of(any::<bool>()),
        client_token in ".{0,80}",
        account_id in "([0-9]{1,40}|.{0,5})",
    ) -> pb::ModifyInstanceNetworkSpecRequest {
        pb::ModifyInstanceNetworkSpecRequest {
            region_id, instance_id,
            internet_max_bandwidth_out: out, internet_max_bandwidth_in: inb,
            isp, network_charge_type: charge, allocate_public_ip: allocate,
            start_time: start, end_time: end, auto_pay, client_token, account_id,
        }
    }
}

prop_compose! {
    /// Requests that pass validation: realistic values in the valid ranges.
    fn valid_request()(
        region in "(cn|ap|us|eu)-[a-z]{3,10}(-[0-9])?",
        instance in "i-[a-z0-9]{1,20}",
        out in 0i32..=100,
        extra_in in 0i32..=10,
        charge in 0i32..=2,
        allocate in any::<bool>(),
        token in "[ -~]{0,64}",
    ) -> pb::ModifyInstanceNetworkSpecRequest {
        pb::ModifyInstanceNetworkSpecRequest {
            region_id: region,
            instance_id: instance,
            internet_max_bandwidth_out: Some(out.max(1)),
            internet_max_bandwidth_in: Some((out.clamp(1, 10) - extra_in).max(1)),
            network_charge_type: charge,
            allocate_public_ip: Some(allocate),
            client_token: token,
            ..Default::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_validator_never_panics(request in any_request()) {
        let _ = validate::modify_request(request);
    }

    #[test]
    fn the_validator_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(request) = <pb::ModifyInstanceNetworkSpecRequest as prost::Message>::decode(bytes.as_slice()) {
            let _ = validate::modify_request(request);
        }
    }

    #[test]
    fn every_violation_names_a_field_and_a_catalogued_code(request in any_request()) {
        if let Err(rejection) = validate::modify_request(request) {
            prop_assert!(!rejection.violations.is_empty());
            for v in &rejection.violations {
                prop_assert!(ecs_gateway::error::catalogue::CATALOGUE.iter().any(|e| e.code == v.code), "{}", v.code);
                prop_assert!(!v.description.is_empty());
            }
        }
    }

    #[test]
    fn a_signed_request_always_verifies(
        request in valid_request(),
        secret in ".{1,40}",
        token in proptest::option::of("[A-Za-z0-9+/=]{1,60}"),
        nonce in "[a-f0-9-]{1,36}",
    ) {
        let request = validate::modify_request(request).unwrap();
        let credentials = Credentials {
            access_key_id: "LTAI-prop".into(),
            access_key_secret: Secret::new(secret.clone()),
            security_token: token.map(Secret::new),
        };
        let body = upstream::signed_body(&request, &credentials, &nonce, chrono::Utc::now());
        // What the simulator does with a POST body.
        let mut params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        let at = params.iter().position(|(k, _)| k == "Signature").unwrap();
        let (_, claimed) = params.remove(at);
        let string_to_sign = sign::string_to_sign("POST", &sign::canonical_query(&params));
        prop_assert!(sign::verify(&secret, &string_to_sign, &claimed));
        let wrong = format!("{}x", secret);
        prop_assert!(!sign::verify(&wrong, &string_to_sign, &claimed));
    }

    #[test]
    fn percent_encoding_round_trips(value in ".*") {
        let encoded = sign::percent_encode(&value);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
        let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
        prop_assert_eq!(decoded, value);
    }

    #[test]
    fn error_bodies_never_panic(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = upstream::parse_response(status, &body);
    }
}

/// The simulator itself checks what the gateway signs: over real HTTP, no
/// generated request meets a signature error (it may well meet another
/// refusal, such as an unknown instance).
#[test]
fn the_simulator_accepts_every_signature_the_gateway_makes() {
    use ecs_gateway::simulator::{self, Simulator};
    use proptest::test_runner::{Config, TestRunner};
    use std::sync::Arc;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (url, http) = runtime.block_on(async {
        ecs_gateway::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            Simulator::new(simulator::Config::demo()).serve(listener, std::future::pending()),
        );
        (url, reqwest::Client::new())
    });
    let credentials = Arc::new(Credentials {
        access_key_id: simulator::DEMO_ACCESS_KEY_ID.into(),
        access_key_secret: Secret::new(simulator::DEMO_ACCESS_KEY_SECRET),
        security_token: None,
    });
    let mut runner = TestRunner::new(Config {
        cases: 128,
        ..Config::default()
    });
    runner
        .run(&(valid_request(), "[a-f0-9]{8,36}"), |(request, nonce)| {
            let request = validate::modify_request(request).unwrap();
            let body = upstream::signed_body(&request, &credentials, &nonce, chrono::Utc::now());
            let (status, answer) = runtime.block_on(async {
                let response = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            });
            let code = serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["Code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            prop_assert!(
                ![
                    "SignatureDoesNotMatch",
                    "IncompleteSignature",
                    "MissingParameter"
                ]
                .contains(&code.as_str()),
                "HTTP {status} {answer}"
            );
            Ok(())
        })
        .unwrap();
}

mod xfcc {
    use ecs_gateway::identity::xfcc::{self, Element, Pair};
    use proptest::prelude::*;

    /// Pairs as a sidecar writes them: any key, any printable value
    /// (quotes, backslashes, commas and semicolons included).
    fn element() -> impl Strategy<Value = Element> {
        proptest::collection::vec(
            ("[A-Za-z][A-Za-z0-9_-]{0,7}", "[ -~]{0,24}")
                .prop_map(|(key, value)| Pair { key, value }),
            1..5,
        )
    }

    /// Text a caller controls: biased towards the grammar's own bytes.
    fn caller_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("\"".to_owned()),
                Just("\\".to_owned()),
                Just(",".to_owned()),
                Just(";".to_owned()),
                Just("=".to_owned()),
                Just("URI=spiffe://demo.local/sa/netops".to_owned()),
                Just("Subject=\"".to_owned()),
                "[ -~]{0,6}",
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_inverts_format(elements in proptest::collection::vec(element(), 1..4)) {
            let header = xfcc::format(&elements);
            prop_assert_eq!(xfcc::parse(header.as_bytes()), Ok(elements));
        }

        /// No input yields a URI that is not the value of a `URI=` pair of
        /// the last element the sidecar wrote.
        #[test]
        fn caller_text_never_changes_the_sidecars_element(
            forged in caller_text(),
            mut sidecar in element(),
            uri in "spiffe://[a-z]{1,8}/[a-z/]{0,12}",
        ) {
            sidecar.retain(|p| !p.key.eq_ignore_ascii_case("uri"));
            sidecar.push(Pair { key: "URI".into(), value: uri.clone() });
            let header = format!("{forged},{}", xfcc::format(std::slice::from_ref(&sidecar)));
            if let Ok(elements) = xfcc::parse(header.as_bytes()) {
                prop_assert_eq!(elements.last(), Some(&sidecar));
            }
            if let Ok(got) = xfcc::caller_uri(header.as_bytes()) {
                prop_assert_eq!(got, uri);
            }
        }

        /// Whatever the bytes, the caller comes only from the one SPIFFE ID
        /// among the last element's `URI=` pairs.
        #[test]
        fn a_uri_comes_only_from_the_last_elements_uri_pair(text in caller_text()) {
            ecs_gateway::fuzzing::xfcc(text.as_bytes());
        }
    }
}
