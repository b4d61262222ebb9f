//! Entry points for the fuzz targets under `fuzz/` and for their regression
//! inputs (`tests/fuzz_regressions.rs`, run in CI). Each takes arbitrary
//! bytes and must never panic; where a property holds for every input, it is
//! asserted.

use std::path::Path;
use std::sync::OnceLock;

use crate::{credentials, pb, sign, simulator, upstream, validate as validation};

/// The request validator, from arbitrary protobuf bytes.
pub fn validate(data: &[u8]) {
    if let Ok(request) = <pb::ModifyInstanceNetworkSpecRequest as prost::Message>::decode(data) {
        let _ = validation::modify_request(request);
    }
}

/// The Explain request validator (the call's rules, the simulated
/// identity's grammar, the source address), from arbitrary protobuf bytes:
/// what it accepts is a valid call and a SPIFFE ID or JWT claims without
/// control or invisible characters.
pub fn explain(data: &[u8]) {
    if let Ok(request) = <pb::ExplainRequest as prost::Message>::decode(data)
        && let Ok(explain) = validation::explain_request(request)
    {
        match &explain.identity {
            Some(crate::identity::CallerId::Spiffe(id)) => {
                assert!(validation::explain::spiffe_id_problem(id).is_none());
                assert!(id.is_ascii() && !id.contains(['?', '#', '%']), "{id:?}");
            }
            Some(crate::identity::CallerId::Jwt { issuer, subject }) => {
                assert!(!issuer.is_empty() && !subject.is_empty());
                assert!(!issuer.chars().chain(subject.chars()).any(char::is_control));
            }
            None => {}
        }
    }
}

/// Canonicalization: any parameters sign and verify, and encoding keeps to
/// RFC 3986's unreserved set.
pub fn canonical_query(data: &[u8]) {
    let params: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let query = sign::canonical_query(&params);
    let string_to_sign = sign::string_to_sign("POST", &query);
    let signature = sign::signature("fuzz-secret", &string_to_sign);
    assert!(sign::verify("fuzz-secret", &string_to_sign, &signature));
    let text = String::from_utf8_lossy(data);
    assert!(
        sign::percent_encode(&text)
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b))
    );
}

/// The simulator's authentication of an arbitrary POST body.
pub fn simulator_auth(data: &[u8]) {
    static SIMULATOR: OnceLock<simulator::Simulator> = OnceLock::new();
    let sim = SIMULATOR.get_or_init(|| simulator::Simulator::new(simulator::Config::demo()));
    let _ = sim.authenticate(&http::Method::POST, b"", data);
}

/// ECS answer parsing, as success and as error.
pub fn error_body(data: &[u8]) {
    for status in [200, 400, 403, 404, 500, 503] {
        let _ = upstream::parse_response(status, data);
        let _ = upstream::describe::parse(status, data, "cn-hangzhou", "i-abc");
    }
}

/// The answers of the credentials servers: STS's (`AssumeRole`,
/// `AssumeRoleWithOIDC`) and the `{Code, AccessKeyId, …}` of the metadata
/// server and a credentials URI. Never panics; an STS refusal's message is
/// bounded whatever STS sends, and never holds what the body calls a secret.
pub fn credential_answers(data: &[u8]) {
    for status in [200, 400, 401, 403, 404, 500] {
        if let Err(error) = credentials::sts::parse_answer(
            "AssumeRole",
            "https://sts.aliyuncs.com",
            status,
            data,
            "acs:ram::1234567890123456:role/r",
        ) {
            let shown = error.to_string();
            assert!(
                shown.len() <= 1024,
                "an unbounded message: {} bytes",
                shown.len()
            );
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
                for secret in ["AccessKeySecret", "SecurityToken"] {
                    if let Some(value) = body["Credentials"][secret].as_str()
                        && value.len() >= 8
                    {
                        assert!(!shown.contains(value), "{secret} in {shown}");
                    }
                }
            }
        }
    }
    let _ = credentials::parse_coded(data, None);
}

/// The credentials INI parser.
pub fn credentials_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = credentials::parse_file(text, Path::new("fuzz"), "default");
    }
}

/// The `x-forwarded-client-cert` parser: never panics; what it parses
/// writes back to the same elements; the caller is the one SPIFFE ID among
/// the `URI=` pairs of the last element; and text a caller puts before the element a
/// sidecar appends can never change that element.
pub fn xfcc(data: &[u8]) {
    use crate::identity::xfcc;
    let parsed = xfcc::parse(data);
    if let Ok(elements) = &parsed {
        let again = xfcc::parse(xfcc::format(elements).as_bytes());
        assert_eq!(again.as_ref(), Ok(elements), "format then parse");
    }
    if let Ok(uri) = xfcc::caller_uri(data) {
        let last = parsed.as_ref().ok().and_then(|e| e.last());
        let ids: Vec<&str> = last
            .into_iter()
            .flatten()
            .filter(|p| p.key.eq_ignore_ascii_case("uri") && p.value.starts_with("spiffe://"))
            .map(|p| p.value.as_str())
            .collect();
        assert_eq!(
            ids,
            [uri.as_str()],
            "the caller is the one SPIFFE ID among the last element's URI= pairs"
        );
    }
    let sidecar = vec![
        xfcc::Pair {
            key: "By".into(),
            value: "spiffe://mesh.local/sa/gateway".into(),
        },
        xfcc::Pair {
            key: "Hash".into(),
            value: "0a1b2c".into(),
        },
        xfcc::Pair {
            key: "Subject".into(),
            value: "CN=webapp,O=\"demo\"".into(),
        },
        xfcc::Pair {
            key: "URI".into(),
            value: "spiffe://demo.local/sa/webapp".into(),
        },
    ];
    let mut header = data.to_vec();
    header.push(b',');
    header.extend_from_slice(xfcc::format(std::slice::from_ref(&sidecar)).as_bytes());
    if let Ok(elements) = xfcc::parse(&header) {
        assert_eq!(
            elements.last(),
            Some(&sidecar),
            "the sidecar's element is intact"
        );
    }
}
