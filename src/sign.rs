//! Alibaba Cloud RPC signature V1 (HMAC-SHA1, `SignatureVersion=1.0`) as pure
//! functions. The gateway signs every upstream call with them and the ECS
//! simulator verifies with the same canonical form, so a request the gateway
//! signs is exactly what ECS checks.
//!
//! The algorithm (<https://www.alibabacloud.com/help/en/sdk/product-overview/rpc-mechanism>):
//! 1. percent-encode every parameter name and value with RFC 3986's unreserved
//!    set (`A-Z a-z 0-9 - _ . ~` stay, everything else is `%XX` of its UTF-8
//!    bytes, so a space is `%20`, `*` is `%2A` and `~` stays `~`);
//! 2. sort the parameters by name and join them as `name=value` with `&`
//!    (the canonicalized query);
//! 3. `StringToSign = METHOD & pe("/") & pe(canonicalized query)`;
//! 4. `Signature = base64(HMAC-SHA1(key = secret + "&", StringToSign))`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

/// The signature method this module implements.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// The signature version this module implements.
pub const SIGNATURE_VERSION: &str = "1.0";
/// Timestamp format of the `Timestamp` common parameter (ISO 8601, UTC).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// RFC 3986 reserves everything but `A-Z a-z 0-9 - _ . ~`.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `value` as Alibaba Cloud's signature requires (RFC 3986).
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, RFC3986).to_string()
}

/// Appends the percent-encoded `value` to `out`, without an intermediate string.
fn push_encoded(out: &mut String, value: &str) {
    for chunk in utf8_percent_encode(value, RFC3986) {
        out.push_str(chunk);
    }
}

/// Builds the canonicalized query: parameters sorted by name, names and
/// values percent-encoded, joined as `name=value` with `&`.
///
/// Parameter names are ASCII, so sorting the raw names gives the same order as
/// sorting the encoded ones. Two parameters never share a name in a request.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut order: Vec<&(K, V)> = params.iter().collect();
    order.sort_unstable_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let len: usize = params
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() * 3 + 2)
        .sum();
    let mut out = String::with_capacity(len);
    for (i, (name, value)) in order.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push_encoded(&mut out, name.as_ref());
        out.push('=');
        push_encoded(&mut out, value.as_ref());
    }
    out
}

/// Builds `StringToSign = METHOD&%2F&pe(canonical_query)`.
pub fn string_to_sign(method: &str, canonical_query: &str) -> String {
    let mut out = String::with_capacity(method.len() + 5 + canonical_query.len() * 3 / 2);
    out.push_str(method);
    out.push_str("&%2F&");
    push_encoded(&mut out, canonical_query);
    out
}

/// HMAC-SHA1 keyed with `secret + "&"`.
fn mac(secret: &str) -> Hmac<Sha1> {
    let mut key = Vec::with_capacity(secret.len() + 1);
    key.extend_from_slice(secret.as_bytes());
    key.push(b'&');
    <Hmac<Sha1> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// Computes `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = mac(secret);
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Checks `claimed` against the signature of `string_to_sign` in constant
/// time, as a verifier must (a timing difference would leak the signature).
pub fn verify(secret: &str, string_to_sign: &str, claimed: &str) -> bool {
    let Ok(claimed) = BASE64.decode(claimed) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&claimed).is_ok()
}

/// Signs `params` (the action's parameters and the common parameters, without
/// `Signature`) and returns the full encoded query or form body, `Signature`
/// appended.
pub fn signed_query<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    secret: &str,
    params: &[(K, V)],
) -> String {
    let mut query = canonical_query(params);
    let signature = signature(secret, &string_to_sign(method, &query));
    query.push_str("&Signature=");
    push_encoded(&mut query, &signature);
    query
}

/// The key an RPC call is signed with: its AccessKey ID, secret and, for a
/// temporary (STS) key, its security token.
#[derive(Clone, Copy)]
pub struct Key<'a> {
    /// The AccessKey ID.
    pub id: &'a str,
    /// The AccessKey secret.
    pub secret: &'a str,
    /// The STS security token, sent as `SecurityToken`.
    pub security_token: Option<&'a str>,
}

