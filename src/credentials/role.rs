//! An account the gateway serves through a role in it: its settings
//! (`[[accounts]]`) and its credentials, assumed with STS `AssumeRole`
//! signed by the chain's credentials (with `ExternalId` when given).

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::cache::{Fetch, Provider};
use super::sts::Sts;
use super::{Error, Issued};

/// Another account the gateway serves, as `[[accounts]]` lists it. Its
/// `Debug` does not show the ExternalId.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The account ID.
    pub id: String,
    /// The role to assume in it, `acs:ram::{id}:role/{name}`.
    pub role_arn: String,
    /// The `ExternalId` its trust policy asks for.
    #[serde(default)]
    pub external_id: Option<String>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "***"))
            .finish()
    }
}

/// An account's credentials, through its role.
pub(super) struct AssumeRole {
    pub(super) chain: Arc<Provider>,
    pub(super) sts: Arc<Sts>,
    pub(super) account: Account,
    /// `RoleSessionName`.
    pub(super) session_name: String,
}

impl Fetch for AssumeRole {
    fn source(&self) -> &'static str {
        "assume_role"
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>> {
        Box::pin(async move {
            let key = self.chain.get().await.map_err(Error::Chain)?;
            self.sts
                .assume_role(
                    key.credentials(),
                    &self.account.role_arn,
                    self.account.external_id.as_deref(),
                    &self.session_name,
                )
                .await
        })
    }
}
