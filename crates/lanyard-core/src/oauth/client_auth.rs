//! Client authentication at a token endpoint: `none`, `client_secret_basic`, `client_secret_post`
//! and `private_key_jwt` (RS256 or ES256 keys from PEM, or held by the OS behind [`KeySigner`]).
//!
//! Pure: the caller supplies the current time and a fresh `jti`, so a request built here is a
//! function of its inputs. Keys and secrets stay inside redacting types.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::error::WireError;
use super::http::HttpRequest;
use crate::secret::Secret;

/// `client_assertion_type` for `private_key_jwt` (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion we sign.
pub const CLIENT_ASSERTION_LIFETIME_SECS: u64 = 120;

/// Signature algorithm of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyAlgorithm {
    RS256,
    ES256,
}

/// Signs with a private key that stays where it is (a TPM, the Secure Enclave, a PKCS#11 token,
/// CNG): the port `device_key` implements. May block for the store's round trip.
pub trait KeySigner: Send + Sync {
    /// The JWS signature of `message` (the signing input): `r || s` for ES256, PKCS#1 v1.5
    /// over SHA-256 for RS256.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// Where the private key of a [`SigningKey`] is.
#[derive(Clone)]
enum KeyMaterial {
    /// Parsed from a PEM file, in this process's memory.
    Pem(EncodingKey),
    /// Held by the OS; only signatures come out.
    Held(Arc<dyn KeySigner>),
}

/// A private key that signs client assertions. Prints as `[redacted key]`.
#[derive(Clone)]
pub struct SigningKey {
    alg: KeyAlgorithm,
    key: KeyMaterial,
    kid: Option<String>,
    /// The public half of a held key, when the store told it: the same key then signs DPoP
    /// proofs ([`SigningKey::dpop_key`]).
    public_jwk: Option<serde_json::Value>,
}

impl SigningKey {
    /// Reads a PEM private key (PKCS#8, or PKCS#1 for RSA / SEC1 for EC).
    pub fn from_pem(pem: &[u8], alg: KeyAlgorithm, kid: Option<String>) -> Result<Self, WireError> {
        let key = match alg {
            KeyAlgorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            KeyAlgorithm::ES256 => EncodingKey::from_ec_pem(pem),
        }
        .map_err(|e| {
            WireError::ClientAuth(format!("the {alg:?} private key is unreadable: {e}"))
        })?;
        Ok(Self {
            alg,
            key: KeyMaterial::Pem(key),
            kid,
            public_jwk: None,
        })
    }

    /// A key the OS holds, signing as `alg`.
    pub fn held(signer: Arc<dyn KeySigner>, alg: KeyAlgorithm, kid: Option<String>) -> Self {
        Self {
            alg,
            key: KeyMaterial::Held(signer),
            kid,
            public_jwk: None,
        }
    }

    /// A held key whose public half is known, so it can sign DPoP proofs too.
    pub fn with_public_jwk(mut self, jwk: serde_json::Value) -> Self {
        self.public_jwk = Some(jwk);
        self
    }

