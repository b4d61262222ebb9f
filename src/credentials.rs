//! The gateway's own Alibaba Cloud credentials, used by the signing stage.
//!
//! They come from the official SDKs' environment variables
//! (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//! `ALIBABA_CLOUD_SECURITY_TOKEN`) or from a credentials file in the SDKs' INI
//! format, which is re-read when it changes so that a rotated Kubernetes
//! secret takes effect without a restart. Secrets print as `***` in `Debug`
//! and never appear in an error message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// A secret string: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the signer only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An AccessKey pair, with an STS token when the key is temporary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The AccessKey ID (not secret: ECS echoes it in errors).
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: Secret,
    /// The STS security token, sent as `SecurityToken`.
    pub security_token: Option<Secret>,
}

/// Where credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Config {
    /// Fixed credentials, from the environment or flags.
    Static(Credentials),
    /// A credentials file and the profile (INI section) to use.
    File {
        /// Path of the INI file.
        path: PathBuf,
        /// Section name, `default` unless set.
        profile: String,
    },
}

/// Why credentials could not be had. Messages name the file and the key,
/// never a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read credentials file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid INI.
    #[error("credentials file {path} is not valid INI: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, which quotes no value.
        reason: String,
    },
    /// The profile is missing or incomplete.
    #[error("credentials file {path}: profile [{profile}] {problem}")]
    Profile {
        /// The file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// What is wrong.
        problem: String,
    },
}

/// Parses the Alibaba Cloud credentials INI format:
///
/// ```ini
/// [default]
/// type = access_key          # or sts
/// access_key_id = LTAI...
/// access_key_secret = ...
/// security_token = ...       # sts only
/// ```
///
/// # Errors
///
/// [`Error::Parse`] or [`Error::Profile`], naming `path` and the key at fault.
pub fn parse_file(text: &str, path: &Path, profile: &str) -> Result<Credentials, Error> {
    let ini = ini::Ini::load_from_str(text).map_err(|e| Error::Parse {
        path: path.to_owned(),
        reason: format!("line {}, column {}", e.line, e.col),
    })?;
    let problem = |problem: String| Error::Profile {
        path: path.to_owned(),
        profile: profile.to_owned(),
        problem,
    };
    let section = ini
        .section(Some(profile))
        .ok_or_else(|| problem("is missing".into()))?;
    let get = |key: &str| {
        section
            .get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| problem(format!("has no {key}")))
    };
    let kind = section.get("type").map_or("access_key", str::trim);
    let security_token = match kind {
        "access_key" => None,
        "sts" => Some(Secret::new(get("security_token")?)),
        other => {
            return Err(problem(format!(
                "has type {other:?}: expected access_key or sts"
            )));
        }
    };
    Ok(Credentials {
        access_key_id: get("access_key_id")?.to_owned(),
        access_key_secret: Secret::new(get("access_key_secret")?),
        security_token,
    })
}

/// How often a credentials file's modification time is checked.
const RECHECK: Duration = Duration::from_secs(1);

struct Cached {
    credentials: Arc<Credentials>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// Hands out the current credentials; for a file, re-reads it when its
/// modification time changes (checked at most once a second, so the hot path
/// costs a lock and a clock read). A file that becomes unreadable or invalid
/// keeps the last good credentials and logs why.
pub struct Provider {
    config: Config,
    cache: RwLock<Cached>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Loads the credentials once, so a bad setting fails at start-up.
    ///
    /// # Errors
    ///
    /// The file cannot be read or lacks the profile's keys.
    pub fn build(self) -> Result<Provider, Error> {
        let (credentials, modified) = match &self {
            Config::Static(c) => (c.clone(), None),
            Config::File { path, profile } => read_file(path, profile)?,
        };
        Ok(Provider {
            config: self,
            cache: RwLock::new(Cached {
                credentials: Arc::new(credentials),
                modified,
                checked: Instant::now(),
            }),
        })
    }
}

fn read_file(path: &Path, profile: &str) -> Result<(Credentials, Option<SystemTime>), Error> {
    let read = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(read)?;
    let text = std::fs::read_to_string(path).map_err(read)?;
    Ok((parse_file(&text, path, profile)?, Some(modified)))
}

impl Provider {
    /// The credentials to sign the next request with.
    pub fn current(&self) -> Arc<Credentials> {
        let Config::File { path, profile } = &self.config else {
            return self.read_cache().credentials.clone();
        };
        {
            let cache = self.read_cache();
            if cache.checked.elapsed() < RECHECK {
                return cache.credentials.clone();
            }
        }
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.checked.elapsed() < RECHECK {
            return cache.credentials.clone();
        }
        cache.checked = Instant::now();
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != cache.modified {
            match read_file(path, profile) {
                Ok((credentials, modified)) => {
                    tracing::info!(path = %path.display(), "credentials file changed, reloaded");
                    cache.credentials = Arc::new(credentials);
                    cache.modified = modified;
                }
                Err(error) => {
                    tracing::warn!(%error, "credentials file changed but could not be loaded, keeping the previous credentials");
                    cache.modified = modified;
                }
            }
        }
        cache.credentials.clone()
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, Cached> {
        // A poisoned lock only means a panic elsewhere; the cached value is
        // still whole.
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/creds";

    #[test]
    fn parses_access_key_and_sts_profiles() {
        let text = "[default]\ntype = access_key\naccess_key_id = AK1\naccess_key_secret = S1\n\
                    [temp]\ntype = sts\naccess_key_id = STS.AK\naccess_key_secret = S2\nsecurity_token = T2\n";
        let c = parse_file(text, Path::new(PATH), "default").unwrap();
        assert_eq!(c.access_key_id, "AK1");
        assert_eq!(c.access_key_secret.expose(), "S1");
        assert!(c.security_token.is_none());
        let t = parse_file(text, Path::new(PATH), "temp").unwrap();
        assert_eq!(t.security_token.as_ref().map(Secret::expose), Some("T2"));
    }

    #[test]
    fn errors_name_the_problem_but_no_value() {
        let text =
            "[default]\naccess_key_id = AK1\naccess_key_secret = hunter2\ntype = ram_role_arn\n";
        let err = parse_file(text, Path::new(PATH), "default")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ram_role_arn") && err.contains(PATH), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_file(
            "[default]\naccess_key_id = AK1\n",
            Path::new(PATH),
            "default",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("has no access_key_secret"), "{err}");
        let err = parse_file("", Path::new(PATH), "prod")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[prod] is missing"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials {
            access_key_id: "AK1".into(),
            access_key_secret: Secret::new("hunter2"),
            security_token: Some(Secret::new("tok3n")),
        };
        let shown = format!("{c:?} {:?}", Config::Static(c.clone()));
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("***"));
    }

    #[test]
    fn rereads_a_changed_file_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let write = |id: &str, modified: SystemTime| {
            std::fs::write(
                &path,
                format!("[default]\naccess_key_id = {id}\naccess_key_secret = s\n"),
            )
            .unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(modified)
                .unwrap();
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        write("AK1", t0);
        let provider = Config::File {
            path: path.clone(),
            profile: "default".into(),
        }
        .build()
        .unwrap();
        assert_eq!(provider.current().access_key_id, "AK1");

        write("AK2", t0 + Duration::from_secs(10));
        provider.cache.write().unwrap().checked -= RECHECK;
        assert_eq!(provider.current().access_key_id, "AK2");

        std::fs::write(&path, "[default]\n").unwrap();
        provider.cache.write().unwrap().checked -= RECHECK;
        assert_eq!(
            provider.current().access_key_id,
            "AK2",
            "a broken file keeps the last good credentials"
        );
    }
}
