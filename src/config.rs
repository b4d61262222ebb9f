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
use crate::upstream;

/// The gateway's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// The ECS endpoint and timeouts.
    pub upstream: upstream::Config,
    /// Where the signing credentials come from; `None` when none are set
    /// (only the demo, which signs with its simulator's key, accepts that).
    pub credentials: Option<credentials::Config>,
}

/// Default gRPC listen address of `serve`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:50051";

/// Settings given as command-line flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--upstream-endpoint`.
    pub upstream_endpoint: Option<String>,
    /// `--upstream-timeout`.
    pub upstream_timeout: Option<String>,
    /// `--credentials-file`.
    pub credentials_file: Option<PathBuf>,
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
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    credentials: FileCredentials,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    endpoint: Option<String>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
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
fn pick(sources: [(&str, Option<String>); 3]) -> Option<(String, String)> {
    sources
        .into_iter()
        .rev()
        .find_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
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

    Ok(Config {
        listen,
        upstream: upstream::Config {
            endpoint,
            timeout,
            connect_timeout,
        },
        credentials,
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
