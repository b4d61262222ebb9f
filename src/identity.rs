//! Stage 1 of the request flow: who is calling. A tower layer
//! ([`IdentityLayer`]) resolves the caller before the service runs and puts a
//! [`Caller`] in the request's extensions, or answers `UNAUTHENTICATED`.
//!
//! Sources, in order, the first present one deciding:
//! 1. the mTLS client certificate: its SPIFFE ID (URI SAN);
//! 2. a JWT bearer token in `authorization`: signature against a JWKS
//!    (asymmetric algorithms only), `iss`, `aud`, `exp` and `nbf`; `amr`
//!    containing `mfa` sets MFA present;
//! 3. the `x-forwarded-client-cert` header's `URI=` field, only when enabled
//!    (behind a trusted mesh sidecar that sets it, and in the demo).
//!
//! gRPC health and reflection need no identity.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::Instrument as _;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An mTLS client certificate.
    Mtls,
    /// A JWT bearer token.
    Jwt,
    /// A trusted sidecar's `x-forwarded-client-cert` header.
    ForwardedClientCert,
}

impl Via {
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mtls => "mtls",
            Self::Jwt => "jwt",
            Self::ForwardedClientCert => "xfcc",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The SPIFFE ID, or the JWT subject.
    pub identity: String,
    /// How it was proven.
    pub via: Via,
    /// Multi-factor authentication was used (JWT `amr` holds `mfa`).
    pub mfa: bool,
    /// The call arrived over TLS (directly, or at the trusted sidecar).
    pub secure_transport: bool,
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
}

/// Why a caller is not authenticated. Messages say what was missing or
/// wrong, never a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No identity at all.
    #[error(
        "no identity: present an mTLS client certificate or an `authorization: Bearer <JWT>` header"
    )]
    Missing,
    /// The client certificate cannot be used.
    #[error("client certificate rejected: {0}")]
    Certificate(String),
    /// The bearer token is not valid.
    #[error("bearer token rejected: {0}")]
    Token(String),
    /// The forwarded client certificate header cannot be used.
    #[error("x-forwarded-client-cert rejected: {0}")]
    ForwardedClientCert(String),
}

impl Error {
    /// The ErrorInfo reason, from the catalogue.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "Unauthenticated.MissingIdentity",
            Self::Certificate(_) => "Unauthenticated.InvalidClientCertificate",
            Self::Token(_) => "Unauthenticated.InvalidToken",
            Self::ForwardedClientCert(_) => "Unauthenticated.InvalidForwardedClientCert",
        }
    }
}

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
}

/// Identity settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// JWT bearer tokens, if accepted.
    pub jwt: Option<JwtConfig>,
    /// Trust `x-forwarded-client-cert` (only behind a sidecar that sets it).
    pub trust_forwarded_client_cert: bool,
}

/// Why identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The JWKS file cannot be read.
    #[error("cannot read JWKS file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS is not valid.
    #[error("JWKS {origin} is not a valid JSON Web Key Set: {reason}")]
    Jwks {
        /// File or URL.
        origin: String,
        /// The parser's message.
        reason: String,
    },
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
    fetched: Instant,
}

struct JwtVerifier {
    config: JwtConfig,
    keys: ArcSwap<CachedKeys>,
    http: Option<reqwest::Client>,
    refetch: tokio::sync::Mutex<Instant>,
}

/// Resolves callers; shared by every connection.
pub struct Resolver {
    jwt: Option<JwtVerifier>,
    trust_forwarded_client_cert: bool,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("jwt", &self.jwt.as_ref().map(|j| &j.config))
            .field(
                "trust_forwarded_client_cert",
                &self.trust_forwarded_client_cert,
            )
            .finish()
    }
}

fn parse_jwks(text: &[u8], origin: &str) -> Result<JwkSet, BuildError> {
    serde_json::from_slice(text).map_err(|e| BuildError::Jwks {
        origin: origin.to_owned(),
        reason: e.to_string(),
    })
}

impl Config {
    /// Builds the resolver; a JWKS file is read now, a URL on first use.
    ///
    /// # Errors
    ///
    /// The JWKS file cannot be read or parsed.
    pub fn build(self) -> Result<Resolver, BuildError> {
        let jwt = match self.jwt {
            None => None,
            Some(config) => {
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
                            .build()
                            .map_err(|e| BuildError::Jwks {
                                origin: "url".into(),
                                reason: e.to_string(),
                            })?;
                        (JwkSet { keys: Vec::new() }, Some(http))
                    }
                };
                let stale = Instant::now()
                    .checked_sub(config.jwks_refresh * 2)
                    .unwrap_or_else(Instant::now);
                Some(JwtVerifier {
                    keys: ArcSwap::from_pointee(CachedKeys {
                        keys,
                        fetched: if http.is_some() {
                            stale
                        } else {
                            Instant::now()
                        },
                    }),
                    config,
                    http,
                    refetch: tokio::sync::Mutex::new(
                        Instant::now()
                            .checked_sub(Duration::from_secs(60))
                            .unwrap_or(stale),
                    ),
                })
            }
        };
        Ok(Resolver {
            jwt,
            trust_forwarded_client_cert: self.trust_forwarded_client_cert,
        })
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    amr: Vec<String>,
}

