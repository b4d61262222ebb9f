//! The Alibaba Cloud account ID: the account that owns the instances, in
//! ARNs (`acs:ecs:{region}:{account}:instance/{id}`) and RAM principals
//! (`acs:ram::{account}:role/{name}`). Checked once where it is read
//! (settings, policy test cases, principals.toml, entities.json), so every
//! place that takes one agrees on what one is.

use std::fmt;
use std::str::FromStr;

/// An Alibaba Cloud account ID: one or more ASCII digits
/// (`1234567890123456`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

/// A value that is not an Alibaba Cloud account ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an Alibaba Cloud account ID (expected one or more ASCII digits)")]
pub struct InvalidAccountId(pub String);

impl AccountId {
    /// The ID as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `value` is an account ID, without keeping it.
    pub fn is_valid(value: &str) -> bool {
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
    }
}

impl FromStr for AccountId {
    type Err = InvalidAccountId;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if Self::is_valid(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidAccountId(value.to_owned()))
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AccountId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_digits_only() {
        let id: AccountId = "1234567890123456".parse().unwrap();
        assert_eq!(id.as_str(), "1234567890123456");
        assert_eq!(id.to_string(), "1234567890123456");
        for bad in ["", "12a4", " 123", "１２", "-1", "12 3"] {
            let error = bad.parse::<AccountId>().unwrap_err();
            assert_eq!(error, InvalidAccountId(bad.to_owned()));
            assert!(
                error
                    .to_string()
                    .contains("expected one or more ASCII digits")
            );
        }
    }
}
