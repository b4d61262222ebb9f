//! The rules across settings, checked once every setting is read; each
//! error names the setting to change.

use super::{Config, Error, invalid};

/// `a` must not be more than `b`.
fn at_most(a: (&str, u64), b: (&str, u64)) -> Result<(), Error> {
    if a.1 > b.1 {
        return Err(invalid(
            a.0,
            format!("{} is more than {} ({})", a.1, b.0, b.1),
        ));
    }
    Ok(())
}

/// Checks every rule across settings.
///
/// # Errors
///
/// The first rule broken, naming the setting to change.
pub(super) fn check(config: &Config) -> Result<(), Error> {
    // A TLS client without a certificate would fall through to the
    // forwarded header and name itself.
    if config.tls.is_some() && config.identity.trust_forwarded_client_cert {
        return Err(invalid(
            "identity.trust_forwarded_client_cert",
            "cannot be used with TLS on the gRPC port: a TLS client without a certificate could name itself in x-forwarded-client-cert; trust the header only behind a sidecar that terminates TLS",
        ));
    }
    accounts(config)?;
    // RRSA's role signs for the default account: it must be of it.
    if let (Some(crate::credentials::Config::Oidc(rrsa)), Some(default)) =
        (&config.credentials, config.policy.account_id.as_deref())
    {
        super::sections::role_arn(&rrsa.role_arn, Some(default))
            .map_err(|p| invalid("credentials.role_arn", format!("{p} (policy.account_id)")))?;
    }
    let s = &config.admission;
    let n = |v: usize| v as u64;
    at_most(
        (
            "server.max_concurrent_calls_per_unmapped_caller",
            n(s.max_calls_per_unmapped_caller),
        ),
        (
            "server.max_concurrent_calls_per_caller",
            n(s.max_calls_per_caller),
        ),
    )?;
    at_most(
        (
            "server.max_unauthenticated_streams_per_connection",
            n(s.unauthenticated.max_streams_per_connection),
        ),
        (
            "server.max_unauthenticated_streams",
            n(s.unauthenticated.max_streams),
        ),
    )?;
    at_most(
        (
            "server.max_concurrent_calls_per_caller",
            n(s.max_calls_per_caller),
        ),
        ("server.max_concurrent_calls", n(s.max_calls)),
    )?;
    // The gateway's own answer, which carries the client_token, must come
    // before the server cancels the call at request_timeout: the upstream
    // budget has to end first, message reception included.
    let timeout = config.upstream.timeout;
    let request_timeout = config.server.request_timeout;
    if timeout + s.receive_timeout >= request_timeout {
        return Err(invalid(
            "upstream.timeout",
            format!(
                "{timeout:?} plus server.receive_timeout ({:?}) is not shorter than server.request_timeout ({:?}): \
                 calls could be cancelled while ECS is still being called, and their callers would not get their client_token back",
                s.receive_timeout, request_timeout
            ),
        ));
    }
    Ok(())
}

/// `[[accounts]]`: each a valid account ID, listed once, not the default
/// account (which signs with the chain's credentials), with a role of its
/// own account and an `ExternalId` STS accepts.
fn accounts(config: &Config) -> Result<(), Error> {
    let default = config.policy.account_id.as_deref();
    let mut seen = std::collections::HashSet::new();
    for (i, account) in config.accounts.iter().enumerate() {
        let name = format!("accounts[{i}]");
        if !crate::account::AccountId::is_valid(&account.id) {
            return Err(invalid(
                &format!("{name}.id"),
                format!(
                    "{:?} is not an Alibaba Cloud account ID (digits)",
                    account.id
                ),
            ));
        }
        if Some(account.id.as_str()) == default {
            return Err(invalid(
                &format!("{name}.id"),
                "is the default account (policy.account_id), which signs with the gateway's own credentials: list only the other accounts",
            ));
        }
        if !seen.insert(account.id.as_str()) {
            return Err(invalid(
                &format!("{name}.id"),
                format!("{} is listed twice", account.id),
            ));
        }
        super::sections::role_arn(&account.role_arn, Some(&account.id))
            .map_err(|p| invalid(&format!("{name}.role_arn"), p))?;
        if let Some(external_id) = &account.external_id {
            let valid = (2..=1224).contains(&external_id.len())
                && external_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
            if !valid {
                return Err(invalid(
                    &format!("{name}.external_id"),
                    "is not an ExternalId STS accepts: 2 to 1224 of A-Z a-z 0-9 _ + = , . @ : / -",
                ));
            }
        }
    }
    Ok(())
}