impl JwtVerifier {
    /// The key for `kid`, fetching the JWKS URL when it is stale or lacks
    /// the key (at most every 30 seconds, so bad tokens cannot hammer the IdP).
    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, Error> {
        let find = |keys: &CachedKeys| match kid {
            Some(kid) => keys.keys.find(kid).cloned(),
            None if keys.keys.keys.len() == 1 => keys.keys.keys.first().cloned(),
            None => None,
        };
        let current = self.keys.load();
        let fresh = current.fetched.elapsed() < self.config.jwks_refresh;
        if let Some(key) = find(&current).filter(|_| fresh || self.http.is_none()) {
            return Ok(key);
        }
        // Stale keys or an unknown kid: fetch, at most every 30 seconds and
        // one fetch at a time; meanwhile calls use the keys at hand, so an
        // IdP outage does not queue every call behind a fetch.
        if let (Some(http), JwksSource::Url(url)) = (&self.http, &self.config.jwks)
            && let Ok(mut last) = self.refetch.try_lock()
            && last.elapsed() >= Duration::from_secs(30)
        {
            *last = Instant::now();
            match fetch_jwks(http, url).await {
                Ok(keys) => self.keys.store(Arc::new(CachedKeys {
                    keys,
                    fetched: Instant::now(),
                })),
                Err(error) => {
                    tracing::warn!(%url, %error, "cannot fetch the JWKS, keeping the cached keys")
                }
            }
        }
        find(&self.keys.load()).ok_or_else(|| {
            Error::Token(match kid {
                Some(kid) => format!("no key {kid:?} in the JWKS"),
                None => "the token has no kid and the JWKS has more than one key".into(),
            })
        })
    }

    async fn verify(&self, token: &str) -> Result<Claims, Error> {
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

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    parse_jwks(&body, url).map_err(|e| e.to_string())
}

/// The single SPIFFE ID among a certificate's URI SANs.
///
/// # Errors
///
/// The certificate does not parse, or has no or several SPIFFE IDs.
pub fn spiffe_id(der: &[u8]) -> Result<String, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Certificate(format!("cannot parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Certificate(format!("bad subjectAltName: {e}")))?;
    let mut ids = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                Some(*uri)
            }
            _ => None,
        });
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(id.to_owned()),
        (None, _) => Err(Error::Certificate(
            "no SPIFFE ID (spiffe:// URI SAN)".into(),
        )),
        (Some(_), Some(_)) => Err(Error::Certificate("more than one SPIFFE ID".into())),
    }
}

/// The `URI=` of the last element of an `x-forwarded-client-cert` header (the
/// client of the nearest proxy, which is the trusted sidecar).
///
/// # Errors
///
/// No element has a `URI` field.
pub fn forwarded_uri(header: &str) -> Result<String, Error> {
    let element = split_unquoted(header, ',')?
        .into_iter()
        .last()
        .unwrap_or_default();
    let mut uris = split_unquoted(&element, ';')?
        .into_iter()
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("uri")
                .then(|| value.trim().trim_matches('"').to_owned())
        });
    match (uris.next(), uris.next()) {
        (Some(uri), None) if !uri.is_empty() => Ok(uri),
        (Some(_), Some(_)) => Err(Error::ForwardedClientCert(
            "more than one URI= field".into(),
        )),
        _ => Err(Error::ForwardedClientCert("no URI= field".into())),
    }
}

/// The caller's address behind a trusted sidecar: the last
/// `x-forwarded-for` entry, which the sidecar appended; the TCP peer (the
/// sidecar itself) otherwise.
fn forwarded_peer(headers: &http::HeaderMap, peer: Option<SocketAddr>) -> Option<SocketAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
    match last {
        Some(ip) => Some(SocketAddr::new(ip, 0)),
        None => peer,
    }
}

/// Splits on `sep` outside double quotes (XFCC quotes values holding `,;=`).
fn split_unquoted(text: &str, sep: char) -> Result<Vec<String>, Error> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        let Some(current) = parts.last_mut() else {
            unreachable!("parts starts with one element and only grows");
        };
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c == sep && !quoted => parts.push(String::new()),
            c => current.push(c),
        }
    }
    // An unclosed quote would swallow the elements the sidecar appends after
    // the caller's own: refuse it rather than guess.
    if quoted || escaped {
        return Err(Error::ForwardedClientCert("unbalanced quotes".into()));
    }
    Ok(parts)
}

impl Resolver {
    /// Resolves the caller of one request.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn resolve(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Caller, Error> {
        let tls = extensions.get::<TlsConnectInfo<TcpConnectInfo>>();
        let peer = tls.and_then(|t| t.get_ref().remote_addr()).or_else(|| {
            extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
        });
        let secure_transport = tls.is_some();