/// The signed `POST` form body of an RPC call to any product (ECS, STS):
/// the action's `params`, the common parameters (`Format=JSON`, `Version`,
/// the key, the signature method and version, `SignatureNonce`,
/// `Timestamp`, `SecurityToken` for a temporary key) and `Signature`.
pub fn signed_rpc_body<'a>(
    mut params: Vec<(&'static str, std::borrow::Cow<'a, str>)>,
    version: &'static str,
    key: Key<'a>,
    nonce: &'a str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let timestamp = now.format(TIMESTAMP_FORMAT).to_string();
    params.extend([
        ("Format", "JSON".into()),
        ("Version", version.into()),
        ("AccessKeyId", key.id.into()),
        ("SignatureMethod", SIGNATURE_METHOD.into()),
        ("SignatureVersion", SIGNATURE_VERSION.into()),
        ("SignatureNonce", nonce.into()),
        ("Timestamp", timestamp.into()),
    ]);
    if let Some(token) = key.security_token {
        params.push(("SecurityToken", token.into()));
    }
    signed_query("POST", key.secret, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alibaba Cloud's documented example: DescribeRegions signed with the
    /// secret `testsecret`.
    const DOC_PARAMS: &[(&str, &str)] = &[
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Format", "XML"),
        ("AccessKeyId", "testid"),
        ("Action", "DescribeRegions"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("Version", "2014-05-26"),
        ("SignatureVersion", "1.0"),
    ];

    #[test]
    fn matches_alibaba_documented_example() {
        let query = canonical_query(DOC_PARAMS);
        let sts = string_to_sign("GET", &query);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert!(verify("testsecret", &sts, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="));
        assert!(!verify("testsecret2", &sts, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="));
        assert!(
            signed_query("GET", "testsecret", DOC_PARAMS)
                .ends_with("&Signature=OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D")
        );
    }

    #[test]
    fn encodes_as_rfc3986() {
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("~-_."), "~-_.");
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("+"), "%2B");
        assert_eq!(percent_encode("="), "%3D");
        assert_eq!(percent_encode("&"), "%26");
        assert_eq!(percent_encode("杭州"), "%E6%9D%AD%E5%B7%9E");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    /// Expected values computed independently with Python's standard library:
    /// `base64.b64encode(hmac.new(b"key&", sts.encode(), hashlib.sha1).digest())`
    /// over `quote(k, safe="~") + "=" + quote(v, safe="~")` pairs sorted by name.
    #[test]
    fn signs_reserved_and_non_ascii_values() {
        let params = [
            ("Action", "ModifyInstanceNetworkSpec"),
            ("ClientToken", "a b*c~d/e+f"),
            ("Description", "杭州 café"),
            ("AccessKeyId", "LTAI-test"),
        ];
        let query = canonical_query(&params);
        assert_eq!(
            query,
            "AccessKeyId=LTAI-test&Action=ModifyInstanceNetworkSpec\
             &ClientToken=a%20b%2Ac~d%2Fe%2Bf&Description=%E6%9D%AD%E5%B7%9E%20caf%C3%A9"
        );
        let sts = string_to_sign("POST", &query);
        assert_eq!(
            sts,
            "POST&%2F&AccessKeyId%3DLTAI-test%26Action%3DModifyInstanceNetworkSpec\
             %26ClientToken%3Da%2520b%252Ac~d%252Fe%252Bf\
             %26Description%3D%25E6%259D%25AD%25E5%25B7%259E%2520caf%25C3%25A9"
        );
        assert_eq!(signature("s3cr3t/+=", &sts), PYTHON_SIGNATURE);
    }

    const PYTHON_SIGNATURE: &str = "hUeEdjpraD4aqluT0ics2lVKQfw=";

    #[test]
    fn rejects_malformed_claimed_signature() {
        let sts = string_to_sign("POST", "A=1");
        assert!(!verify("k", &sts, "not base64!"));
        assert!(!verify("k", &sts, ""));
        assert!(verify("k", &sts, &signature("k", &sts)));
    }
}
