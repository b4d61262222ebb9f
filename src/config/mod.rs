//! Every setting, read and checked before any port is bound.
//!
//! Sources, later ones winning: an optional TOML file (`--config` or
//! `ECS_GATEWAY_CONFIG`), environment variables (prefix `ECS_GATEWAY_`; the
//! credentials keep the official `ALIBABA_CLOUD_*` names), then `serve`'s
//! flags. [`load`] takes a lookup function instead of reading the process
//! environment, so tests pass a map. Errors name the setting at fault as
//! its source named it.
//!
//! - [`table`]: every setting's file key, variable and flag, one row each;
//! - `read`: the typed readers (durations, counts, booleans, endpoints),
//!   which source won, and the unknown-key check of the file;
//! - `sections`: one function per section, building each stage's `Config`;
//! - `rules`: the rules across settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::credentials;
use crate::identity;
use crate::policy::DependentRule;
use crate::upstream;

mod read;
mod rules;
mod sections;
pub mod table;

use read::Reader;
pub use read::{Effective, Flags};

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
    /// How STS is reached (RRSA, `AssumeRole`) and what sessions ask for.
    pub sts: credentials::sts::Config,
    /// The other accounts served (`[[accounts]]`), each through a role.
    pub accounts: Vec<credentials::Account>,
    /// TLS for the gRPC port; `None` serves plaintext.
    pub tls: Option<TlsConfig>,
    /// How callers are identified.
    pub identity: identity::Config,
    /// Authorization.
    pub policy: crate::policy::Settings,
    /// Instances' attributes from ECS (`DescribeInstances`, the settings'
    /// `policy.instance_lookup`); `None`: from `entities.json` only.
    pub lookup: Option<crate::lookup::Config>,
    /// Reflection, the calls' deadline, shutdown.
    pub server: ServerSettings,
    /// Which calls are taken in (places per caller and in all, the message's
    /// arrival, health and reflection streams).
    pub admission: crate::admission::Limits,
    /// Every setting as read, with the source that won, for
    /// `serve --check`.
    pub effective: Vec<Effective>,
}

impl Config {
    /// Where a setting's value came from, for messages about it:
    /// `listen, from ECS_GATEWAY_LISTEN`, or for a default the names that
    /// would set it.
    pub fn origin(&self, setting: &table::Setting) -> String {
        let from = self
            .effective
            .iter()
            .find(|e| e.key == setting.key)
            .and_then(|e| e.from.as_deref());
        match from {
            Some(from) => format!("{}, from {from}", setting.key),
            None => {
                let names: Vec<&str> = [setting.flag, setting.var, setting.key]
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect();
                format!("{} by default: set {}", setting.key, names.join(", "))
            }
        }
    }

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
}

/// The server's own settings (admission has its own: [`Config::admission`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Serve gRPC server reflection (v1 and v1alpha); off in `serve` by
    /// default, on in the demo.
    pub reflection: bool,
    /// Longest a call may take when the caller sets no deadline (and the
    /// cap of those that do).
    pub request_timeout: Duration,
    /// How long calls in flight may finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            reflection: false,
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

/// Default policy directory.
pub const DEFAULT_POLICY_DIR: &str = "policies";

/// Default gRPC listen address of `serve`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:50051";
/// Default admin listen address of `serve`.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9090";

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

fn invalid(setting: &str, problem: impl Into<String>) -> Error {
    Error::Invalid {
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

/// The settings file's lists of tables, read by serde:
/// `[[policy.dependent_actions]]` and `[[accounts]]`.
fn lists(
    path: &std::path::Path,
    text: &str,
) -> Result<(Vec<DependentRule>, Vec<credentials::Account>), Error> {
    #[derive(Default, Deserialize)]
    struct File {
        #[serde(default)]
        policy: Policy,
        #[serde(default)]
        accounts: Vec<credentials::Account>,
    }
    #[derive(Default, Deserialize)]
    struct Policy {
        #[serde(default)]
        dependent_actions: Vec<DependentRule>,
    }
    toml::from_str::<File>(text)
        .map(|file| (file.policy.dependent_actions, file.accounts))
        .map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: read::toml_message(text, &e),
        })
}

/// Reads every setting: the settings file (`--config` or
/// `ECS_GATEWAY_CONFIG`), then the environment, then `flags`, later ones
/// winning; then checks the rules across settings.
///
/// # Errors
///
/// The first setting that is missing or wrong, by the name its source gave
/// it.
pub fn load(flags: &Flags, env: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let env: &dyn Fn(&str) -> Option<String> = &env;
    let path = flags
        .get(&table::CONFIG)
        .map(PathBuf::from)
        .or_else(|| env(table::CONFIG.var).map(PathBuf::from));
    let text = match &path {
        None => None,
        Some(path) => Some(std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?),
    };
    let file = path.as_deref().zip(text.as_deref());
    let mut r = Reader::new(file, env, flags)?;
    let (dependent, accounts) = match file {
        Some((path, text)) => lists(path, text)?,
        None => Default::default(),
    };
    // Read in the table's order, which is the order `serve --check` prints.
    let listen = sections::address(&mut r, &table::LISTEN, DEFAULT_LISTEN)?;
    let admin_listen = sections::address(&mut r, &table::ADMIN_LISTEN, DEFAULT_ADMIN_LISTEN)?;
    let upstream = sections::upstream(&mut r)?;
    let server = sections::server(&mut r)?;
    let admission = sections::admission(&mut r, server.request_timeout)?;
    let (credentials, sts) = sections::credentials(&mut r)?;
    let config = Config {
        listen,
        admin_listen,
        upstream,
        server,
        admission,
        credentials,
        sts,
        accounts: sections::accounts(&mut r, accounts),
        tls: sections::tls(&mut r)?,
        identity: sections::identity(&mut r)?,
        policy: sections::policy(&mut r, dependent)?,
        lookup: sections::instance_lookup(&mut r)?,
        effective: Vec::new(),
    };
    rules::check(&config)?;
    Ok(Config {
        effective: r.into_effective(),
        ..config
    })
}

#[cfg(test)]
mod tests;
