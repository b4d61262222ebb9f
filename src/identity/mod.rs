//! Stage 1 of the request flow: who is calling. A tower layer
//! ([`IdentityLayer`]) resolves the caller before the service runs and puts a
//! [`Caller`] in the request's extensions, or refuses the call with an
//! [`Error`], answered by the [`Reject`] function the server gives it (the
//! layer knows nothing of gRPC statuses).
//!
//! Sources, in order, the first present one deciding:
//! 1. the mTLS client certificate: its SPIFFE ID (URI SAN);
//! 2. a JWT bearer token in `authorization` ([`jwt`]): the caller is its
//!    issuer and subject, never a SPIFFE ID;
//! 3. the `x-forwarded-client-cert` header ([`xfcc`]), only when enabled
//!    (behind a trusted mesh sidecar that sets it, and in the demo): its
//!    last element's SPIFFE ID; the source address is then the last
//!    `x-forwarded-for` entry ([`forwarded`]).
//!
//! Every header is parsed once, by its grammar, and anything that does not
//! parse is refused (identity) or unknown (source address, which denies):
//! `docs/security.md` states the trust model.
//!
//! gRPC health and reflection need no identity.

pub mod forwarded;
pub mod jwt;
pub mod xfcc;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::Instrument as _;

pub use jwt::{JwksSource, JwtConfig};

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

/// Who the caller is, kept apart by kind: a JWT subject can never be taken
/// for a SPIFFE ID, whatever its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallerId {
    /// A SPIFFE ID, from an mTLS certificate or a trusted sidecar's
    /// `x-forwarded-client-cert`.
    Spiffe(String),
    /// A JWT's issuer and subject.
    Jwt {
        /// `iss`.
        issuer: String,
        /// `sub`.
        subject: String,
    },
}

