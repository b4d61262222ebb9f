//! Every setting, read and checked before any port is bound.
//!
//! Sources, later ones winning: an optional TOML file (`--config` or
//! `ECS_GATEWAY_CONFIG`), environment variables (prefix `ECS_GATEWAY_`; the
//! credentials keep the official `ALIBABA_CLOUD_*` names), then command-line
//! flags. [`load`] takes a lookup function instead of reading the process
//! environment, so tests pass a map. Errors name the setting at fault.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::credentials::{self, Credentials, Secret};
use crate::identity::{self, JwksSource, JwtConfig};
use crate::policy::DependentRule;
use crate::upstream;

/// The gateway's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Address of the admin HTTP port: /metrics, /healthz, /readyz.
    pub admin_listen: SocketAddr,
    /// The ECS endpoint and timeouts.
    pub upstream: upstream::Config,
    /// Where the signing credentials come from; `None` when none are set
    /// (only the demo, which signs with its simulator's key, accepts that).
    pub credentials: Option<credentials::Config>,
    /// TLS for the gRPC port; `None` serves plaintext.
    pub tls: Option<TlsConfig>,
    /// How callers are identified.
    pub identity: identity::Config,
    /// Authorization.
    pub policy: PolicySettings,
    /// Inbound protection and shutdown.
    pub server: ServerSettings,
}

impl Config {
    /// What is allowed but probably wrong, said at start (WARN) and by
    /// `serve --check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.identity.trust_forwarded_client_cert
            && self.identity.source_address_header
                == identity::forwarded::SourceHeader::ForwardedFor
        {
            warnings.push(
                "identity.trust_forwarded_client_cert is on and callers' addresses come from the last \
                 x-forwarded-for entry: right only behind a sidecar that appends the address it saw \
                 (Envoy's use_remote_address). Istio's inbound sidecar passes a caller's own header \
                 through, so acs:SourceIp would be the caller's choice: set \
                 identity.source_address_header to a header the sidecar overwrites \
                 (docs/security.md, \"Behind a mesh\")"
                    .to_owned(),
            );
        }
        warnings
    }

    /// The effective settings by their settings-file key, with values as the
    /// file writes them (durations as `10s`); secrets are never listed, only
    /// where they come from. `serve --check` prints them.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let path = |p: &std::path::Path| p.display().to_string();
        let u = &self.upstream;
        let s = &self.server;
        let mut out = vec![
            ("listen", self.listen.to_string()),
            ("admin_listen", self.admin_listen.to_string()),
            ("upstream.endpoint", u.endpoint.clone()),
            ("upstream.timeout", d(u.timeout)),
            ("upstream.connect_timeout", d(u.connect_timeout)),
            ("upstream.attempt_timeout", d(u.attempt_timeout)),
            ("upstream.max_attempts", u.max_attempts.to_string()),
            ("upstream.breaker_failures", u.breaker_failures.to_string()),
            ("upstream.breaker_open_for", d(u.breaker_open_for)),
            (
                "server.max_concurrent_calls",
                s.max_concurrent_calls.to_string(),
            ),
            (
                "server.max_concurrent_calls_per_caller",
                s.max_concurrent_calls_per_caller.to_string(),
            ),
            (
                "server.max_concurrent_calls_per_unmapped_caller",
                s.max_concurrent_calls_per_unmapped_caller.to_string(),
            ),
            ("server.receive_timeout", d(s.receive_timeout)),
            ("server.reflection", s.reflection.to_string()),
            (
                "server.max_unauthenticated_streams",
                s.max_unauthenticated_streams.to_string(),
            ),
            (
                "server.max_unauthenticated_streams_per_connection",
                s.max_unauthenticated_streams_per_connection.to_string(),
            ),
            (
                "server.unauthenticated_idle_timeout",
                d(s.unauthenticated_idle_timeout),
            ),
            ("server.request_timeout", d(s.request_timeout)),
            ("server.shutdown_grace", d(s.shutdown_grace)),
            ("policy.dir", path(&self.policy.dir)),
            (
                "policy.account_id",
                self.policy.account_id.clone().unwrap_or_default(),
            ),
            (
                "policy.dependent_actions",
                self.policy.dependent_actions.len().to_string(),
            ),
            (
                "policy.shadow_dir",
                self.policy
                    .shadow_dir
                    .as_deref()
                    .map(path)
                    .unwrap_or_default(),
            ),
            (
                "identity.trust_forwarded_client_cert",
                self.identity.trust_forwarded_client_cert.to_string(),
            ),
            (
                "identity.source_address_header",
                self.identity.source_address_header.name().to_owned(),
            ),
        ];
        match &self.policy.instance_lookup {
            None => out.push(("policy.instance_lookup", "off".to_owned())),
            Some(lookup) => {
                out.push(("policy.instance_lookup.ttl", d(lookup.ttl)));
                out.push((
                    "policy.instance_lookup.max_instances",
                    lookup.max_instances.to_string(),
                ));
                out.push((
                    "policy.instance_lookup.max_per_second",
                    lookup.max_per_second.to_string(),
                ));
                out.push((
                    "policy.instance_lookup.max_per_second_per_caller",
                    lookup.max_per_second_per_caller.to_string(),
                ));
            }
        }
        out.push(match &self.credentials {
            None => ("credentials", "none".to_owned()),
            Some(credentials::Config::Static(_)) => ("credentials", "environment".to_owned()),
            Some(credentials::Config::File { path: p, profile }) => {
                ("credentials.file", format!("{} [{profile}]", path(p)))
            }
        });
        match &self.tls {
            None => out.push(("tls", "off".to_owned())),
            Some(tls) => {
                out.push(("tls.cert", path(&tls.cert)));
                out.push(("tls.key", path(&tls.key)));
                out.push((
                    "tls.client_ca",
                    tls.client_ca.as_deref().map(path).unwrap_or_default(),
                ));
                out.push((
                    "tls.require_client_cert",
                    tls.require_client_cert.to_string(),
                ));
            }
        }
        match &self.identity.jwt {
            None => out.push(("identity.jwt", "off".to_owned())),
            Some(jwt) => {
                out.push(("identity.jwt.issuer", jwt.issuer.clone()));
                out.push(("identity.jwt.audience", jwt.audience.clone()));
                out.push(match &jwt.jwks {
                    JwksSource::File(p) => ("identity.jwt.jwks_file", path(p)),
                    JwksSource::Url(url) => ("identity.jwt.jwks_url", url.clone()),
                });
                out.push(("identity.jwt.leeway", d(jwt.leeway)));
                out.push(("identity.jwt.jwks_refresh", d(jwt.jwks_refresh)));
                out.push(("identity.jwt.jwks_max_age", d(jwt.jwks_max_age)));
            }
        }
        out
    }
}