    /// The same key as the device's DPoP key: only for a key the OS holds (a PEM file's key is
    /// readable by any process of the account, which DPoP is meant to defeat).
    pub fn dpop_key(&self) -> Option<super::dpop::DpopKey> {
        match (&self.key, &self.public_jwk) {
            (KeyMaterial::Held(signer), Some(jwk)) => {
                Some(super::dpop::DpopKey::held(signer.clone(), self.alg, jwk))
            }
            _ => None,
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// Signs `claims` as a compact JWT with header `typ` (`JWT` when `None`).
    pub fn sign<T: Serialize>(&self, claims: &T, typ: Option<&str>) -> Result<Secret, WireError> {
        let mut header = Header::new(match self.alg {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::ES256 => Algorithm::ES256,
        });
        header.kid = self.kid.clone();
        if let Some(typ) = typ {
            header.typ = Some(typ.to_owned());
        }
        match &self.key {
            KeyMaterial::Pem(key) => jsonwebtoken::encode(&header, claims, key)
                .map(Secret::new)
                .map_err(|e| WireError::ClientAuth(format!("signing failed: {e}"))),
            KeyMaterial::Held(signer) => {
                let b64 =
                    |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
                let fail =
                    |e: serde_json::Error| WireError::ClientAuth(format!("signing failed: {e}"));
                let header = serde_json::to_vec(&header).map_err(fail)?;
                let claims = serde_json::to_vec(claims).map_err(fail)?;
                let input = format!("{}.{}", b64(&header), b64(&claims));
                let signature = signer.sign(input.as_bytes()).map_err(|e| {
                    WireError::ClientAuth(format!("the key store did not sign: {e}"))
                })?;
                Ok(Secret::new(format!("{input}.{}", b64(&signature))))
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?}, [redacted key])", self.alg)
    }
}

/// How a client proves who it is at a token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Public client: `client_id` in the body.
    None,
    SecretBasic(Secret),
    SecretPost(Secret),
    PrivateKeyJwt(SigningKey),
}

impl ClientAuth {
    /// The RFC 8414 `token_endpoint_auth_methods_supported` name.
    pub fn method_name(&self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::SecretBasic(_) => "client_secret_basic",
            ClientAuth::SecretPost(_) => "client_secret_post",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// A client registration at one server: its id there and how it authenticates.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub auth: ClientAuth,
}

/// What signing a client assertion needs from outside: time and a fresh id.
#[derive(Debug, Clone)]
pub struct AssertionInputs {
    /// The authorization server's issuer: the assertion's `aud` (what the conformance suite, the TS
    /// SDK and rmcp use).
    pub audience: String,
    pub now: u64,
    pub jti: String,
}

#[derive(Serialize)]
struct ClientAssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
}

impl Client {
    /// Adds this client's authentication to `request`.
    pub fn authenticate(
        &self,
        request: &mut HttpRequest,
        inputs: &AssertionInputs,
    ) -> Result<(), WireError> {
        match &self.auth {
            ClientAuth::None => {
                request.field("client_id", &self.client_id);
            }
            ClientAuth::SecretPost(secret) => {
                request.field("client_id", &self.client_id);
                request.secret_field("client_secret", secret);
            }
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
                let id = form_encode(&self.client_id);
                let pw = form_encode(secret.expose());
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{pw}"));
                request.header("authorization", format!("Basic {token}"));
            }
            ClientAuth::PrivateKeyJwt(key) => {
                let claims = ClientAssertionClaims {
                    iss: &self.client_id,
                    sub: &self.client_id,
                    aud: &inputs.audience,
                    jti: &inputs.jti,
                    iat: inputs.now,
                    exp: inputs.now + CLIENT_ASSERTION_LIFETIME_SECS,
                };
                let assertion = key.sign(&claims, None)?;
                request.field("client_id", &self.client_id);
                request.field("client_assertion_type", CLIENT_ASSERTION_TYPE);
                request.secret_field("client_assertion", &assertion);
            }
        }
        Ok(())
    }
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn request() -> HttpRequest {
        HttpRequest::post_form(Url::parse("http://127.0.0.1/token").expect("static URL"))
    }

    fn inputs() -> AssertionInputs {
        AssertionInputs {
            audience: "http://as".into(),
            now: 100,
            jti: "j1".into(),
        }
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        let client = Client {
            client_id: "a b".into(),
            auth: ClientAuth::SecretBasic(Secret::new("p:w&")),
        };
        let mut req = request();
        client.authenticate(&mut req, &inputs()).expect("basic");
        let (_, value) = &req.headers[0];
        let encoded = value.expose().strip_prefix("Basic ").expect("basic prefix");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(String::from_utf8(decoded).expect("utf8"), "a+b:p%3Aw%26");
        assert!(req.form.is_empty(), "basic auth puts nothing in the body");
    }

    #[test]
    fn post_auth_puts_id_and_secret_in_body() {
        let client = Client {
            client_id: "c".into(),
            auth: ClientAuth::SecretPost(Secret::new("s")),
        };
        let mut req = request();
        client.authenticate(&mut req, &inputs()).expect("post");
        assert_eq!(req.form_value("client_id"), Some("c"));
        assert_eq!(req.form_value("client_secret"), Some("s"));
        assert!(!format!("{req:?}").contains("\"s\""));
    }
}