impl fmt::Display for CallerId {
    /// `spiffe://…` for SPIFFE IDs; `jwt:<subject>@<issuer>` for tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spiffe(id) => f.write_str(id),
            Self::Jwt { issuer, subject } => write!(f, "jwt:{subject}@{issuer}"),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who it is.
    pub identity: CallerId,
    /// How it was proven.
    pub via: Via,
    /// Multi-factor authentication was used (JWT `amr` holds `mfa`).
    pub mfa: bool,
    /// The call arrived over TLS (directly, or at the trusted sidecar).
    pub secure_transport: bool,
    /// The caller's address: the TCP peer, or behind a sidecar the address
    /// it forwarded; `None` when unknown (policies then deny).
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

/// Turns a refusal into the HTTP response that carries its gRPC status.
pub type Reject = fn(Error) -> http::Response<tonic::body::Body>;

/// Identity settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// JWT bearer tokens, if accepted.
    pub jwt: Option<JwtConfig>,
    /// Trust `x-forwarded-client-cert` (only behind a sidecar that sets it).
    pub trust_forwarded_client_cert: bool,
    /// Where the caller's address is read behind the sidecar.
    pub source_address_header: forwarded::SourceHeader,
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

/// Resolves callers; shared by every connection.
pub struct Resolver {
    jwt: Option<jwt::Verifier>,
    trust_forwarded_client_cert: bool,
    source_address_header: forwarded::SourceHeader,
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

impl Config {
    /// Builds the resolver; a JWKS file is read now, a URL on first use.
    ///
    /// # Errors
    ///
    /// The JWKS file cannot be read or parsed.
    pub fn build(self) -> Result<Resolver, BuildError> {
        Ok(Resolver {
            jwt: self.jwt.map(jwt::Verifier::new).transpose()?,
            trust_forwarded_client_cert: self.trust_forwarded_client_cert,
            source_address_header: self.source_address_header,
        })
    }
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

/// The caller's SPIFFE ID from the `x-forwarded-client-cert` fields: there
/// must be exactly one field (a proxy that adds a field instead of
/// appending would leave the caller's forged one first), parsed by its
/// grammar ([`xfcc`]); its last element's `URI=` must be a SPIFFE ID.
///
/// # Errors
///
/// [`Error::ForwardedClientCert`] saying what is wrong.
pub fn forwarded_spiffe_id(headers: &http::HeaderMap) -> Result<Option<String>, Error> {
    let mut fields = headers.get_all("x-forwarded-client-cert").iter();
    let Some(field) = fields.next() else {
        return Ok(None);
    };
    if fields.next().is_some() {
        return Err(Error::ForwardedClientCert(
            "more than one x-forwarded-client-cert field".into(),
        ));
    }
    let uri = xfcc::caller_uri(field.as_bytes())
        .map_err(|e| Error::ForwardedClientCert(e.to_string()))?;
    if !uri.starts_with("spiffe://") {
        return Err(Error::ForwardedClientCert(
            "the URI= value is not a SPIFFE ID (spiffe://…)".into(),
        ));
    }
    Ok(Some(uri))
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
        let peer = tls
            .and_then(|t| t.get_ref().remote_addr())
            .or_else(|| {
                extensions
                    .get::<TcpConnectInfo>()
                    .and_then(TcpConnectInfo::remote_addr)
            })
            .map(|p| SocketAddr::new(forwarded::canonical(p.ip()), p.port()));
        let secure_transport = tls.is_some();

        if let Some(cert) = tls
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|c| c.first().cloned())
        {
            return Ok(Caller {
                identity: CallerId::Spiffe(spiffe_id(&cert)?),
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
                    // The scheme is case-insensitive (RFC 9110, 11.1).
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(token)
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::Token("expected `Bearer <JWT>`".into()))?;
            let claims = jwt.verify(token).await?;
            let amr: HashSet<&str> = claims.amr.iter().map(String::as_str).collect();
            return Ok(Caller {
                identity: CallerId::Jwt {
                    issuer: jwt.config.issuer.clone(),
                    subject: claims.sub,
                },
                via: Via::Jwt,
                mfa: amr.contains("mfa"),
                secure_transport,
                // Behind the sidecar the TCP peer is the sidecar itself.
                peer: if self.trust_forwarded_client_cert {
                    self.source_address_header.source(headers).addr()
                } else {
                    peer
                },
            });
        }
        if self.trust_forwarded_client_cert
            && let Some(id) = forwarded_spiffe_id(headers)?
        {
            return Ok(Caller {
                identity: CallerId::Spiffe(id),
                via: Via::ForwardedClientCert,
                mfa: false,
                // The sidecar verified a client certificate: the caller's hop
                // was TLS.
                secure_transport: true,
                peer: self.source_address_header.source(headers).addr(),
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
    reject: Reject,
}

impl IdentityLayer {
    /// A layer using `resolver`; refusals are answered by `reject`.
    pub fn new(resolver: Arc<Resolver>, reject: Reject) -> Self {
        Self { resolver, reject }
    }
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Identity {
            inner,
            resolver: self.resolver.clone(),
            reject: self.reject,
        }
    }
}

/// The service of [`IdentityLayer`].
#[derive(Debug, Clone)]
pub struct Identity<S> {
    inner: S,
    resolver: Arc<Resolver>,
    reject: Reject,
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
        let reject = self.reject;
        Box::pin(async move {
            let span = tracing::info_span!(
                target: crate::telemetry::trace::STAGE,
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
                    span.record("enduser.id", tracing::field::display(&caller.identity));
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
                    Ok(reject(error))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_forwarded_client_cert_field() {
        let mut headers = http::HeaderMap::new();
        assert!(forwarded_spiffe_id(&headers).unwrap().is_none());
        headers.append(
            "x-forwarded-client-cert",
            "URI=spiffe://demo.local/sa/netops".parse().unwrap(),
        );
        assert_eq!(
            forwarded_spiffe_id(&headers).unwrap().as_deref(),
            Some("spiffe://demo.local/sa/netops")
        );
        headers.append(
            "x-forwarded-client-cert",
            "By=spiffe://mesh;URI=spiffe://demo.local/sa/webapp"
                .parse()
                .unwrap(),
        );
        assert!(forwarded_spiffe_id(&headers).is_err());
    }

    #[test]
    fn a_forwarded_uri_must_be_a_spiffe_id() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-forwarded-client-cert",
            "URI=https://example.com/x".parse().unwrap(),
        );
        assert!(forwarded_spiffe_id(&headers).is_err());
    }

    #[test]
    fn identities_of_different_kinds_never_compare_equal() {
        let spiffe = CallerId::Spiffe("spiffe://demo.local/sa/netops".into());
        let jwt = CallerId::Jwt {
            issuer: "https://idp.demo.local".into(),
            subject: "spiffe://demo.local/sa/netops".into(),
        };
        assert_ne!(spiffe, jwt);
        assert_eq!(
            jwt.to_string(),
            "jwt:spiffe://demo.local/sa/netops@https://idp.demo.local"
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
