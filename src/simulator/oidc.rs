//! OIDC tokens as `AssumeRoleWithOIDC` checks them against a provider, in
//! STS's order: the JWT's form and algorithm (ES256 or RS256 only), its
//! signature by the provider's key, `iss`, `aud`, `exp`. The codes are STS's
//! (<https://help.aliyun.com/zh/ram/developer-reference/api-sts-2015-04-01-errorcodes>).
//!
//! [`test_issuer`] is an identity provider for tests: it makes an EC P-256
//! key pair at run time (from the operating system's randomness, with no
//! key-generation crate) and mints tokens signed with it.

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use super::{DEFAULT_OIDC_CLIENT_ID, Failure, OidcProvider};

/// STS's bounds on `OIDCToken`'s length.
const TOKEN_LENGTH: std::ops::RangeInclusive<usize> = 4..=20_000;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claims {
    /// `sub`.
    pub subject: String,
    /// `iss`.
    pub issuer: String,
    /// `aud`, one or several.
    pub audiences: Vec<String>,
    /// `exp`.
    pub expires: DateTime<Utc>,
    /// `iat`, when the token has one.
    pub issued_at: Option<DateTime<Utc>>,
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new("AuthenticationFail.OIDCToken.Invalid").message(message)
}

fn content_invalid() -> Failure {
    invalid("The Jwt content is invalid that cannot be recognized.")
}

/// Checks `token` against `provider`'s key, issuer and client IDs at `now`.
pub(super) fn verify(
    provider: &OidcProvider,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Claims, Failure> {
    if !TOKEN_LENGTH.contains(&token.len()) {
        return Err(invalid("The OIDCToken must be 4 to 20000 characters long."));
    }
    if token.split('.').count() != 3 {
        return Err(invalid(
            "The number of Jwt field should be divided into 3 parts with '.' .",
        ));
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| invalid("Cannot decode base64 encoded response(format invalided)."))?;
    let pem = provider.public_key_pem.as_bytes();
    let key = match header.alg {
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        other => {
            return Err(invalid(format!(
                "The algorithm {other:?} that be specified in Jwt header is unknown."
            )));
        }
    }
    // The provider's key is of the other kind: not signed by it.
    .map_err(|_| Failure::new("AuthenticationFail.OIDCToken.InvalidSignature"))?;
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data =
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => {
                Failure::new("AuthenticationFail.OIDCToken.InvalidSignature")
            }
            _ => content_invalid(),
        })?;
    check_claims(provider, &data.claims, now)
}

/// `iss`, `aud`, then `exp`.
fn check_claims(
    provider: &OidcProvider,
    claims: &Value,
    now: DateTime<Utc>,
) -> Result<Claims, Failure> {
    let issuer = claims["iss"].as_str().unwrap_or_default();
    if issuer != provider.issuer {
        return Err(Failure::new("AuthenticationFail.OIDCToken.IssuerNotMatch"));
    }
    let audiences: Vec<String> = match &claims["aud"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let accepted = |aud: &String| {
        if provider.client_ids.is_empty() {
            aud == DEFAULT_OIDC_CLIENT_ID
        } else {
            provider.client_ids.contains(aud)
        }
    };
    if !audiences.iter().any(accepted) {
        return Err(Failure::new(
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
        ));
    }
    let seconds = |claim: &Value| {
        claim
            .as_i64()
            .or_else(|| claim.as_f64().map(|f| f as i64))
            .and_then(|s| DateTime::from_timestamp(s, 0))
    };
    let expires = seconds(&claims["exp"]).ok_or_else(content_invalid)?;
    if expires <= now {
        return Err(Failure::new("AuthenticationFail.OIDCToken.Expired"));
    }
    Ok(Claims {
        subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
        issuer: issuer.to_owned(),
        audiences,
        expires,
        issued_at: seconds(&claims["iat"]),
    })
}

/// An OIDC identity provider for tests: mints ES256 tokens with its own
/// key, made at run time.
pub struct TestIssuer {
    issuer: String,
    key: EncodingKey,
    public_key_pem: String,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A test identity provider at `issuer_url`: the PEM of its public key (for
/// [`OidcProvider::public_key_pem`]) and the issuer that mints its tokens.
pub fn test_issuer(issuer_url: &str) -> (String, TestIssuer) {
    let (key, public_key_pem) = ec_key_pair();
    let issuer = TestIssuer {
        issuer: issuer_url.to_owned(),
        key,
        public_key_pem: public_key_pem.clone(),
    };
    (public_key_pem, issuer)
}

impl TestIssuer {
    /// The PEM of its public key.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// A provider registered as `arn` trusting this issuer, with the default
    /// client ID (`sts.aliyuncs.com`).
    pub fn provider(&self, arn: &str) -> OidcProvider {
        OidcProvider {
            arn: arn.to_owned(),
            issuer: self.issuer.clone(),
            client_ids: Vec::new(),
            public_key_pem: self.public_key_pem.clone(),
        }
    }

    /// A token of this issuer for `subject`, with `audience` as `aud` (one
    /// string for one audience, else an array), issued now and expiring at
    /// `expires` (empty if it cannot be signed, which the key never causes).
    pub fn token(&self, subject: &str, audience: &[&str], expires: DateTime<Utc>) -> String {
        let aud = match audience {
            [one] => json!(one),
            many => json!(many),
        };
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": aud,
            "iat": Utc::now().timestamp(),
            "exp": expires.timestamp(),
        });
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key).unwrap_or_default()
    }
}

/// PKCS#8 DER of a P-256 private key before its 32 bytes: version 0, the
/// `id-ecPublicKey` and `prime256v1` OIDs, then an `ECPrivateKey` (version
/// 1) without the optional public key.
const PKCS8_P256_PREFIX: &[u8] = &[
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01,
    0x01, 0x04, 0x20,
];

/// SubjectPublicKeyInfo DER of a P-256 public key before its uncompressed
/// point (`0x04`, x, y).
const SPKI_P256_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

/// A fresh P-256 key: the signing key and the public key's PEM. The
/// scalar's first byte is kept in 1..=0x7f, so it is never 0 and always
/// below the curve's order.
fn ec_key_pair() -> (EncodingKey, String) {
    use base64::Engine as _;
    let mut scalar: Vec<u8> = uuid::Uuid::new_v4()
        .into_bytes()
        .into_iter()
        .chain(uuid::Uuid::new_v4().into_bytes())
        .collect();
    if let Some(first) = scalar.first_mut() {
        *first = (*first & 0x7f).max(1);
    }
    let mut der = PKCS8_P256_PREFIX.to_vec();
    der.extend_from_slice(&scalar);
    let key = EncodingKey::from_ec_der(&der);
    let point = Jwk::from_encoding_key(&key, Algorithm::ES256)
        .ok()
        .and_then(|jwk| match jwk.algorithm {
            AlgorithmParameters::EllipticCurve(ec) => {
                let decode = |c: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c);
                Some((decode(&ec.x).ok()?, decode(&ec.y).ok()?))
            }
            _ => None,
        })
        .unwrap_or_default();
    let mut spki = SPKI_P256_PREFIX.to_vec();
    spki.extend_from_slice(&point.0);
    spki.extend_from_slice(&point.1);
    let body = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    (key, pem)
}
