//! One reader per section of the settings, each building its stage's
//! configuration from the [`table`](super::table) through the typed
//! [`Reader`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::read::{Reader, endpoint};
use super::table as t;
use super::{Error, ServerSettings, TlsConfig, invalid};
use crate::admission::{self, unauthenticated};
use crate::credentials::{self, Credentials, Secret};
use crate::identity::{self, JwksSource, JwtConfig, forwarded::SourceHeader};
use crate::policy::DependentRule;
use crate::{lookup, upstream};

/// A listen address.
pub(super) fn address(r: &mut Reader, s: &t::Setting, default: &str) -> Result<SocketAddr, Error> {
    let example = default.to_owned();
    let default = default.parse().map_err(|_| invalid(s.key, "bad default"))?;
    r.value(
        s,
        default,
        |text| {
            text.parse()
                .map_err(|_| format!("{text:?} is not a socket address such as {example}"))
        },
        SocketAddr::to_string,
    )
}

pub(super) fn upstream(r: &mut Reader) -> Result<upstream::Config, Error> {
    let d = upstream::Config::default();
    Ok(upstream::Config {
        endpoint: r.value(
            &t::UPSTREAM_ENDPOINT,
            d.endpoint.clone(),
            endpoint,
            Clone::clone,
        )?,
        timeout: r.duration(&t::UPSTREAM_TIMEOUT, d.timeout)?,
        connect_timeout: r.duration(&t::UPSTREAM_CONNECT_TIMEOUT, d.connect_timeout)?,
        attempt_timeout: r.duration(&t::UPSTREAM_ATTEMPT_TIMEOUT, d.attempt_timeout)?,
        max_attempts: r.count_u32(&t::UPSTREAM_MAX_ATTEMPTS, d.max_attempts)?,
        breaker_failures: r.count_u32(&t::UPSTREAM_BREAKER_FAILURES, d.breaker_failures)?,
        breaker_open_for: r.duration(&t::UPSTREAM_BREAKER_OPEN_FOR, d.breaker_open_for)?,
        ..d
    })
}

pub(super) fn server(r: &mut Reader) -> Result<ServerSettings, Error> {
    let d = ServerSettings::default();
    Ok(ServerSettings {
        reflection: r.boolean(&t::REFLECTION, d.reflection)?,
        request_timeout: r.duration(&t::REQUEST_TIMEOUT, d.request_timeout)?,
        shutdown_grace: r.duration(&t::SHUTDOWN_GRACE, d.shutdown_grace)?,
    })
}

/// The admission layer's limits; health and reflection streams end at
/// `server.request_timeout` too.
pub(super) fn admission(
    r: &mut Reader,
    request_timeout: Duration,
) -> Result<admission::Limits, Error> {
    let d = admission::Limits::default();
    let max_calls = r.count(&t::MAX_CONCURRENT_CALLS, d.max_calls)?;
    Ok(admission::Limits {
        max_calls,
        // A quarter of the places by default: a runaway caller is capped
        // while four busy ones can still fill the gateway.
        max_calls_per_caller: r
            .count(&t::MAX_CONCURRENT_CALLS_PER_CALLER, (max_calls / 4).max(1))?,
        max_calls_per_unmapped_caller: r.count(
            &t::MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER,
            d.max_calls_per_unmapped_caller,
        )?,
        receive_timeout: r.duration(&t::RECEIVE_TIMEOUT, d.receive_timeout)?,
        max_message_size: d.max_message_size,
        unauthenticated: unauthenticated::Limits {
            max_streams: r.count(
                &t::MAX_UNAUTHENTICATED_STREAMS,
                d.unauthenticated.max_streams,
            )?,
            max_streams_per_connection: r.count(
                &t::MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION,
                d.unauthenticated.max_streams_per_connection,
            )?,
            idle_timeout: r.duration(
                &t::UNAUTHENTICATED_IDLE_TIMEOUT,
                d.unauthenticated.idle_timeout,
            )?,
            deadline: request_timeout,
        },
    })
}

