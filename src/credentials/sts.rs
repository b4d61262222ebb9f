//! The Security Token Service (STS, API version 2015-04-01): `AssumeRole`,
//! signed with RPC signature V1 by the chain's credentials, for the other
//! accounts the gateway serves; `AssumeRoleWithOIDC`, anonymous, for RRSA.
//!
//! Its endpoint follows the SDKs: `ALIBABA_CLOUD_STS_ENDPOINT` (a host name
//! means https; a full URL may use plain http only to a loopback address),
//! else `sts.{ALIBABA_CLOUD_STS_REGION}.aliyuncs.com` (`sts-vpc.` with
//! `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`), else `sts.aliyuncs.com`.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use super::{Credentials, Error, Issued, Secret, parse_expiration};
use crate::sign;

/// STS's OpenAPI version.
pub const VERSION: &str = "2015-04-01";
/// The global STS endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://sts.aliyuncs.com";
/// The session name used unless `ALIBABA_CLOUD_ROLE_SESSION_NAME` says
/// otherwise.
pub const DEFAULT_SESSION_NAME: &str = "ecs-gateway";
/// The shortest and longest session STS grants (`DurationSeconds`).
pub const DURATION_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(900)..=Duration::from_secs(43_200);

/// How STS is reached and what sessions ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The endpoint URL.
    pub endpoint: String,
    /// The session's lifetime (`DurationSeconds`).
    pub duration: Duration,
    /// `RoleSessionName`.
    pub session_name: String,
    /// Longest wait for STS's answer.
    pub timeout: Duration,
    /// Name each caller's sessions of the other accounts' roles after the
    /// caller ([`session_name_for`]), so that ECS's audit trail (ActionTrail)
    /// shows which internal service made each change.
    pub sessions_per_caller: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            duration: Duration::from_secs(3600),
            session_name: DEFAULT_SESSION_NAME.to_owned(),
            timeout: Duration::from_secs(10),
            sessions_per_caller: false,
        }
    }
}

/// The STS endpoint the SDKs would use.
///
/// # Errors
///
/// `explicit` is neither a host name nor an https URL (nor an http URL to a
/// loopback address), or `region` is not a region ID.
pub fn endpoint(explicit: Option<&str>, region: Option<&str>, vpc: bool) -> Result<String, String> {
    if let Some(explicit) = explicit {
        return explicit_endpoint(explicit);
    }
    match region {
        None => Ok(DEFAULT_ENDPOINT.to_owned()),
        Some(region)
            if !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            let prefix = if vpc { "sts-vpc" } else { "sts" };
            Ok(format!("https://{prefix}.{region}.aliyuncs.com"))
        }
        Some(region) => Err(format!(
            "{region:?} is not a region ID (lowercase letters, digits and dashes)"
        )),
    }
}

fn explicit_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    if !text.contains("://") {
        let url = url::Url::parse(&format!("https://{text}"))
            .ok()
            .filter(|u| {
                u.path() == "/"
                    && u.query().is_none()
                    && u.username().is_empty()
                    && u.password().is_none()
            })
            .ok_or_else(|| format!("{text:?} is not a host name"))?;
        return Ok(url.as_str().trim_end_matches('/').to_owned());
    }
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{text:?}: plain http is allowed only to a loopback address (STS hands out secrets)"
            ));
        }
        other => return Err(format!("{text:?}: scheme {other} is not http(s)")),
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?}: an endpoint has no query or user"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether `name` is a `RoleSessionName` STS accepts: 2 to 64 of
/// `A-Z a-z 0-9 . @ _ -`.
pub fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'_' | b'-'))
}