/// Inbound protection and shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Calls served at once; more are refused at once with
    /// RESOURCE_EXHAUSTED instead of queueing.
    pub max_concurrent_calls: usize,
    /// Calls one identity may have served (and messages it may have
    /// arriving) at once, so that one caller cannot take every place.
    pub max_concurrent_calls_per_caller: usize,
    /// The same for an identity no principal maps (its calls are denied);
    /// all such identities together get `max_concurrent_calls_per_caller`.
    pub max_concurrent_calls_per_unmapped_caller: usize,
    /// Longest wait for a call's request message; until it has arrived the
    /// call holds no place.
    pub receive_timeout: Duration,
    /// Serve gRPC server reflection (v1 and v1alpha); off in `serve` by
    /// default, on in the demo.
    pub reflection: bool,
    /// Health and reflection streams open at once, in all.
    pub max_unauthenticated_streams: usize,
    /// Health and reflection streams open at once on one connection.
    pub max_unauthenticated_streams_per_connection: usize,
    /// Longest a health or reflection stream's open request side may send
    /// nothing.
    pub unauthenticated_idle_timeout: Duration,
    /// Longest a call may take when the caller sets no deadline.
    pub request_timeout: Duration,
    /// How long calls in flight may finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 512,
            max_concurrent_calls_per_caller: 128,
            max_concurrent_calls_per_unmapped_caller: 4,
            receive_timeout: Duration::from_secs(5),
            reflection: false,
            max_unauthenticated_streams: 64,
            max_unauthenticated_streams_per_connection: 8,
            unauthenticated_idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// TLS settings of the gRPC port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
    /// CA bundle for client certificates (PEM): enables mTLS.
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate.
    pub require_client_cert: bool,
}

/// Authorization settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// The policy directory.
    pub dir: PathBuf,
    /// The account owning the instances, for ARNs; required to serve.
    pub account_id: Option<String>,
    /// Dependent actions beyond the catalogue's.
    pub dependent_actions: Vec<DependentRule>,
    /// Candidate policies decided beside those in force (shadow mode).
    pub shadow_dir: Option<PathBuf>,
    /// Instances' attributes from ECS (`DescribeInstances`); `None`: from
    /// `entities.json` only.
    pub instance_lookup: Option<crate::lookup::Config>,
}

/// Default policy directory.
pub const DEFAULT_POLICY_DIR: &str = "policies";

/// Default gRPC listen address of `serve`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:50051";
/// Default admin listen address of `serve`.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9090";