/// The signing credentials' source, the first the settings configure in
/// the official SDKs' order (an AccessKey in the environment, RRSA, the
/// credentials file, a named ECS RAM role, a credentials URI, else the ECS
/// instance's attached role unless the metadata server is disabled), and
/// how STS is reached.
pub(super) fn credentials(
    r: &mut Reader,
) -> Result<(Option<credentials::Config>, credentials::sts::Config), Error> {
    let file = r.path(&t::CREDENTIALS_FILE)?.map(|(_, p)| p);
    let profile = r.value(
        &t::CREDENTIALS_PROFILE,
        "default".to_owned(),
        |text| Ok(text.to_owned()),
        Clone::clone,
    )?;
    let environment = environment_key(r)?;
    let rrsa = rrsa(r)?;
    let sts = sts(r)?;
    let ecs_role = r
        .optional(&t::ECS_RAM_ROLE, |text| {
            if credentials::metadata::is_role_name(text) {
                Ok(text.to_owned())
            } else {
                Err(format!(
                    "{text:?} is not a RAM role name: 1 to 64 of A-Z a-z 0-9 . - _"
                ))
            }
        })?
        .map(|(_, role)| role);
    let metadata_disabled = r.boolean(&t::ECS_METADATA_DISABLED, false)?;
    let imdsv1_disabled = r.boolean(&t::IMDSV1_DISABLED, false)?;
    let metadata_endpoint = r.value(
        &t::METADATA_ENDPOINT,
        credentials::metadata::DEFAULT_ENDPOINT.to_owned(),
        metadata_endpoint,
        Clone::clone,
    )?;
    let uri = r.secret(&t::CREDENTIALS_URI);
    let (sts_endpoint, sts_region, vpc) = (
        r.text(&t::STS_ENDPOINT)?,
        r.text(&t::STS_REGION)?.map(|(_, region)| region),
        r.boolean(&t::VPC_ENDPOINT, false)?,
    );
    let endpoint = credentials::sts::endpoint(
        sts_endpoint.as_ref().map(|(_, e)| e.as_str()),
        sts_region.as_deref(),
        vpc,
    )
    .map_err(|problem| {
        let name = sts_endpoint
            .as_ref()
            .map_or(t::STS_REGION.var, |(n, _)| n.as_str());
        invalid(name, problem)
    })?;
    let metadata = |role| {
        credentials::Config::EcsRamRole(credentials::metadata::Config {
            endpoint: metadata_endpoint.clone(),
            role,
            imdsv1_disabled,
        })
    };
    let config = if let Some(key) = environment {
        Some(credentials::Config::Static(key))
    } else if let Some(rrsa) = rrsa {
        Some(credentials::Config::Oidc(rrsa))
    } else if let Some(path) = file {
        Some(credentials::Config::File { path, profile })
    } else if let (Some(role), false) = (&ecs_role, metadata_disabled) {
        Some(metadata(Some(role.clone())))
    } else if let Some(uri) = uri {
        Some(credentials::Config::Uri(credentials::uri::Config { uri }))
    } else if !metadata_disabled {
        Some(metadata(None))
    } else {
        None
    };
    r.note(
        "credentials",
        config
            .as_ref()
            .map_or_else(|| "none".to_owned(), credentials::Config::describe),
    );
    Ok((config, credentials::sts::Config { endpoint, ..sts }))
}

