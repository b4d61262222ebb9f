//! The gateway's own Alibaba Cloud credentials, used by the signing stage:
//! where they come from, and keeping them fresh.
//!
//! The source follows the official credential SDKs' default chain
//! (credentials-go, -python, -java), first match wins ([`Config`], chosen
//! from the settings in `config/sections.rs`):
//!
//! 1. an AccessKey in the environment (`ALIBABA_CLOUD_ACCESS_KEY_ID`, …);
//! 2. RRSA: an OIDC token file exchanged at STS (`AssumeRoleWithOIDC`,
//!    [`oidc`]), what ACK recommends for pods;
//! 3. the SDKs' INI credentials file ([`mod@file`]), re-read when it changes;
//! 4. the ECS instance's RAM role from the metadata server ([`metadata`]),
//!    hardened mode first;
//! 5. a credentials URI ([`uri`]).
//!
//! Temporary credentials are cached and refreshed before they go stale, in
//! the background, one refresh at a time ([`Provider`], `cache.rs`); a call
//! is never signed with credentials past their expiration. Other accounts
//! are reached by STS `AssumeRole` with the chain's credentials
//! ([`Signers`], `accounts.rs`).
//!
//! Secrets print as `***` in `Debug` and never appear in an error message
//! or a log line: errors name the source, the file, the STS code and
//! RequestId, never a key, a token or the OIDC token.

mod accounts;
mod cache;
pub mod file;
pub mod metadata;
pub mod oidc;
mod role;
mod sessions;
pub mod sts;
pub mod uri;

pub use accounts::{Opened, SignerError, Signers, Unserved};
pub use cache::{Current, Provider, Unavailable};
pub use file::parse_file;
pub use role::Account;

use std::fmt;
use std::path::PathBuf;

/// A secret string: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the signer only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An AccessKey pair, with an STS token when the key is temporary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The AccessKey ID (not secret: ECS echoes it in errors).
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: Secret,
    /// The STS security token, sent as `SecurityToken`.
    pub security_token: Option<Secret>,
}

impl Credentials {
    /// The key as the signer takes it.
    pub fn key(&self) -> crate::sign::Key<'_> {
        crate::sign::Key {
            id: &self.access_key_id,
            secret: self.access_key_secret.expose(),
            security_token: self.security_token.as_ref().map(Secret::expose),
        }
    }
}

/// Where the default account's credentials come from: the first source of
/// the SDKs' chain that the settings configure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Config {
    /// Fixed credentials, from the environment (or a test).
    Static(Credentials),
    /// RRSA: an OIDC token file exchanged at STS for a role's credentials.
    Oidc(oidc::Config),
    /// A credentials file and the profile (INI section) to use.
    File {
        /// Path of the INI file.
        path: PathBuf,
        /// Section name, `default` unless set.
        profile: String,
    },
    /// The ECS instance's RAM role, from the metadata server.
    EcsRamRole(metadata::Config),
    /// A URI answering credentials.
    Uri(uri::Config),
}

impl Config {
    /// The source's name, as metrics and logs give it: `environment`,
    /// `rrsa`, `file`, `ecs_ram_role`, `credentials_uri`.
    pub fn source(&self) -> &'static str {
        match self {
            Config::Static(_) => "environment",
            Config::Oidc(_) => oidc::SOURCE,
            Config::File { .. } => file::SOURCE,
            Config::EcsRamRole(_) => metadata::SOURCE,
            Config::Uri(_) => uri::SOURCE,
        }
    }

    /// What `serve --check` prints: the source and where it reads from,
    /// never a secret.
    pub fn describe(&self) -> String {
        match self {
            Config::Static(c) => format!(
                "environment AccessKey {}{}",
                c.access_key_id,
                if c.security_token.is_some() {
                    " (with an STS token)"
                } else {
                    ""
                }
            ),
            Config::Oidc(c) => format!(
                "RRSA: role {} with the OIDC token in {} (provider {})",
                c.role_arn,
                c.token_file.display(),
                c.provider_arn
            ),
            Config::File { path, profile } => format!("file {} [{profile}]", path.display()),
            Config::EcsRamRole(c) => format!(
                "ECS RAM role {} from the metadata server at {}{}",
                c.role.as_deref().unwrap_or("(discovered)"),
                c.endpoint,
                if c.imdsv1_disabled {
                    ", hardened mode only"
                } else {
                    ""
                }
            ),
            Config::Uri(c) => format!("credentials URI {}", uri::redacted(&c.uri)),
        }
    }
}

