//! RSA signing keys for the fake IdP and authorization servers, and the JWTs they sign.
//!
//! Keys are generated at start (RS256, 2048 bit). Generating RSA keys is slow, so a process keeps a
//! small pool and hands key *n* of every testbed the same key material; issuers differ per testbed,
//! so tokens never validate across testbeds. This module signs and verifies; it decides no policy.

use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

/// One RS256 key pair with its key id and public JWK.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

fn pool() -> &'static Mutex<Vec<Arc<SigningKey>>> {
    static POOL: OnceLock<Mutex<Vec<Arc<SigningKey>>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Vec::new()))
}

impl SigningKey {
    /// Generates a fresh 2048-bit RSA key.
    pub fn generate() -> anyhow::Result<Self> {
        let mut rng = rand::thread_rng();
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048)?;
        let public = private.to_public_key();
        let der = private.to_pkcs1_der()?;
        let n = public.n().to_bytes_be();
        let e = public.e().to_bytes_be();
        let kid = crate::oauth::random_token(8);
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e),
        });
        Ok(Self {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            jwk,
        })
    }

    /// Key number `index` of the process-wide pool, generating keys as needed (blocking).
    pub fn pooled(index: usize) -> anyhow::Result<Arc<Self>> {
        let mut keys = pool()
            .lock()
            .map_err(|_| anyhow::anyhow!("key pool poisoned"))?;
        while keys.len() <= index {
            keys.push(Arc::new(Self::generate()?));
        }
        Ok(Arc::clone(&keys[index]))
    }

    /// The public half, for in-process verification.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The JWKS document (`{"keys":[…]}`) holding this key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs `claims` with RS256 and the given `typ` header.
    pub fn sign(&self, typ: &str, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

/// Verifies a JWT's signature only (algorithms as given); time, issuer and audience checks are the
/// caller's, done against the [`crate::TestClock`]. Returns the claims.
pub fn verify_signature(
    token: &str,
    key: &DecodingKey,
    algorithms: &[Algorithm],
) -> Result<Value, jsonwebtoken::errors::Error> {
    let mut validation = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::RS256));
    validation.algorithms = algorithms.to_vec();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, key, &validation).map(|data| data.claims)
}

/// Whether a JWT `aud` claim (string or array) names `expected`.
pub fn audience_contains(aud: Option<&Value>, expected: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    }
}

/// Whether a JWT `aud` claim is exactly `expected` (a string, or an array of that one string).
pub fn audience_is_exactly(aud: Option<&Value>, expected: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(items)) => items.len() == 1 && items[0].as_str() == Some(expected),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_round_trip() {
        let key = SigningKey::pooled(0).expect("key");
        let token = key
            .sign("JWT", &json!({"sub": "alice", "aud": ["x"]}))
            .expect("sign");
        let claims =
            verify_signature(&token, key.decoding_key(), &[Algorithm::RS256]).expect("verify");
        assert_eq!(claims["sub"], "alice");
        assert!(audience_contains(claims.get("aud"), "x"));
        assert!(audience_is_exactly(claims.get("aud"), "x"));
        let other = SigningKey::pooled(1).expect("key");
        assert!(verify_signature(&token, other.decoding_key(), &[Algorithm::RS256]).is_err());
    }
}