/// An AccessKey pair in the environment, with its STS token.
fn environment_key(r: &mut Reader) -> Result<Option<Credentials>, Error> {
    let (id, secret) = (t::ACCESS_KEY_ID.var, t::ACCESS_KEY_SECRET.var);
    match (r.secret(&t::ACCESS_KEY_ID), r.secret(&t::ACCESS_KEY_SECRET)) {
        (Some(access_key_id), Some(key_secret)) => Ok(Some(Credentials {
            access_key_id,
            access_key_secret: Secret::new(key_secret),
            security_token: r.secret(&t::SECURITY_TOKEN).map(Secret::new),
        })),
        (Some(_), None) => Err(invalid(secret, format!("is not set but {id} is: set both"))),
        (None, Some(_)) => Err(invalid(id, format!("is not set but {secret} is: set both"))),
        (None, None) => Ok(None),
    }
}

/// RRSA's three settings: all, or none.
fn rrsa(r: &mut Reader) -> Result<Option<credentials::oidc::Config>, Error> {
    let role = r.optional(&t::ROLE_ARN, |text| role_arn(text, None))?;
    let provider = r.optional(&t::OIDC_PROVIDER_ARN, oidc_provider_arn)?;
    let token_file = r.path(&t::OIDC_TOKEN_FILE)?;
    match (role, provider, token_file) {
        (Some((_, role_arn)), Some((_, provider_arn)), Some((_, token_file))) => {
            Ok(Some(credentials::oidc::Config {
                role_arn,
                provider_arn,
                token_file,
            }))
        }
        (None, None, None) => Ok(None),
        (role, provider, file) => {
            let set = [role.map(|r| r.0), provider.map(|p| p.0), file.map(|f| f.0)];
            let given = set.iter().flatten().next().cloned().unwrap_or_default();
            let missing: Vec<&str> = [&t::ROLE_ARN, &t::OIDC_PROVIDER_ARN, &t::OIDC_TOKEN_FILE]
                .iter()
                .zip(&set)
                .filter(|(_, v)| v.is_none())
                .map(|(s, _)| s.var)
                .collect();
            Err(invalid(
                &given,
                format!(
                    "RRSA needs all three settings: set {} too",
                    missing.join(" and ")
                ),
            ))
        }
    }
}

/// STS sessions: their name and lifetime.
fn sts(r: &mut Reader) -> Result<credentials::sts::Config, Error> {
    let defaults = credentials::sts::Config::default();
    let session_name = r.value(
        &t::ROLE_SESSION_NAME,
        defaults.session_name.clone(),
        |text| {
            if credentials::sts::valid_session_name(text) {
                Ok(text.to_owned())
            } else {
                Err(format!(
                    "{text:?} is not a RoleSessionName: 2 to 64 of A-Z a-z 0-9 . @ _ -"
                ))
            }
        },
        Clone::clone,
    )?;
    let duration = r.value(
        &t::SESSION_DURATION,
        defaults.duration,
        |text| {
            let d = super::read::duration(text)?;
            if credentials::sts::DURATION_RANGE.contains(&d) && d.subsec_nanos() == 0 {
                Ok(d)
            } else {
                Err(format!(
                    "{text:?} is not a whole number of seconds from 15m to 12h (STS's DurationSeconds)"
                ))
            }
        },
        |d| super::read::show_duration(*d),
    )?;
    let sessions_per_caller = r.boolean(&t::SESSIONS_PER_CALLER, false)?;
    Ok(credentials::sts::Config {
        session_name,
        duration,
        sessions_per_caller,
        ..defaults
    })
}

/// A RAM role's ARN, `acs:ram::{account}:role/{name}` (of `account` when
/// given).
pub(super) fn role_arn(text: &str, account: Option<&str>) -> Result<String, String> {
    let expected = "acs:ram::{account}:role/{name}";
    let rest = text
        .strip_prefix("acs:ram::")
        .ok_or_else(|| format!("{text:?} is not a role ARN ({expected})"))?;
    let (id, name) = rest
        .split_once(":role/")
        .ok_or_else(|| format!("{text:?} is not a role ARN ({expected})"))?;
    if !crate::account::AccountId::is_valid(id) || name.is_empty() || name.len() > 64 {
        return Err(format!("{text:?} is not a role ARN ({expected})"));
    }
    match account {
        Some(account) if account != id => Err(format!(
            "{text:?} is a role of account {id}, not of account {account}"
        )),
        _ => Ok(text.to_owned()),
    }
}

