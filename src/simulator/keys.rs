//! The AccessKeys the simulator accepts, as run-time state: the configured
//! ones, and the temporary keys that STS, the metadata server and the
//! credentials URI issue (`STS.` IDs with a security token and an expiry),
//! which are accepted from the moment they are issued.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use super::{AccessKey, Simulator};
use crate::credentials::Secret;
use crate::sign::TIMESTAMP_FORMAT;

/// Issued keys kept before those long expired are forgotten.
const KEPT_KEYS: usize = 10_000;

/// A temporary key just issued.
#[derive(Debug, Clone)]
pub(super) struct Issued {
    /// The key, as the simulator accepts it.
    pub key: AccessKey,
    /// When it was issued.
    pub issued: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires: DateTime<Utc>,
}

impl Issued {
    /// The four credential fields every issuer answers with (`Expiration`
    /// in whole seconds, rounded down).
    pub fn fields(&self) -> Map<String, Value> {
        let token = self.key.security_token.as_ref().map_or("", Secret::expose);
        let mut fields = Map::new();
        fields.insert("AccessKeyId".into(), self.key.id.clone().into());
        fields.insert(
            "AccessKeySecret".into(),
            self.key.secret.expose().to_owned().into(),
        );
        fields.insert("SecurityToken".into(), token.to_owned().into());
        fields.insert("Expiration".into(), timestamp(self.expires).into());
        fields
    }

    /// Whether the key is within the last third of its lifetime (or past
    /// it): an issuer that caches a key hands out a new one from then on.
    pub fn stale(&self, now: DateTime<Utc>) -> bool {
        let third = (self.expires - self.issued) / 3;
        now >= self.expires - third
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    at.format(TIMESTAMP_FORMAT).to_string()
}

/// `len` random characters of `alphabet`, from the operating system's
/// randomness (through UUID v4).
pub(super) fn random(len: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in uuid::Uuid::new_v4().into_bytes() {
            if out.len() < len
                && let Some(c) = alphabet.get(usize::from(byte) % alphabet.len().max(1))
            {
                out.push(char::from(*c));
            }
        }
    }
    out
}

/// Letters and digits.
pub(super) const ALPHANUMERIC: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Simulator {
    /// Issues a temporary key of `account`, valid for `requested` (or the
    /// world's `issued_lifetime`), and accepts it from now on.
    pub(super) fn issue(&self, account: &str, requested: Duration, now: DateTime<Utc>) -> Issued {
        let lifetime = self.inner.issued_lifetime.unwrap_or(requested);
        let expires = TimeDelta::from_std(lifetime)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let key = AccessKey {
            id: format!("STS.{}", random(25, ALPHANUMERIC)),
            secret: Secret::new(random(44, ALPHANUMERIC)),
            security_token: Some(Secret::new(format!(
                "CAIS{}",
                random(
                    300,
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                )
            ))),
            account: account.to_owned(),
            expires: Some(expires),
        };
        let mut state = self.state();
        if state.access_keys.len() >= KEPT_KEYS {
            let forgotten = now - TimeDelta::hours(1);
            state
                .access_keys
                .retain(|_, k| k.expires.is_none_or(|e| e > forgotten));
        }
        state.access_keys.insert(key.id.clone(), key.clone());
        Issued {
            key,
            issued: now,
            expires,
        }
    }

    /// Accepts `key` from now on (replacing a key with the same ID).
    pub fn put_access_key(&self, key: AccessKey) {
        self.state().access_keys.insert(key.id.clone(), key);
    }

    /// ECS calls that arrived signed with an expired key (whatever else was
    /// wrong with them): the gateway must never send one.
    pub fn expired_key_calls(&self) -> u64 {
        self.state().expired_key_calls
    }
}
