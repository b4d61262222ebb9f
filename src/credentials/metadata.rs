//! The ECS instance's RAM role, from the instance metadata server (default
//! `http://100.100.100.200`), as the SDKs read it: hardened mode first
//! (`PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds`,
//! then every read with `X-aliyun-ecs-metadata-token`), token-less reads
//! only when a token cannot be had and `ALIBABA_CLOUD_IMDSV1_DISABLED` is
//! not true. The role is `ALIBABA_CLOUD_ECS_METADATA`, else the one the
//! server lists. Timeouts are short (1 s, as the SDKs'): off an ECS
//! instance, the server is not there.

use std::time::Duration;

use super::cache::Fetch;
use super::{Error, Issued, Secret};
use futures_util::future::BoxFuture;

/// The source's name.
pub const SOURCE: &str = "ecs_ram_role";
/// The metadata server of every ECS instance.
pub const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
/// How long a metadata token is asked to live.
const TOKEN_TTL_SECONDS: &str = "21600";
const TIMEOUT: Duration = Duration::from_secs(1);
const WHAT: &str = "ECS metadata server";

/// Whether `name` is a RAM role name: 1 to 64 of `A-Z a-z 0-9 . - _`.
/// Anything else would change the path it is read from.
pub fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The metadata source's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The metadata server.
    pub endpoint: String,
    /// The role's name; `None`: the one attached, as the server lists it.
    pub role: Option<String>,
    /// Never fall back to token-less (IMDSv1) reads.
    pub imdsv1_disabled: bool,
}

/// The source.
pub(crate) struct Metadata {
    config: Config,
    http: reqwest::Client,
}

impl Metadata {
    pub(crate) fn new(config: Config) -> Result<Self, Error> {
        Ok(Self {
            http: super::http_client(TIMEOUT, TIMEOUT * 2)?,
            config,
        })
    }

    /// A hardened-mode token, or `None` to read without one (IMDSv1).
    async fn token(&self) -> Result<Option<Secret>, Error> {
        let url = format!("{}/latest/api/token", self.config.endpoint);
        let result = self
            .http
            .put(&url)
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .send()
            .await;
        let failure = match result {
            Ok(response) if response.status().is_success() => {
                match super::read_answer(response, WHAT, &url).await {
                    Ok((_, token)) => {
                        let token = String::from_utf8_lossy(&token);
                        if !token.trim().is_empty() {
                            return Ok(Some(Secret::new(token.trim())));
                        }
                        "an empty token".to_owned()
                    }
                    Err(e) => e.to_string(),
                }
            }
            Ok(response) => format!("HTTP {}", response.status().as_u16()),
            Err(e) => e.without_url().to_string(),
        };
        if self.config.imdsv1_disabled {
            return Err(Error::Answer {
                what: WHAT,
                url,
                status: 0,
                detail: format!(
                    "no metadata token ({failure}) and ALIBABA_CLOUD_IMDSV1_DISABLED forbids reading without one"
                ),
            });
        }
        tracing::debug!(%failure, "no metadata token, reading without one (IMDSv1)");
        Ok(None)
    }

    async fn get(&self, path: &str, token: Option<&Secret>) -> Result<(u16, String), Error> {
        let url = format!("{}{path}", self.config.endpoint);
        let mut request = self.http.get(&url);
        if let Some(token) = token {
            request = request.header("X-aliyun-ecs-metadata-token", token.expose());
        }
        let unreachable = |source: reqwest::Error| Error::Unreachable {
            what: WHAT,
            url: url.clone(),
            source: source.without_url(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let (status, body) = super::read_answer(response, WHAT, &url).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn role(&self, token: Option<&Secret>) -> Result<String, Error> {
        if let Some(role) = &self.config.role {
            return Ok(role.clone());
        }
        let path = "/latest/meta-data/ram/security-credentials/";
        let (status, text) = self.get(path, token).await?;
        let role = text.lines().next().unwrap_or("").trim();
        if status != 200 || !is_role_name(role) {
            return Err(self.answer(path, status, "expected the attached role's name"));
        }
        Ok(role.to_owned())
    }

    fn answer(&self, path: &str, status: u16, detail: &str) -> Error {
        Error::Answer {
            what: WHAT,
            url: format!("{}{path}", self.config.endpoint),
            status,
            detail: detail.to_owned(),
        }
    }
}

impl Fetch for Metadata {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>> {
        Box::pin(async move {
            let token = self.token().await?;
            let role = self.role(token.as_ref()).await?;
            let path = format!("/latest/meta-data/ram/security-credentials/{role}");
            let (status, text) = self.get(&path, token.as_ref()).await?;
            if status != 200 {
                return Err(self.answer(&path, status, "expected the role's credentials"));
            }
            super::parse_coded(text.as_bytes(), Some(role))
                .map_err(|detail| self.answer(&path, status, &detail))
        })
    }
}