fn oidc_provider_arn(text: &str) -> Result<String, String> {
    let valid = text
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(":oidc-provider/"))
        .is_some_and(|(id, name)| crate::account::AccountId::is_valid(id) && !name.is_empty());
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an OIDC provider ARN (acs:ram::{{account}}:oidc-provider/{{name}})"
        ))
    }
}

/// The metadata server: plain http (it is link-local), no path or query.
fn metadata_endpoint(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.scheme() != "http"
        || url.path() != "/"
        || url.query().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "{text:?}: expected http://HOST[:PORT], as http://100.100.100.200"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// `[[accounts]]`, recorded for `serve --check` (checked in `rules.rs`).
pub(super) fn accounts(
    r: &mut Reader,
    accounts: Vec<credentials::Account>,
) -> Vec<credentials::Account> {
    let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    r.note(
        "accounts",
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        },
    );
    accounts
}

pub(super) fn tls(r: &mut Reader) -> Result<Option<TlsConfig>, Error> {
    let cert = r.path(&t::TLS_CERT)?;
    let key = r.path(&t::TLS_KEY)?;
    let client_ca = r.path(&t::TLS_CLIENT_CA)?;
    let require_client_cert = r.boolean(&t::TLS_REQUIRE_CLIENT_CERT, true)?;
    match (cert, key) {
        (Some((_, cert)), Some((_, key))) => Ok(Some(TlsConfig {
            cert,
            key,
            client_ca: client_ca.map(|(_, p)| p),
            require_client_cert,
        })),
        (Some((name, _)), None) | (None, Some((name, _))) => {
            Err(invalid(&name, "set both the TLS certificate and its key"))
        }
        (None, None) => match client_ca {
            Some((name, _)) => Err(invalid(
                &name,
                "mTLS needs the server's own certificate and key too",
            )),
            None => Ok(None),
        },
    }
}

/// Where the caller's address is read behind a sidecar.
fn source_header(name: &str) -> Result<SourceHeader, String> {
    if name.eq_ignore_ascii_case("x-forwarded-for") {
        return Ok(SourceHeader::ForwardedFor);
    }
    let header = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not an HTTP header name"))?;
    // Headers the gateway reads for other things, or that HTTP/2 and gRPC
    // reserve, cannot carry the address.
    if matches!(
        header.as_str(),
        "x-forwarded-client-cert" | "authorization" | "host" | "te" | "content-type"
    ) || header.as_str().starts_with("grpc-")
    {
        return Err(format!("{name:?} cannot carry the caller's address"));
    }
    Ok(SourceHeader::Overwritten(header))
}

pub(super) fn identity(r: &mut Reader) -> Result<identity::Config, Error> {
    Ok(identity::Config {
        trust_forwarded_client_cert: r.boolean(&t::TRUST_FORWARDED_CLIENT_CERT, false)?,
        source_address_header: r.value(
            &t::SOURCE_ADDRESS_HEADER,
            SourceHeader::ForwardedFor,
            source_header,
            |h| h.name().to_owned(),
        )?,
        jwt: jwt(r)?,
    })
}