        if let Some(cert) = tls
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|c| c.first().cloned())
        {
            return Ok(Caller {
                identity: spiffe_id(&cert)?,
                via: Via::Mtls,
                mfa: false,
                secure_transport,
                peer,
            });
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let Some(jwt) = &self.jwt else {
                return Err(Error::Token(
                    "bearer tokens are not accepted by this gateway".into(),
                ));
            };
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::Token("expected `Bearer <JWT>`".into()))?;
            let claims = jwt.verify(token).await?;
            let amr: HashSet<&str> = claims.amr.iter().map(String::as_str).collect();
            return Ok(Caller {
                identity: claims.sub,
                via: Via::Jwt,
                mfa: amr.contains("mfa"),
                secure_transport,
                peer,
            });
        }
        if self.trust_forwarded_client_cert
            && let Some(value) = headers.get("x-forwarded-client-cert")
        {
            let value = value
                .to_str()
                .map_err(|_| Error::ForwardedClientCert("not ASCII".into()))?;
            return Ok(Caller {
                identity: forwarded_uri(value)?,
                via: Via::ForwardedClientCert,
                mfa: false,
                // The sidecar verified a client certificate: the caller's hop
                // was TLS.
                secure_transport: true,
                peer: forwarded_peer(headers, peer),
            });
        }
        Err(Error::Missing)
    }
}

/// Paths that need no identity: health checks and reflection.
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// Tower layer resolving the caller of every protected call.
#[derive(Debug, Clone)]
pub struct IdentityLayer {
    resolver: Arc<Resolver>,
}

impl IdentityLayer {
    /// A layer using `resolver`.
    pub fn new(resolver: Arc<Resolver>) -> Self {
        Self { resolver }
    }
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Identity {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The service of [`IdentityLayer`].
#[derive(Debug, Clone)]
pub struct Identity<S> {
    inner: S,
    resolver: Arc<Resolver>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Identity<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if is_public(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The clone is the one not yet polled ready: keep the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let span = tracing::info_span!(
                "identity",
                enduser.id = tracing::field::Empty,
                identity.via = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            let resolved = resolver
                .resolve(request.headers(), request.extensions())
                .instrument(span.clone())
                .await;
            match &resolved {
                Ok(caller) => {
                    span.record("enduser.id", caller.identity.as_str());
                    span.record("identity.via", caller.via.as_str());
                }
                Err(error) => crate::telemetry::trace::fail(&span, error.code()),
            }
            match resolved {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(error) => {
                    tracing::info!(%error, "unauthenticated call refused");
                    let status: tonic::Status = crate::error::Error::Identity(error).into();
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_nearest_forwarded_uri() {
        assert_eq!(
            forwarded_uri("By=spiffe://mesh/gw;Hash=abc;URI=spiffe://demo.local/sa/netops")
                .unwrap(),
            "spiffe://demo.local/sa/netops"
        );
        assert_eq!(
            forwarded_uri(
                r#"URI=spiffe://a/first,By=x;Subject="CN=a,O=b";URI="spiffe://b/second""#
            )
            .unwrap(),
            "spiffe://b/second"
        );
        assert!(forwarded_uri("By=spiffe://mesh/gw;Hash=abc").is_err());
        assert!(forwarded_uri("URI=").is_err());
        // A caller's unclosed quote must not swallow the sidecar's element.
        assert!(
            forwarded_uri(
                r#"URI=spiffe://demo.local/sa/netops;Subject=",By=x;URI=spiffe://attacker"#
            )
            .is_err()
        );
        assert!(forwarded_uri("URI=spiffe://a;URI=spiffe://b").is_err());
    }

    #[test]
    fn takes_the_source_address_the_sidecar_appended() {
        let peer = Some(SocketAddr::from(([127, 0, 0, 6], 15006)));
        let mut headers = http::HeaderMap::new();
        assert_eq!(forwarded_peer(&headers, peer), peer);
        headers.append("x-forwarded-for", "203.0.113.9, 10.1.2.3".parse().unwrap());
        assert_eq!(
            forwarded_peer(&headers, peer),
            Some(SocketAddr::from(([10, 1, 2, 3], 0)))
        );
        headers.append("x-forwarded-for", "192.168.1.10".parse().unwrap());
        assert_eq!(
            forwarded_peer(&headers, peer),
            Some(SocketAddr::from(([192, 168, 1, 10], 0)))
        );
    }

    #[test]
    fn codes_are_in_the_catalogue() {
        for error in [
            Error::Missing,
            Error::Certificate(String::new()),
            Error::Token(String::new()),
            Error::ForwardedClientCert(String::new()),
        ] {
            assert_eq!(
                crate::error::catalogue::get(error.code()).grpc,
                tonic::Code::Unauthenticated
            );
        }
    }
}