/// A `RoleSessionName` naming `caller` (a SPIFFE ID, a subject): its most
/// specific part (the end, at most 51 characters, every character STS
/// refuses made `-`), then `-` and 12 hex digits of the SHA-256 of the whole
/// identity, so that two callers never share a name (and a session) and
/// ECS's audit trail (ActionTrail) shows which internal service made a
/// change.
pub fn session_name_for(caller: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let cleaned: String = caller
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    // All ASCII now: any byte boundary is a character boundary.
    let tail = trimmed[trimmed.len().saturating_sub(51)..].trim_start_matches('-');
    let digest = hex::encode(&Sha256::digest(caller.as_bytes())[..6]);
    if tail.is_empty() {
        digest
    } else {
        format!("{tail}-{digest}")
    }
}

/// An STS client.
#[derive(Debug, Clone)]
pub struct Sts {
    http: reqwest::Client,
    config: Config,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    credentials: Option<Issue>,
    assumed_role_user: Option<AssumedRoleUser>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumedRoleUser {
    #[serde(default)]
    arn: String,
}

/// The account of a RAM ARN (`acs:ram::{account}:…`).
fn account_of(arn: &str) -> Option<&str> {
    arn.strip_prefix("acs:ram::")?.split(':').next()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Issue {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Refusal {
    request_id: String,
    code: String,
    message: String,
}

impl Sts {
    /// A client of the STS `config` names.
    ///
    /// # Errors
    ///
    /// The HTTP client cannot be built.
    pub fn new(config: Config) -> Result<Self, Error> {
        Ok(Self {
            http: super::http_client(Duration::from_secs(3), config.timeout)?,
            config,
        })
    }

    /// What sessions ask for.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `AssumeRole`, signed with `key`.
    ///
    /// # Errors
    ///
    /// STS cannot be reached, refuses ([`Error::Sts`]) or answers
    /// something else.
    pub async fn assume_role(
        &self,
        key: &Credentials,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
    ) -> Result<Issued, Error> {
        let mut params: Vec<(&'static str, Cow<'_, str>)> = vec![
            ("Action", "AssumeRole".into()),
            ("RoleArn", role_arn.into()),
            ("RoleSessionName", session_name.into()),
            ("DurationSeconds", self.duration_seconds().into()),
        ];
        if let Some(external_id) = external_id {
            params.push(("ExternalId", external_id.into()));
        }
        let nonce = uuid::Uuid::new_v4().to_string();
        let body = sign::signed_rpc_body(params, VERSION, key.key(), &nonce, chrono::Utc::now());
        self.post("AssumeRole", body, role_arn).await
    }

    /// `AssumeRoleWithOIDC`: anonymous, the OIDC token is the proof.
    ///
    /// # Errors
    ///
    /// As [`Sts::assume_role`].
    pub async fn assume_role_with_oidc(
        &self,
        role_arn: &str,
        provider_arn: &str,
        token: &Secret,
        session_name: &str,
    ) -> Result<Issued, Error> {
        let timestamp = chrono::Utc::now()
            .format(sign::TIMESTAMP_FORMAT)
            .to_string();
        let nonce = uuid::Uuid::new_v4().to_string();
        let params = [
            ("Action", "AssumeRoleWithOIDC"),
            ("Format", "JSON"),
            ("Version", VERSION),
            ("Timestamp", &timestamp),
            ("SignatureNonce", &nonce),
            ("RoleArn", role_arn),
            ("OIDCProviderArn", provider_arn),
            ("OIDCToken", token.expose()),
            ("RoleSessionName", session_name),
            ("DurationSeconds", &self.duration_seconds()),
        ];
        let body = sign::canonical_query(&params);
        self.post("AssumeRoleWithOIDC", body, role_arn).await
    }

    fn duration_seconds(&self) -> String {
        self.config.duration.as_secs().to_string()
    }

    async fn post(&self, action: &'static str, body: String, role: &str) -> Result<Issued, Error> {
        let url = &self.config.endpoint;
        let unreachable = |source: reqwest::Error| Error::Unreachable {
            what: "STS",
            url: url.clone(),
            source: source.without_url(),
        };
        let response = self
            .http
            .post(format!("{url}/"))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let (status, bytes) = super::read_answer(response, "STS", url).await?;
        parse_answer(action, url, status, &bytes, role)
    }
}

/// Reads STS's answer: `Credentials` on success, `Code` and `RequestId` on
/// a refusal. No part of a successful body reaches an error message.
///
/// # Errors
///
/// STS refused ([`Error::Sts`]), or answered something else.
pub fn parse_answer(
    action: &'static str,
    url: &str,
    status: u16,
    body: &[u8],
    role: &str,
) -> Result<Issued, Error> {
    let answer = |detail: &str| Error::Answer {
        what: "STS",
        url: url.to_owned(),
        status,
        detail: detail.to_owned(),
    };
    if !(200..300).contains(&status) {
        let refusal: Refusal = serde_json::from_slice(body).unwrap_or_default();
        if refusal.code.is_empty() {
            return Err(answer("not an STS error body"));
        }
        return Err(Error::Sts {
            action,
            code: bounded(&refusal.code, 64),
            status,
            request_id: bounded(&refusal.request_id, 64),
            message: message_of(&refusal.code, &refusal.message),
        });
    }
    let parsed = serde_json::from_slice::<Answer>(body)
        .map_err(|_| answer("expected JSON with Credentials"))?;
    // The key must be the role's account's: a key of another account would
    // sign calls the policies decided for this one.
    let user = parsed
        .assumed_role_user
        .ok_or_else(|| answer("expected JSON with AssumedRoleUser"))?;
    if account_of(&user.arn).is_none() || account_of(&user.arn) != account_of(role) {
        return Err(answer(&format!(
            "the assumed role {} is not of the role's account",
            bounded(&user.arn, 200)
        )));
    }
    let issue = parsed
        .credentials
        .ok_or_else(|| answer("expected JSON with Credentials"))?;
    let expiration = parse_expiration(&issue.expiration)
        .ok_or_else(|| answer("Expiration is not YYYY-MM-DDTHH:MM:SSZ"))?;
    if issue.access_key_id.is_empty() || issue.access_key_secret.is_empty() {
        return Err(answer("Credentials without a key"));
    }
    Ok(Issued {
        credentials: Credentials {
            access_key_id: issue.access_key_id,
            access_key_secret: Secret::new(issue.access_key_secret),
            security_token: Some(Secret::new(issue.security_token)),
        },
        expiration: Some(expiration),
        role: Some(role.to_owned()),
    })
}

/// At most `max` characters of `text`.
fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// STS's message, for the log: none for a signature error (STS quotes the
/// string it signed, with the security token), at most 200 characters
/// otherwise.
fn message_of(code: &str, message: &str) -> String {
    if code.contains("Signature") || message.to_ascii_lowercase().contains("string to sign") {
        return "(not shown: it quotes the signed request)".to_owned();
    }
    bounded(message, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_sdks() {
        assert_eq!(endpoint(None, None, false).unwrap(), DEFAULT_ENDPOINT);
        assert_eq!(
            endpoint(None, Some("cn-hangzhou"), false).unwrap(),
            "https://sts.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            endpoint(None, Some("cn-hangzhou"), true).unwrap(),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            endpoint(Some("sts-vpc.cn-beijing.aliyuncs.com"), Some("x"), false).unwrap(),
            "https://sts-vpc.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            endpoint(Some("http://127.0.0.1:8080"), None, false).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            endpoint(Some("https://sts.example.com/"), None, false).unwrap(),
            "https://sts.example.com"
        );
        for bad in [
            "http://sts.aliyuncs.com",
            "ftp://127.0.0.1",
            "sts.aliyuncs.com/path",
            "https://u:p@sts.aliyuncs.com",
            "https://:p@sts.aliyuncs.com",
            ":p@sts.aliyuncs.com",
            "https://sts.aliyuncs.com/?a=b",
        ] {
            assert!(endpoint(Some(bad), None, false).is_err(), "{bad}");
        }
        assert!(endpoint(None, Some("cn hangzhou"), false).is_err());
    }

    #[test]
    fn session_names_follow_sts_rules() {
        assert!(valid_session_name("ecs-gateway"));
        assert!(valid_session_name("a.b@c_d-e"));
        assert!(!valid_session_name("a"));
        assert!(!valid_session_name("with space"));
        assert!(!valid_session_name(&"a".repeat(65)));
        for caller in [
            "spiffe://demo.local/ns/web/sa/checkout",
            "x",
            "",
            "///",
            &"é".repeat(100),
            &format!("spiffe://{}/sa/tail-service", "long".repeat(40)),
        ] {
            let name = session_name_for(caller);
            assert!(valid_session_name(&name), "{caller:?} -> {name:?}");
        }
        let netops = session_name_for("spiffe://demo.local/sa/netops");
        assert!(
            netops.starts_with("spiffe---demo.local-sa-netops-"),
            "{netops}"
        );
        assert_eq!(netops.len(), "spiffe---demo.local-sa-netops-".len() + 12);
        let long = session_name_for(&format!("spiffe://{}/sa/tail-service", "long".repeat(40)));
        assert!(long.contains("sa-tail-service-"), "{long}");
        // Identities that read alike never share a session.
        for (a, b) in [
            ("team/a", "team:a"),
            ("team-a", "team a"),
            (
                &format!("jwt:alice@{}", "i".repeat(80)) as &str,
                &format!("jwt:bob@{}", "i".repeat(80)),
            ),
        ] {
            assert_ne!(session_name_for(a), session_name_for(b), "{a} {b}");
        }
    }

    #[test]
    fn answers_parse_and_refusals_name_code_and_request_id() {
        let ok = br#"{"RequestId":"R","AssumedRoleUser":{"Arn":"acs:ram::1:assumed-role/r/s"},"Credentials":{"AccessKeyId":"STS.A","AccessKeySecret":"sekrit","SecurityToken":"tok","Expiration":"2030-01-01T00:00:00Z"}}"#;
        let issued = parse_answer("AssumeRole", "u", 200, ok, "acs:ram::1:role/r").unwrap();
        assert!(
            parse_answer("AssumeRole", "u", 200, ok, "acs:ram::2:role/r").is_err(),
            "a key of another account than the role's"
        );
        let anonymous = br#"{"RequestId":"R","Credentials":{"AccessKeyId":"STS.A","AccessKeySecret":"sekrit","SecurityToken":"tok","Expiration":"2030-01-01T00:00:00Z"}}"#;
        assert!(
            parse_answer("AssumeRole", "u", 200, anonymous, "acs:ram::1:role/r").is_err(),
            "a key without the role it is of"
        );
        assert_eq!(issued.credentials.access_key_id, "STS.A");
        assert_eq!(issued.role.as_deref(), Some("acs:ram::1:role/r"));
        let refused = br#"{"RequestId":"R9","Code":"AuthenticationFail.OIDCToken.Expired","Message":"expired"}"#;
        let error = parse_answer("AssumeRoleWithOIDC", "u", 400, refused, "r").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("AuthenticationFail.OIDCToken.Expired") && text.contains("R9"),
            "{text}"
        );
        let garbled = br#"{"RequestId":"R","Credentials":{"AccessKeyId":"STS.A","AccessKeySecret":"sekrit","SecurityToken":"tok","Expiration":"soon"}}"#;
        let text = parse_answer("AssumeRole", "u", 200, garbled, "r")
            .unwrap_err()
            .to_string();
        assert!(!text.contains("sekrit") && !text.contains("tok"), "{text}");
        assert!(parse_answer("AssumeRole", "u", 502, b"<html>", "r").is_err());
        // A signature error quotes the signed request, token included.
        let quoting = br#"{"RequestId":"R","Code":"SignatureDoesNotMatch","Message":"server string to sign is:POST&%2F&SecurityToken%3Dtok3n"}"#;
        let text = parse_answer("AssumeRole", "u", 400, quoting, "r")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("SignatureDoesNotMatch") && !text.contains("tok3n"),
            "{text}"
        );
    }
}