fn jwt(r: &mut Reader) -> Result<Option<JwtConfig>, Error> {
    let issuer = r.text(&t::JWT_ISSUER)?;
    let audience = r.text(&t::JWT_AUDIENCE)?;
    let jwks_file = r.path(&t::JWT_JWKS_FILE)?;
    let jwks_url = r.optional(&t::JWT_JWKS_URL, endpoint)?;
    let leeway = r.value(
        &t::JWT_LEEWAY,
        Duration::from_secs(30),
        |text| {
            humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e})"))
        },
        |d| super::read::show_duration(*d),
    )?;
    let jwks_refresh = r.duration(&t::JWT_JWKS_REFRESH, Duration::from_secs(300))?;
    let jwks_max_age = r.duration(
        &t::JWT_JWKS_MAX_AGE,
        (jwks_refresh * 12).max(Duration::from_secs(3600)),
    )?;
    if jwks_max_age < jwks_refresh {
        return Err(invalid(
            t::JWT_JWKS_MAX_AGE.key,
            format!(
                "{jwks_max_age:?} is shorter than the JWKS refresh interval ({jwks_refresh:?}): keys would expire before their refresh"
            ),
        ));
    }
    let jwks = match (jwks_file, jwks_url) {
        (Some((_, path)), None) => Some(JwksSource::File(path)),
        (None, Some((_, url))) => Some(JwksSource::Url(url)),
        (Some((name, _)), Some(_)) => {
            return Err(invalid(&name, "set a JWKS file or a JWKS URL, not both"));
        }
        (None, None) => None,
    };
    match (issuer, audience, jwks) {
        (None, None, None) => Ok(None),
        (Some((_, issuer)), Some((_, audience)), Some(jwks)) => Ok(Some(JwtConfig {
            issuer,
            audience,
            jwks,
            leeway,
            jwks_refresh,
            jwks_max_age,
        })),
        (None, ..) => Err(invalid(t::JWT_ISSUER.var, "JWT needs the expected issuer")),
        (_, None, _) => Err(invalid(
            t::JWT_AUDIENCE.var,
            "JWT needs the expected audience",
        )),
        (_, _, None) => Err(invalid(
            t::JWT_JWKS_FILE.var,
            "JWT needs a JWKS file or URL",
        )),
    }
}

pub(super) fn policy(
    r: &mut Reader,
    dependent_actions: Vec<DependentRule>,
) -> Result<crate::policy::Settings, Error> {
    let dir = r.value(
        &t::POLICY_DIR,
        PathBuf::from(super::DEFAULT_POLICY_DIR),
        |text| Ok(PathBuf::from(text)),
        |p| p.display().to_string(),
    )?;
    let account_id = r
        .optional(&t::ACCOUNT_ID, |id| {
            if !crate::account::AccountId::is_valid(id) {
                Err(format!(
                    "{id:?} is not an Alibaba Cloud account ID (digits)"
                ))
            } else {
                Ok(id.to_owned())
            }
        })?
        .map(|(_, id)| id);
    r.note(
        t::DEPENDENT_ACTIONS.key,
        dependent_actions.len().to_string(),
    );
    Ok(crate::policy::Settings {
        dir,
        account_id,
        dependent_actions,
        shadow_dir: r.path(&t::SHADOW_DIR)?.map(|(_, d)| d),
    })
}

pub(super) fn instance_lookup(r: &mut Reader) -> Result<Option<lookup::Config>, Error> {
    let on = r.boolean(&t::INSTANCE_LOOKUP, false)?;
    let d = lookup::Config::default();
    let config = lookup::Config {
        ttl: r.duration(&t::INSTANCE_LOOKUP_TTL, d.ttl)?,
        max_instances: r.count_u64(&t::INSTANCE_LOOKUP_MAX_INSTANCES, d.max_instances)?,
        max_per_second: r.count_u32(&t::INSTANCE_LOOKUP_MAX_PER_SECOND, d.max_per_second)?,
        max_per_second_per_caller: r.count_u32(
            &t::INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER,
            d.max_per_second_per_caller,
        )?,
    };
    // Checked whether or not the lookup is on, so that turning it on later
    // cannot meet a settings file that was accepted before.
    if config.max_per_second_per_caller > config.max_per_second {
        return Err(invalid(
            t::INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER.key,
            format!(
                "{} is more than policy.instance_lookup.max_per_second ({})",
                config.max_per_second_per_caller, config.max_per_second
            ),
        ));
    }
    Ok(on.then_some(config))
}