/// Why credentials could not be had. Messages name the source, the file,
/// the URL (without its query) and STS's code and RequestId, never a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {what} {path}")]
    Read {
        /// What the file is (`credentials file`, `OIDC token file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid INI.
    #[error("credentials file {path} is not valid INI: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, which quotes no value.
        reason: String,
    },
    /// The profile is missing or incomplete.
    #[error("credentials file {path}: profile [{profile}] {problem}")]
    Profile {
        /// The file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// What is wrong.
        problem: String,
    },
    /// A credentials server (STS, the metadata server, the credentials URI)
    /// could not be reached, or did not answer in time.
    #[error("cannot reach the {what} at {url}")]
    Unreachable {
        /// Which server.
        what: &'static str,
        /// Its URL, without a query.
        url: String,
        /// The cause (its own message carries no URL).
        #[source]
        source: reqwest::Error,
    },
    /// A credentials server answered something it does not document.
    #[error("the {what} at {url} answered HTTP {status}: {detail}")]
    Answer {
        /// Which server.
        what: &'static str,
        /// Its URL, without a query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong (never the body of a successful answer, which
        /// holds secrets).
        detail: String,
    },
    /// STS refused.
    #[error("STS {action} refused: {code} (HTTP {status}, RequestId {request_id}): {message}")]
    Sts {
        /// The action: `AssumeRole`, `AssumeRoleWithOIDC`.
        action: &'static str,
        /// STS's error code, such as `AuthenticationFail.OIDCToken.Expired`.
        code: String,
        /// The HTTP status.
        status: u16,
        /// STS's RequestId.
        request_id: String,
        /// STS's message (which quotes no token).
        message: String,
    },
    /// The HTTP client could not be built (its TLS stack).
    #[error("cannot build the HTTP client of the credentials servers")]
    Client(#[source] reqwest::Error),
    /// The chain's credentials, which sign `AssumeRole`, are unavailable.
    #[error("the credentials that sign AssumeRole are unavailable: {0}")]
    Chain(#[source] Unavailable),
    /// The credentials handed out are already expired.
    #[error("the {what} handed out credentials that expired at {expiration}")]
    Expired {
        /// Which server.
        what: &'static str,
        /// When they expired.
        expiration: chrono::DateTime<chrono::Utc>,
    },
}

impl Error {
    /// STS's error code, when STS refused.
    pub fn sts_code(&self) -> Option<&str> {
        match self {
            Error::Sts { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Temporary credentials as a credentials server hands them out.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The key.
    pub credentials: Credentials,
    /// When they stop working; `None` for a long-lived AccessKey.
    pub expiration: Option<chrono::DateTime<chrono::Utc>>,
    /// The role whose key it is (`acs:ram::…:role/…`), when a role's.
    pub role: Option<String>,
}

/// Parses a credentials server's `Expiration` (`YYYY-MM-DDTHH:MM:SSZ`).
pub(crate) fn parse_expiration(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(text, crate::sign::TIMESTAMP_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// The `{Code, AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`
/// answer of the metadata server and of a credentials URI.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Coded {
    code: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    security_token: String,
    #[serde(default)]
    expiration: String,
}

/// Reads a `{Code, AccessKeyId, …}` answer; the error says what was wrong,
/// never quoting a secret.
///
/// # Errors
///
/// What is wrong with the answer.
pub fn parse_coded(body: &[u8], role: Option<String>) -> Result<Issued, String> {
    let coded: Coded =
        serde_json::from_slice(body).map_err(|_| "expected JSON with Code".to_owned())?;
    if coded.code != "Success" {
        let code: String = coded.code.chars().take(64).collect();
        return Err(format!("Code is {code:?}, not Success"));
    }
    let expiration = parse_expiration(&coded.expiration)
        .ok_or_else(|| "Expiration is not YYYY-MM-DDTHH:MM:SSZ".to_owned())?;
    if coded.access_key_id.is_empty() || coded.access_key_secret.is_empty() {
        return Err("credentials without a key".to_owned());
    }
    Ok(Issued {
        credentials: Credentials {
            access_key_id: coded.access_key_id,
            access_key_secret: Secret::new(coded.access_key_secret),
            security_token: (!coded.security_token.is_empty())
                .then(|| Secret::new(coded.security_token)),
        },
        expiration: Some(expiration),
        role,
    })
}

/// The HTTP client of a credentials server: short timeouts (the SDKs use
/// 1 s for the metadata server), and no redirects (they would resend a
/// token elsewhere).
pub(crate) fn http_client(
    connect: std::time::Duration,
    total: std::time::Duration,
) -> Result<reqwest::Client, Error> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("ecs-gateway/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(Error::Client)
}

/// The most a credentials server's answer may be: theirs are a few hundred
/// bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// A credentials server's answer: its status and at most [`MAX_ANSWER`]
/// bytes of body.
pub(crate) async fn read_answer(
    mut response: reqwest::Response,
    what: &'static str,
    url: &str,
) -> Result<(u16, Vec<u8>), Error> {
    let status = response.status().as_u16();
    let too_large = || Error::Answer {
        what,
        url: url.to_owned(),
        status,
        detail: format!("an answer larger than {} KiB", MAX_ANSWER / 1024),
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| Error::Unreachable {
            what,
            url: url.to_owned(),
            source: source.without_url(),
        })?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials {
            access_key_id: "AK1".into(),
            access_key_secret: Secret::new("hunter2"),
            security_token: Some(Secret::new("tok3n")),
        };
        let issued = Issued {
            credentials: c.clone(),
            expiration: None,
            role: None,
        };
        let shown = format!("{c:?} {:?} {issued:?}", Config::Static(c.clone()));
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("***"));
        let described = Config::Static(c).describe();
        assert!(!described.contains("hunter2") && !described.contains("tok3n"));
    }

    #[test]
    fn expirations_parse_as_sts_writes_them() {
        let t = parse_expiration("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2030-01-02T03:04:05+00:00");
        assert!(parse_expiration("2030-01-02 03:04:05").is_none());
        assert!(parse_expiration("").is_none());
    }
}
