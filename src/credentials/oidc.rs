//! RRSA (RAM Roles for Service Accounts), what ACK recommends for pods: the
//! kubelet writes a service-account token for the audience
//! `sts.aliyuncs.com` to a file and rotates it; STS `AssumeRoleWithOIDC`
//! exchanges it for the role's temporary credentials. The file is re-read
//! on every refresh, and its content is never logged.
//!
//! Set by `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
//! `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (all three; ACK's pod-identity webhook
//! injects them), with `ALIBABA_CLOUD_ROLE_SESSION_NAME`.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::cache::Fetch;
use super::sts::Sts;
use super::{Error, Issued, Secret};

/// The source's name.
pub const SOURCE: &str = "rrsa";

/// The RRSA settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The role to assume, `acs:ram::{account}:role/{name}`.
    pub role_arn: String,
    /// The cluster's OIDC provider, `acs:ram::{account}:oidc-provider/{name}`.
    pub provider_arn: String,
    /// The token file the kubelet rotates.
    pub token_file: PathBuf,
}

/// The source: reads the token, asks STS.
pub(crate) struct Oidc {
    pub(crate) config: Config,
    pub(crate) sts: Arc<Sts>,
}

impl Fetch for Oidc {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>> {
        Box::pin(async move {
            let path = &self.config.token_file;
            // A small file on a local volume: read in place.
            let token = std::fs::read_to_string(path).map_err(|source| Error::Read {
                what: "OIDC token file",
                path: path.clone(),
                source,
            })?;
            let token = Secret::new(token.trim());
            self.sts
                .assume_role_with_oidc(
                    &self.config.role_arn,
                    &self.config.provider_arn,
                    &token,
                    &self.sts.config().session_name,
                )
                .await
        })
    }
}
