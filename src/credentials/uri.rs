//! `ALIBABA_CLOUD_CREDENTIALS_URI`: a GET answering
//! `{Code, AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`, as
//! the SDKs read it. The URI may carry a secret in its query, so only its
//! scheme, host and path are ever shown.

use std::time::Duration;

use super::cache::Fetch;
use super::{Error, Issued};
use futures_util::future::BoxFuture;

/// The source's name.
pub const SOURCE: &str = "credentials_uri";
const WHAT: &str = "credentials URI";

/// The URI source's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The URI.
    pub uri: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("uri", &redacted(&self.uri))
            .finish()
    }
}

/// `uri` without its query, fragment or user.
pub fn redacted(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The source.
pub(crate) struct Uri {
    config: Config,
    http: reqwest::Client,
}

impl Uri {
    pub(crate) fn new(config: Config) -> Result<Self, Error> {
        Ok(Self {
            http: super::http_client(Duration::from_secs(2), Duration::from_secs(5))?,
            config,
        })
    }
}

impl Fetch for Uri {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>> {
        Box::pin(async move {
            let shown = redacted(&self.config.uri);
            let unreachable = |source: reqwest::Error| Error::Unreachable {
                what: WHAT,
                url: shown.clone(),
                source: source.without_url(),
            };
            let response = self
                .http
                .get(&self.config.uri)
                .send()
                .await
                .map_err(unreachable)?;
            let (status, body) = super::read_answer(response, WHAT, &shown).await?;
            let answer = |detail: &str| Error::Answer {
                what: WHAT,
                url: shown.clone(),
                status,
                detail: detail.to_owned(),
            };
            if status != 200 {
                return Err(answer("expected HTTP 200"));
            }
            super::parse_coded(&body, None).map_err(|detail| answer(&detail))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_query_and_user() {
        assert_eq!(
            super::redacted("http://u:p@127.0.0.1:9/creds?token=s3cret#x"),
            "http://127.0.0.1:9/creds"
        );
        assert_eq!(super::redacted("not a url"), "(not a URL)");
        let config = super::Config {
            uri: "http://127.0.0.1:9/c?token=s3cret".into(),
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
