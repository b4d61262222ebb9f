//! The SDKs' INI credentials file (`ALIBABA_CLOUD_CREDENTIALS_FILE`, a
//! profile in it). It is re-read when its modification time changes
//! (checked once a second), so a rotated Kubernetes secret takes effect
//! without a restart; a file that becomes unreadable or invalid keeps the
//! last good credentials.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;

use super::cache::Fetch;
use super::{Credentials, Error, Issued, Secret};

/// The source's name.
pub const SOURCE: &str = "file";

/// How often the file's modification time is checked.
const RECHECK: Duration = Duration::from_secs(1);

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

/// Reads and parses the file, with its modification time.
///
/// # Errors
///
/// The file cannot be read or lacks the profile's keys.
pub fn read_file(path: &Path, profile: &str) -> Result<(Credentials, SystemTime), Error> {
    let read = |source| Error::Read {
        what: "credentials file",
        path: path.to_owned(),
        source,
    };
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(read)?;
    let text = std::fs::read_to_string(path).map_err(read)?;
    Ok((parse_file(&text, path, profile)?, modified))
}

/// The file as a source: re-read only when its modification time changed.
pub(crate) struct File {
    path: PathBuf,
    profile: String,
    last: Mutex<(SystemTime, Credentials)>,
}

impl File {
    /// Reads the file once, so a bad file fails at start-up.
    pub(crate) fn open(path: PathBuf, profile: String) -> Result<Self, Error> {
        let (credentials, modified) = read_file(&path, &profile)?;
        Ok(Self {
            path,
            profile,
            last: Mutex::new((modified, credentials)),
        })
    }
}

impl Fetch for File {
    fn source(&self) -> &'static str {
        SOURCE
    }

    fn recheck(&self) -> Option<Duration> {
        Some(RECHECK)
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Issued, Error>> {
        Box::pin(async move {
            let issued = |credentials| Issued {
                credentials,
                expiration: None,
                role: None,
            };
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if modified.is_none_or(|m| m == last.0) {
                return Ok(issued(last.1.clone()));
            }
            match read_file(&self.path, &self.profile) {
                Ok((credentials, modified)) => {
                    tracing::info!(path = %self.path.display(), "credentials file changed, reloaded");
                    *last = (modified, credentials.clone());
                    Ok(issued(credentials))
                }
                Err(error) => {
                    // Not again until it changes once more.
                    last.0 = modified.unwrap_or(last.0);
                    Err(error)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Provider;
    use std::sync::Arc;

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

    #[tokio::test]
    async fn rereads_a_changed_file_and_keeps_the_last_good_one() {
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
        let file = File::open(path.clone(), "default".into()).unwrap();
        let provider = Arc::new(Provider::new(
            Box::new(file),
            "1".into(),
            Arc::new(crate::telemetry::Metrics::default()),
        ));
        provider.start();
        let key = || async {
            provider
                .get()
                .await
                .unwrap()
                .credentials()
                .access_key_id
                .clone()
        };
        assert_eq!(key().await, "AK1");

        write("AK2", t0 + Duration::from_secs(10));
        tokio::time::sleep(RECHECK * 2 + Duration::from_millis(200)).await;
        assert_eq!(key().await, "AK2");

        std::fs::write(&path, "[default]\n").unwrap();
        tokio::time::sleep(RECHECK * 2 + Duration::from_millis(200)).await;
        assert_eq!(
            key().await,
            "AK2",
            "a broken file keeps the last good credentials"
        );
    }
}