/// Settings given as command-line flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--upstream-endpoint`.
    pub upstream_endpoint: Option<String>,
    /// `--upstream-timeout`.
    pub upstream_timeout: Option<String>,
    /// `--credentials-file`.
    pub credentials_file: Option<PathBuf>,
    /// `--policies`.
    pub policy_dir: Option<PathBuf>,
    /// `--account-id`.
    pub account_id: Option<String>,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is wrong.
    #[error("setting {setting}: {problem}")]
    Invalid {
        /// The setting, as the user wrote it (flag, variable or key).
        setting: String,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// The config file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    admin_listen: Option<String>,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    credentials: FileCredentials,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    identity: FileIdentity,
    #[serde(default)]
    policy: FilePolicy,
    #[serde(default)]
    server: FileServer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    require_client_cert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    trust_forwarded_client_cert: Option<bool>,
    source_address_header: Option<String>,
    #[serde(default)]
    jwt: FileJwt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwt {
    issuer: Option<String>,
    audience: Option<String>,
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    leeway: Option<String>,
    jwks_refresh: Option<String>,
    jwks_max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    dir: Option<String>,
    account_id: Option<String>,
    shadow_dir: Option<String>,
    #[serde(default)]
    dependent_actions: Vec<DependentRule>,
    #[serde(default)]
    instance_lookup: FileLookup,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLookup {
    enabled: Option<bool>,
    ttl: Option<String>,
    max_instances: Option<u64>,
    max_per_second: Option<u32>,
    max_per_second_per_caller: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    endpoint: Option<String>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    attempt_timeout: Option<String>,
    max_attempts: Option<u32>,
    breaker_failures: Option<u32>,
    breaker_open_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    max_concurrent_calls: Option<usize>,
    max_concurrent_calls_per_caller: Option<usize>,
    max_concurrent_calls_per_unmapped_caller: Option<usize>,
    receive_timeout: Option<String>,
    reflection: Option<bool>,
    max_unauthenticated_streams: Option<usize>,
    max_unauthenticated_streams_per_connection: Option<usize>,
    unauthenticated_idle_timeout: Option<String>,
    request_timeout: Option<String>,
    shutdown_grace: Option<String>,
}

/// Secrets never go in this file: only where to find them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredentials {
    file: Option<PathBuf>,
    profile: Option<String>,
}

fn invalid(setting: &str, problem: impl Into<String>) -> Error {
    Error::Invalid {
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

/// Picks the last source that sets a value and remembers its name, so an
/// error can say which flag, variable or key held the bad value.
fn pick<const N: usize>(sources: [(&str, Option<String>); N]) -> Option<(String, String)> {
    sources
        .into_iter()
        .rev()
        .find_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
}

fn boolean(setting: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(invalid(setting, format!("{other:?} is not true or false"))),
    }
}

fn duration(setting: &str, value: &str) -> Result<Duration, Error> {
    let d = humantime::parse_duration(value).map_err(|e| {
        invalid(
            setting,
            format!("{value:?} is not a duration such as 10s or 500ms ({e})"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(setting, "must be greater than zero"));
    }
    Ok(d)
}

/// Checks an endpoint URL: http or https, a host, no query; `{region}` is
/// replaced per call. Plain http only to a loopback host (a local simulator):
/// anywhere else signed calls must not travel in the clear.
fn endpoint(setting: &str, value: &str) -> Result<String, Error> {
    let url = reqwest::Url::parse(&value.replace("{region}", "cn-hangzhou"))
        .map_err(|e| invalid(setting, format!("{value:?} is not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => return Err(invalid(setting, format!("{value:?} has no host"))),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                setting,
                format!("{value:?}: plain http is only allowed to a loopback host; use https"),
            ));
        }
        other => {
            return Err(invalid(
                setting,
                format!("{value:?}: scheme {other} is not http or https"),
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            setting,
            format!("{value:?} must not have a query or fragment"),
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// The parser's message with the line number, but not the line itself: a
/// misplaced secret must not be quoted into a log.
fn toml_message(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", error.message())
        }
        None => error.message().to_owned(),
    }
}

/// Reads every setting.
///
/// # Errors
///
/// The first setting that is missing or wrong, by name.
pub fn load(overrides: &Overrides, env: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let file_path = overrides
        .config_file
        .clone()
        .or_else(|| env("ECS_GATEWAY_CONFIG").map(PathBuf::from));
    let file = match &file_path {
        None => File::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            toml::from_str(&text).map_err(|e| Error::Parse {
                path: path.clone(),
                message: toml_message(&text, &e),
            })?
        }
    };

    let (listen_name, listen) = pick([
        ("listen", file.listen),
        ("ECS_GATEWAY_LISTEN", env("ECS_GATEWAY_LISTEN")),
        ("--listen", overrides.listen.clone()),
    ])
    .unwrap_or_else(|| ("listen".into(), DEFAULT_LISTEN.into()));
    let listen = listen.parse().map_err(|_| {
        invalid(
            &listen_name,
            format!("{listen:?} is not a socket address such as 0.0.0.0:50051"),
        )
    })?;
    let (admin_name, admin_listen) = pick([
        ("admin_listen", file.admin_listen),
        ("ECS_GATEWAY_ADMIN_LISTEN", env("ECS_GATEWAY_ADMIN_LISTEN")),
        ("--admin-listen", overrides.admin_listen.clone()),
    ])
    .unwrap_or_else(|| ("admin_listen".into(), DEFAULT_ADMIN_LISTEN.into()));
    let admin_listen = admin_listen.parse().map_err(|_| {
        invalid(
            &admin_name,
            format!("{admin_listen:?} is not a socket address such as 0.0.0.0:9090"),
        )
    })?;

    let defaults = upstream::Config::default();
    let endpoint = match pick([
        ("upstream.endpoint", file.upstream.endpoint),
        (
            "ECS_GATEWAY_UPSTREAM_ENDPOINT",
            env("ECS_GATEWAY_UPSTREAM_ENDPOINT"),
        ),
        ("--upstream-endpoint", overrides.upstream_endpoint.clone()),
    ]) {
        Some((name, value)) => self::endpoint(&name, &value)?,
        None => defaults.endpoint,
    };
    let timeout = match pick([
        ("upstream.timeout", file.upstream.timeout),
        (
            "ECS_GATEWAY_UPSTREAM_TIMEOUT",
            env("ECS_GATEWAY_UPSTREAM_TIMEOUT"),
        ),
        ("--upstream-timeout", overrides.upstream_timeout.clone()),
    ]) {
        Some((name, value)) => duration(&name, &value)?,
        None => defaults.timeout,
    };
    let connect_timeout = match pick([
        ("upstream.connect_timeout", file.upstream.connect_timeout),
        (
            "ECS_GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
            env("ECS_GATEWAY_UPSTREAM_CONNECT_TIMEOUT"),
        ),
        ("", None),
    ]) {
        Some((name, value)) => duration(&name, &value)?,
        None => defaults.connect_timeout,
    };

    let credentials_file = pick([
        (
            "credentials.file",
            file.credentials.file.map(|p| p.display().to_string()),
        ),
        (
            "ALIBABA_CLOUD_CREDENTIALS_FILE",
            env("ALIBABA_CLOUD_CREDENTIALS_FILE"),
        ),
        (
            "--credentials-file",
            overrides
                .credentials_file
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
    ]);
    let profile = pick([
        ("credentials.profile", file.credentials.profile),
        ("ALIBABA_CLOUD_PROFILE", env("ALIBABA_CLOUD_PROFILE")),
        ("", None),
    ])
    .map_or_else(|| "default".to_owned(), |(_, p)| p);
    let credentials = credentials_config(
        &env,
        credentials_file.map(|(_, p)| PathBuf::from(p)),
        profile,
    )?;

    let tls = tls_config(file.tls, &env)?;
    let identity = identity_config(file.identity, &env)?;
    // A TLS client without a certificate would fall through to the
    // forwarded header and name itself.
    if tls.is_some() && identity.trust_forwarded_client_cert {
        return Err(invalid(
            "identity.trust_forwarded_client_cert",
            "cannot be used with TLS on the gRPC port: a TLS client without a certificate could name itself in x-forwarded-client-cert; trust the header only behind a sidecar that terminates TLS",
        ));
    }

    let dir = pick([
        ("policy.dir", file.policy.dir),
        ("ECS_GATEWAY_POLICY_DIR", env("ECS_GATEWAY_POLICY_DIR")),
        (
            "--policies",
            overrides
                .policy_dir
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
    ])
    .map_or_else(
        || PathBuf::from(DEFAULT_POLICY_DIR),
        |(_, d)| PathBuf::from(d),
    );
    let account_id = match pick([
        ("policy.account_id", file.policy.account_id),
        ("ECS_GATEWAY_ACCOUNT_ID", env("ECS_GATEWAY_ACCOUNT_ID")),
        ("--account-id", overrides.account_id.clone()),
    ]) {
        Some((name, id)) if id.parse::<crate::account::AccountId>().is_err() => {
            return Err(invalid(
                &name,
                format!("{id:?} is not an Alibaba Cloud account ID (digits)"),
            ));
        }
        other => other.map(|(_, id)| id),
    };

    let var = |key: &str, value: Option<String>, name: &str| {
        pick([(key, value), (name, env(name)), ("", None)])
    };
    let dur = |key: &str, value: Option<String>, name: &str, default: Duration| match var(
        key, value, name,
    ) {
        Some((setting, v)) => duration(&setting, &v),
        None => Ok(default),
    };
    let count = |key: &str, value: Option<String>, name: &str, default: usize| match var(
        key, value, name,
    ) {
        Some((setting, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(&setting, format!("{v:?} is not a positive whole number"))),
        None => Ok(default),
    };
    let rate = |key: &str, value: Option<u32>, name: &str, default: u32| {
        count(key, value.map(|n| n.to_string()), name, default as usize)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let attempt_timeout = dur(
        "upstream.attempt_timeout",
        file.upstream.attempt_timeout,
        "ECS_GATEWAY_UPSTREAM_ATTEMPT_TIMEOUT",
        defaults.attempt_timeout,
    )?;
    let max_attempts = count(
        "upstream.max_attempts",
        file.upstream.max_attempts.map(|n| n.to_string()),
        "ECS_GATEWAY_UPSTREAM_MAX_ATTEMPTS",
        defaults.max_attempts as usize,
    )?;
    let breaker_failures = count(
        "upstream.breaker_failures",
        file.upstream.breaker_failures.map(|n| n.to_string()),
        "ECS_GATEWAY_UPSTREAM_BREAKER_FAILURES",
        defaults.breaker_failures as usize,
    )?;
    let breaker_open_for = dur(
        "upstream.breaker_open_for",
        file.upstream.breaker_open_for,
        "ECS_GATEWAY_UPSTREAM_BREAKER_OPEN_FOR",
        defaults.breaker_open_for,
    )?;
    let server_defaults = ServerSettings::default();
    let max_concurrent_calls = count(
        "server.max_concurrent_calls",
        file.server.max_concurrent_calls.map(|n| n.to_string()),
        "ECS_GATEWAY_MAX_CONCURRENT_CALLS",
        server_defaults.max_concurrent_calls,
    )?;
    let server = ServerSettings {
        max_concurrent_calls,
        // A quarter of the places by default: a runaway caller is capped
        // while four busy ones can still fill the gateway.
        max_concurrent_calls_per_caller: count(
            "server.max_concurrent_calls_per_caller",
            file.server
                .max_concurrent_calls_per_caller
                .map(|n| n.to_string()),
            "ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_CALLER",
            (max_concurrent_calls / 4).max(1),
        )?,
        max_concurrent_calls_per_unmapped_caller: count(
            "server.max_concurrent_calls_per_unmapped_caller",
            file.server
                .max_concurrent_calls_per_unmapped_caller
                .map(|n| n.to_string()),
            "ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER",
            server_defaults.max_concurrent_calls_per_unmapped_caller,
        )?,
        receive_timeout: dur(
            "server.receive_timeout",
            file.server.receive_timeout,
            "ECS_GATEWAY_RECEIVE_TIMEOUT",
            server_defaults.receive_timeout,
        )?,
        reflection: match var(
            "server.reflection",
            file.server.reflection.map(|b| b.to_string()),
            "ECS_GATEWAY_REFLECTION",
        ) {
            Some((setting, value)) => boolean(&setting, &value)?,
            None => server_defaults.reflection,
        },
        max_unauthenticated_streams: count(
            "server.max_unauthenticated_streams",
            file.server
                .max_unauthenticated_streams
                .map(|n| n.to_string()),
            "ECS_GATEWAY_MAX_UNAUTHENTICATED_STREAMS",
            server_defaults.max_unauthenticated_streams,
        )?,
        max_unauthenticated_streams_per_connection: count(
            "server.max_unauthenticated_streams_per_connection",
            file.server
                .max_unauthenticated_streams_per_connection
                .map(|n| n.to_string()),
            "ECS_GATEWAY_MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION",
            server_defaults.max_unauthenticated_streams_per_connection,
        )?,
        unauthenticated_idle_timeout: dur(
            "server.unauthenticated_idle_timeout",
            file.server.unauthenticated_idle_timeout,
            "ECS_GATEWAY_UNAUTHENTICATED_IDLE_TIMEOUT",
            server_defaults.unauthenticated_idle_timeout,
        )?,
        request_timeout: dur(
            "server.request_timeout",
            file.server.request_timeout,
            "ECS_GATEWAY_REQUEST_TIMEOUT",
            server_defaults.request_timeout,
        )?,
        shutdown_grace: dur(
            "server.shutdown_grace",
            file.server.shutdown_grace,
            "ECS_GATEWAY_SHUTDOWN_GRACE",
            server_defaults.shutdown_grace,
        )?,
    };

    if server.max_concurrent_calls_per_unmapped_caller > server.max_concurrent_calls_per_caller {
        return Err(invalid(
            "server.max_concurrent_calls_per_unmapped_caller",
            format!(
                "{} is more than server.max_concurrent_calls_per_caller ({})",
                server.max_concurrent_calls_per_unmapped_caller,
                server.max_concurrent_calls_per_caller
            ),
        ));
    }
    if server.max_unauthenticated_streams_per_connection > server.max_unauthenticated_streams {
        return Err(invalid(
            "server.max_unauthenticated_streams_per_connection",
            format!(
                "{} is more than server.max_unauthenticated_streams ({})",
                server.max_unauthenticated_streams_per_connection,
                server.max_unauthenticated_streams
            ),
        ));
    }
    if server.max_concurrent_calls_per_caller > server.max_concurrent_calls {
        return Err(invalid(
            "server.max_concurrent_calls_per_caller",
            format!(
                "{} is more than server.max_concurrent_calls ({})",
                server.max_concurrent_calls_per_caller, server.max_concurrent_calls
            ),
        ));
    }
    // The gateway's own answer, which carries the client_token, must come
    // before the server cancels the call at request_timeout: the upstream
    // budget has to end first, message reception included.
    if timeout + server.receive_timeout >= server.request_timeout {
        return Err(invalid(
            "upstream.timeout",
            format!(
                "{timeout:?} plus server.receive_timeout ({:?}) is not shorter than server.request_timeout ({:?}): \
                 calls could be cancelled while ECS is still being called, and their callers would not get their client_token back",
                server.receive_timeout, server.request_timeout
            ),
        ));
    }

    let lookup_defaults = crate::lookup::Config::default();
    let lookup_on = match var(
        "policy.instance_lookup.enabled",
        file.policy.instance_lookup.enabled.map(|b| b.to_string()),
        "ECS_GATEWAY_INSTANCE_LOOKUP",
    ) {
        Some((setting, value)) => boolean(&setting, &value)?,
        None => false,
    };
    let instance_lookup = crate::lookup::Config {
        ttl: dur(
            "policy.instance_lookup.ttl",
            file.policy.instance_lookup.ttl,
            "ECS_GATEWAY_INSTANCE_LOOKUP_TTL",
            lookup_defaults.ttl,
        )?,
        max_instances: count(
            "policy.instance_lookup.max_instances",
            file.policy
                .instance_lookup
                .max_instances
                .map(|n| n.to_string()),
            "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_INSTANCES",
            usize::try_from(lookup_defaults.max_instances).unwrap_or(usize::MAX),
        )? as u64,
        max_per_second: rate(
            "policy.instance_lookup.max_per_second",
            file.policy.instance_lookup.max_per_second,
            "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_PER_SECOND",
            lookup_defaults.max_per_second,
        )?,
        max_per_second_per_caller: rate(
            "policy.instance_lookup.max_per_second_per_caller",
            file.policy.instance_lookup.max_per_second_per_caller,
            "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER",
            lookup_defaults.max_per_second_per_caller,
        )?,
    };
    if instance_lookup.max_per_second_per_caller > instance_lookup.max_per_second {
        return Err(invalid(
            "policy.instance_lookup.max_per_second_per_caller",
            format!(
                "{} is more than policy.instance_lookup.max_per_second ({})",
                instance_lookup.max_per_second_per_caller, instance_lookup.max_per_second
            ),
        ));
    }

    Ok(Config {
        listen,
        admin_listen,
        upstream: upstream::Config {
            endpoint,
            timeout,
            connect_timeout,
            attempt_timeout,
            max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            breaker_failures: u32::try_from(breaker_failures).unwrap_or(u32::MAX),
            breaker_open_for,
            ..defaults
        },
        server,
        credentials,
        tls,
        identity,
        policy: PolicySettings {
            dir,
            account_id,
            dependent_actions: file.policy.dependent_actions,
            shadow_dir: pick([
                ("policy.shadow_dir", file.policy.shadow_dir),
                (
                    "ECS_GATEWAY_POLICY_SHADOW_DIR",
                    env("ECS_GATEWAY_POLICY_SHADOW_DIR"),
                ),
            ])
            .map(|(_, d)| PathBuf::from(d)),
            instance_lookup: lookup_on.then_some(instance_lookup),
        },
    })
}

fn tls_config(
    file: FileTls,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<TlsConfig>, Error> {
    let path = |key: &str, value: Option<String>, var: &str| {
        pick([(key, value), (var, env(var)), ("", None)]).map(|(name, v)| (name, PathBuf::from(v)))
    };
    let cert = path("tls.cert", file.cert, "ECS_GATEWAY_TLS_CERT");
    let key = path("tls.key", file.key, "ECS_GATEWAY_TLS_KEY");
    let client_ca = path("tls.client_ca", file.client_ca, "ECS_GATEWAY_TLS_CLIENT_CA");
    let require = match pick([
        (
            "tls.require_client_cert",
            file.require_client_cert.map(|b| b.to_string()),
        ),
        (
            "ECS_GATEWAY_TLS_REQUIRE_CLIENT_CERT",
            env("ECS_GATEWAY_TLS_REQUIRE_CLIENT_CERT"),
        ),
        ("", None),
    ]) {
        Some((name, value)) => boolean(&name, &value)?,
        None => true,
    };
    match (cert, key) {
        (Some((_, cert)), Some((_, key))) => Ok(Some(TlsConfig {
            cert,
            key,
            client_ca: client_ca.map(|(_, p)| p),
            require_client_cert: require,
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

fn identity_config(
    file: FileIdentity,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<identity::Config, Error> {
    let trust = match pick([
        (
            "identity.trust_forwarded_client_cert",
            file.trust_forwarded_client_cert.map(|b| b.to_string()),
        ),
        (
            "ECS_GATEWAY_TRUST_FORWARDED_CLIENT_CERT",
            env("ECS_GATEWAY_TRUST_FORWARDED_CLIENT_CERT"),
        ),
        ("", None),
    ]) {
        Some((name, value)) => boolean(&name, &value)?,
        None => false,
    };
    let source_address_header = match pick([
        ("identity.source_address_header", file.source_address_header),
        (
            "ECS_GATEWAY_SOURCE_ADDRESS_HEADER",
            env("ECS_GATEWAY_SOURCE_ADDRESS_HEADER"),
        ),
        ("", None),
    ]) {
        None => identity::forwarded::SourceHeader::ForwardedFor,
        Some((_, name)) if name.eq_ignore_ascii_case("x-forwarded-for") => {
            identity::forwarded::SourceHeader::ForwardedFor
        }
        Some((setting, name)) => {
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&setting, format!("{name:?} is not an HTTP header name")))?;
            // Headers the gateway reads for other things, or that HTTP/2
            // and gRPC reserve, cannot carry the address.
            if matches!(
                header.as_str(),
                "x-forwarded-client-cert" | "authorization" | "host" | "te" | "content-type"
            ) || header.as_str().starts_with("grpc-")
            {
                return Err(invalid(
                    &setting,
                    format!("{name:?} cannot carry the caller's address"),
                ));
            }
            identity::forwarded::SourceHeader::Overwritten(header)
        }
    };
    let jwt = file.jwt;
    let get = |key: &str, value: Option<String>, var: &str| {
        pick([(key, value), (var, env(var)), ("", None)])
    };
    let issuer = get("identity.jwt.issuer", jwt.issuer, "ECS_GATEWAY_JWT_ISSUER");
    let audience = get(
        "identity.jwt.audience",
        jwt.audience,
        "ECS_GATEWAY_JWT_AUDIENCE",
    );
    let jwks_file = get(
        "identity.jwt.jwks_file",
        jwt.jwks_file,
        "ECS_GATEWAY_JWT_JWKS_FILE",
    );
    let jwks_url = get(
        "identity.jwt.jwks_url",
        jwt.jwks_url,
        "ECS_GATEWAY_JWT_JWKS_URL",
    );
    let leeway = match get("identity.jwt.leeway", jwt.leeway, "ECS_GATEWAY_JWT_LEEWAY") {
        Some((name, value)) => humantime::parse_duration(&value)
            .map_err(|e| invalid(&name, format!("{value:?} is not a duration ({e})")))?,
        None => Duration::from_secs(30),
    };
    let jwks_refresh = match get(
        "identity.jwt.jwks_refresh",
        jwt.jwks_refresh,
        "ECS_GATEWAY_JWT_JWKS_REFRESH",
    ) {
        Some((name, value)) => duration(&name, &value)?,
        None => Duration::from_secs(300),
    };
    let jwks_max_age = match get(
        "identity.jwt.jwks_max_age",
        jwt.jwks_max_age,
        "ECS_GATEWAY_JWT_JWKS_MAX_AGE",
    ) {
        Some((name, value)) => {
            let max_age = duration(&name, &value)?;
            if max_age < jwks_refresh {
                return Err(invalid(
                    &name,
                    format!(
                        "{max_age:?} is shorter than the JWKS refresh interval ({jwks_refresh:?}): keys would expire before their refresh"
                    ),
                ));
            }
            max_age
        }
        None => (jwks_refresh * 12).max(Duration::from_secs(3600)),
    };
    let jwt = match (issuer, audience, jwks_file, jwks_url) {
        (None, None, None, None) => None,
        (Some((_, issuer)), Some((_, audience)), file, url) => {
            let jwks = match (file, url) {
                (Some((_, path)), None) => JwksSource::File(PathBuf::from(path)),
                (None, Some((name, url))) => JwksSource::Url(endpoint(&name, &url)?),
                (Some((name, _)), Some(_)) => {
                    return Err(invalid(&name, "set a JWKS file or a JWKS URL, not both"));
                }
                (None, None) => {
                    return Err(invalid(
                        "ECS_GATEWAY_JWT_JWKS_FILE",
                        "JWT needs a JWKS file or URL",
                    ));
                }
            };
            Some(JwtConfig {
                issuer,
                audience,
                jwks,
                leeway,
                jwks_refresh,
                jwks_max_age,
            })
        }
        (None, ..) => {
            return Err(invalid(
                "ECS_GATEWAY_JWT_ISSUER",
                "JWT needs the expected issuer",
            ));
        }
        (_, None, ..) => {
            return Err(invalid(
                "ECS_GATEWAY_JWT_AUDIENCE",
                "JWT needs the expected audience",
            ));
        }
    };
    Ok(identity::Config {
        jwt,
        trust_forwarded_client_cert: trust,
        source_address_header,
    })
}

/// The official SDKs' order: an AccessKey pair in the environment, else a
/// credentials file.
fn credentials_config(
    env: &impl Fn(&str) -> Option<String>,
    file: Option<PathBuf>,
    profile: String,
) -> Result<Option<credentials::Config>, Error> {
    const ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
    const SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
    const TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
    let non_empty = |name| env(name).filter(|v: &String| !v.is_empty());
    match (non_empty(ID), non_empty(SECRET)) {
        (Some(access_key_id), Some(secret)) => Ok(Some(credentials::Config::Static(Credentials {
            access_key_id,
            access_key_secret: Secret::new(secret),
            security_token: non_empty(TOKEN).map(Secret::new),
        }))),
        (Some(_), None) => Err(invalid(SECRET, format!("is not set but {ID} is: set both"))),
        (None, Some(_)) => Err(invalid(ID, format!("is not set but {SECRET} is: set both"))),
        (None, None) => Ok(file.map(|path| credentials::Config::File { path, profile })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_with(overrides: &Overrides, vars: &[(&str, &str)]) -> Result<Config, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        load(overrides, |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_without_any_setting() {
        let c = load_with(&Overrides::default(), &[]).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.upstream, upstream::Config::default());
        assert_eq!(c.credentials, None);
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let dir = std::env::temp_dir().join(format!("ecs-gw-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\n[upstream]\nendpoint = \"https://file.example\"\ntimeout = \"1s\"\n\
             connect_timeout = \"250ms\"\n[credentials]\nfile = \"/creds\"\nprofile = \"prod\"\n",
        )
        .unwrap();
        let mut overrides = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        let c = load_with(&overrides, &[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.upstream.endpoint, "https://file.example");
        assert_eq!(c.upstream.timeout, Duration::from_secs(1));
        assert_eq!(c.upstream.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            c.credentials,
            Some(credentials::Config::File {
                path: "/creds".into(),
                profile: "prod".into()
            })
        );

        let env = [
            ("ECS_GATEWAY_LISTEN", "127.0.0.1:2"),
            ("ECS_GATEWAY_UPSTREAM_TIMEOUT", "2s"),
        ];
        let c = load_with(&overrides, &env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!(c.upstream.timeout, Duration::from_secs(2));

        overrides.listen = Some("127.0.0.1:3".into());
        overrides.upstream_timeout = Some("3s".into());
        let c = load_with(&overrides, &env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3".parse().unwrap());
        assert_eq!(c.upstream.timeout, Duration::from_secs(3));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tls_and_a_trusted_forwarded_header_exclude_each_other() {
        let error = load_with(
            &Overrides::default(),
            &[
                ("ECS_GATEWAY_TLS_CERT", "/tls/tls.crt"),
                ("ECS_GATEWAY_TLS_KEY", "/tls/tls.key"),
                ("ECS_GATEWAY_TRUST_FORWARDED_CLIENT_CERT", "true"),
            ],
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("identity.trust_forwarded_client_cert"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ECS_GATEWAY_LISTEN", "nope")], "ECS_GATEWAY_LISTEN"),
            (
                &[("ECS_GATEWAY_UPSTREAM_TIMEOUT", "soon")],
                "ECS_GATEWAY_UPSTREAM_TIMEOUT",
            ),
            (
                &[("ECS_GATEWAY_UPSTREAM_TIMEOUT", "0s")],
                "greater than zero",
            ),
            (
                &[("ECS_GATEWAY_UPSTREAM_TIMEOUT", "60s")],
                "not shorter than server.request_timeout",
            ),
            (
                // Equal budgets let the server cancel a call, token and
                // all, while ECS is still being called.
                &[
                    ("ECS_GATEWAY_UPSTREAM_TIMEOUT", "25s"),
                    ("ECS_GATEWAY_REQUEST_TIMEOUT", "30s"),
                ],
                "would not get their client_token back",
            ),
            (
                &[
                    ("ECS_GATEWAY_MAX_CONCURRENT_CALLS", "8"),
                    ("ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_CALLER", "9"),
                ],
                "server.max_concurrent_calls_per_caller",
            ),
            (
                &[("ECS_GATEWAY_JWT_JWKS_MAX_AGE", "1s")],
                "shorter than the JWKS refresh interval",
            ),
            (
                &[("ECS_GATEWAY_MAX_CONCURRENT_CALLS", "0")],
                "ECS_GATEWAY_MAX_CONCURRENT_CALLS",
            ),
            (
                &[("ECS_GATEWAY_UPSTREAM_ENDPOINT", "http://ecs.example.com")],
                "loopback",
            ),
            (
                &[("ECS_GATEWAY_UPSTREAM_ENDPOINT", "ftp://127.0.0.1")],
                "scheme ftp",
            ),
            (
                &[("ECS_GATEWAY_UPSTREAM_ENDPOINT", "https://x/?a=1")],
                "query",
            ),
            (
                &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK")],
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ),
            (
                &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s")],
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
            ),
        ];
        for (vars, expected) in cases {
            let err = load_with(&Overrides::default(), vars)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
        let overrides = Overrides {
            config_file: Some("/nonexistent/gateway.toml".into()),
            ..Overrides::default()
        };
        assert!(
            load_with(&overrides, &[])
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/gateway.toml")
        );
    }

    #[test]
    fn rejects_unknown_and_secret_keys_in_the_file() {
        let dir = std::env::temp_dir().join(format!("ecs-gw-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(&path, "[credentials]\naccess_key_secret = \"hunter2\"\n").unwrap();
        let overrides = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        let err = load_with(&overrides, &[]).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("unknown field"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn environment_key_pair_beats_credentials_file() {
        let env = [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "S"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "T"),
            ("ALIBABA_CLOUD_CREDENTIALS_FILE", "/creds"),
        ];
        let c = load_with(&Overrides::default(), &env).unwrap();
        let Some(credentials::Config::Static(creds)) = c.credentials else {
            panic!("expected static credentials");
        };
        assert_eq!(creds.access_key_id, "AK");
        assert_eq!(creds.security_token.as_ref().map(Secret::expose), Some("T"));
    }
}
