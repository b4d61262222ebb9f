//! JWT bearer tokens: the signature against a JWKS (asymmetric algorithms
//! only), `iss`, `aud`, `exp`, `nbf`; the caller is the issuer and subject.
//!
//! A JWKS URL is fetched on first use and cached for `jwks_refresh`; an
//! unknown `kid` fetches again, at most every 30 seconds and one fetch at a
//! time, so bad tokens cannot hammer the identity provider. The fetch
//! follows no redirect (a redirect could hand the gateway someone else's
//! keys), reads at most [`MAX_JWKS_BYTES`], and keys that could not be
//! refreshed for `jwks_max_age` stop being trusted: a revoked key must not
//! live forever because the provider is unreachable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{BuildError, Error};

/// Largest JWKS document read, bytes: real ones are a few kilobytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Shortest pause between two fetches of the JWKS URL.
const REFETCH_PAUSE: Duration = Duration::from_secs(30);

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JSON file, read at start.
    File(PathBuf),
    /// An HTTPS URL, fetched and cached.
    Url(String),
}

/// JWT settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// The keys.
    pub jwks: JwksSource,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long a fetched JWKS is used before it is fetched again.
    pub jwks_refresh: Duration,
    /// How long fetched keys stay trusted when every refetch fails.
    pub jwks_max_age: Duration,
}

/// Algorithms a token may use: asymmetric only, so that a JWKS holding a
/// public key can never verify a token signed with that key as an HMAC
/// secret, and `none` never.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

struct CachedKeys {
    keys: JwkSet,
    /// When the keys were fetched; `None` for a file (read once, trusted
    /// for as long as the gateway runs) or before the first fetch.
    fetched: Option<Instant>,
}

/// Verifies bearer tokens.
pub struct Verifier {
    pub(super) config: JwtConfig,
    keys: ArcSwap<CachedKeys>,
    http: Option<reqwest::Client>,
    /// When the URL was last fetched (`None`: never), one fetch at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The claims the gateway reads.
#[derive(Deserialize)]
pub struct Claims {
    /// The caller.
    pub sub: String,
    /// Authentication methods.
    #[serde(default)]
    pub amr: Vec<String>,
}

fn parse_jwks(text: &[u8], origin: &str) -> Result<JwkSet, BuildError> {
    serde_json::from_slice(text).map_err(|e| BuildError::Jwks {
        origin: origin.to_owned(),
        reason: e.to_string(),
    })
}

impl Verifier {
    /// A verifier; a JWKS file is read now, a URL on first use.
    ///
    /// # Errors
    ///
    /// The JWKS file cannot be read or parsed.
    pub fn new(config: JwtConfig) -> Result<Self, BuildError> {
        let (keys, http) = match &config.jwks {
            JwksSource::File(path) => {
                let text = std::fs::read(path).map_err(|source| BuildError::Read {
                    path: path.clone(),
                    source,
                })?;
                (parse_jwks(&text, &path.display().to_string())?, None)
            }
            JwksSource::Url(_) => {
                crate::install_crypto_provider();
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| BuildError::Jwks {
                        origin: "url".into(),
                        reason: e.to_string(),
                    })?;
                (JwkSet { keys: Vec::new() }, Some(http))
            }
        };
        Ok(Self {
            keys: ArcSwap::from_pointee(CachedKeys {
                keys,
                fetched: None,
            }),
            config,
            http,
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The key for `kid`, fetching the JWKS URL when it is stale or lacks
    /// the key.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, Error> {
        let find = |keys: &CachedKeys| match kid {
            Some(kid) => keys.keys.find(kid).cloned(),
            None if keys.keys.keys.len() == 1 => keys.keys.keys.first().cloned(),
            None => None,
        };
        let Some(http) = &self.http else {
            return find(&self.keys.load()).ok_or_else(|| missing(kid));
        };
        let current = self.keys.load();
        let fresh = current
            .fetched
            .is_some_and(|at| at.elapsed() < self.config.jwks_refresh);
        if let Some(key) = find(&current).filter(|_| fresh) {
            return Ok(key);
        }
        // Stale keys or an unknown kid: fetch, at most every 30 seconds and
        // one fetch at a time. Calls that have a usable key meanwhile use
        // it, so an IdP outage does not queue them behind a fetch; calls
        // without one wait for the fetch under way.
        let usable = find(&current).is_some()
            && current
                .fetched
                .is_some_and(|at| at.elapsed() < self.config.jwks_max_age);
        let last = if usable {
            self.last_fetch.try_lock().ok()
        } else {
            Some(self.last_fetch.lock().await)
        };
        if let JwksSource::Url(url) = &self.config.jwks
            && let Some(mut last) = last
            && last.is_none_or(|at| at.elapsed() >= REFETCH_PAUSE)
        {
            *last = Some(Instant::now());
            match fetch_jwks(http, url).await {
                Ok(keys) => self.keys.store(Arc::new(CachedKeys {
                    keys,
                    fetched: Some(Instant::now()),
                })),
                Err(error) => {
                    tracing::warn!(%url, %error, "cannot fetch the JWKS, keeping the cached keys")
                }
            }
        }
        let current = self.keys.load();
        match current.fetched {
            Some(at) if at.elapsed() >= self.config.jwks_max_age => Err(Error::Token(format!(
                "the JWKS could not be refreshed for {:?}: its keys are no longer trusted",
                self.config.jwks_max_age
            ))),
            None => Err(Error::Token("the JWKS could not be fetched".into())),
            Some(_) => find(&current).ok_or_else(|| missing(kid)),
        }
    }

    /// Verifies `token` and returns its claims.
    ///
    /// # Errors
    ///
    /// [`Error::Token`] saying what was wrong, never quoting the token.
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Error::Token(format!("malformed: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Error::Token(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|e| Error::Token(format!("unusable key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        jsonwebtoken::decode::<Claims>(token.as_bytes(), &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                Error::Token(match e.kind() {
                    ErrorKind::ExpiredSignature => "expired".into(),
                    ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
                    ErrorKind::InvalidAudience => {
                        format!("wrong audience: expected {}", self.config.audience)
                    }
                    ErrorKind::InvalidIssuer => {
                        format!("wrong issuer: expected {}", self.config.issuer)
                    }
                    ErrorKind::InvalidSignature => "bad signature".into(),
                    ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
                    other => format!("invalid: {other:?}"),
                })
            })
    }
}

fn missing(kid: Option<&str>) -> Error {
    Error::Token(match kid {
        // The kid is the caller's text: echo a bounded prefix only.
        Some(kid) if kid.len() > 64 => format!(
            "no key {:?}… in the JWKS",
            kid.chars().take(64).collect::<String>()
        ),
        Some(kid) => format!("no key {kid:?} in the JWKS"),
        None => "the token has no kid and the JWKS has more than one key".into(),
    })
}

/// Fetches the JWKS: no redirects, at most [`MAX_JWKS_BYTES`].
async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let mut response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!(
            "HTTP {} (redirects are not followed)",
            response.status()
        ));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body, url).map_err(|e| e.to_string())
}
