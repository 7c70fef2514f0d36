//! The testbed's side of DPoP (RFC 9449): checking a proof the way an identity provider, an
//! authorization server or a resource server must — `typ` `dpop+jwt`, an asymmetric `alg`, a
//! public JWK in the header and its signature, `htm` and `htu` equal to the request, `iat`
//! within a minute of the server's clock, a `jti` never seen before (a replayed proof is
//! refused), `ath` equal to the hash of the token presented with it, and, where the server wants
//! one, its current nonce. What passes yields the key's RFC 7638 thumbprint (`jkt`), which
//! binds tokens.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::clock::TestClock;
use crate::keys::verify_signature;
use crate::oauth::random_token;

/// How far a proof's `iat` may be from the server's clock.
const IAT_WINDOW_SECS: u64 = 60;

/// Why a proof was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofRefusal {
    /// Malformed, wrongly signed, for another request, replayed or stale.
    Invalid(String),
    /// Fine but for the nonce: the server's current one, to send back in `DPoP-Nonce`.
    UseNonce(String),
}

/// One server's proof checker: the `jti`s it has seen and the nonce it hands out.
#[derive(Debug)]
pub struct ProofChecker {
    seen: Mutex<HashSet<String>>,
    /// `Some`: every proof must carry this nonce.
    nonce: Mutex<Option<String>>,
    /// Proofs refused as replays.
    replays: Mutex<u64>,
}

/// What a proof must match.
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request URL as the client addressed it (query and fragment are ignored).
    pub url: &'a str,
    /// The access token presented with the proof (resource servers only).
    pub access_token: Option<&'a str>,
}

impl ProofChecker {
    /// `require_nonce`: the server hands out a nonce and refuses proofs without it.
    pub fn new(require_nonce: bool) -> Self {
        Self {
            seen: Mutex::default(),
            nonce: Mutex::new(require_nonce.then(|| random_token(12))),
            replays: Mutex::new(0),
        }
    }

    /// The nonce proofs must carry now, if any.
    pub fn current_nonce(&self) -> Option<String> {
        lock(&self.nonce).clone()
    }

    /// Replaces the nonce (a server rotating it); proofs with the old one are then refused.
    pub fn rotate_nonce(&self) -> Option<String> {
        let mut nonce = lock(&self.nonce);
        if nonce.is_some() {
            *nonce = Some(random_token(12));
        }
        nonce.clone()
    }

    /// Proofs refused because their `jti` was used before.
    pub fn replays(&self) -> u64 {
        *lock(&self.replays)
    }

    /// Checks `proof` for the request `expected` describes; returns the key's thumbprint.
    pub fn check(
        &self,
        proof: &str,
        expected: &Expected<'_>,
        clock: &TestClock,
    ) -> Result<String, ProofRefusal> {
        let invalid = |m: &str| ProofRefusal::Invalid(m.to_owned());
        let header = jsonwebtoken::decode_header(proof)
            .map_err(|e| ProofRefusal::Invalid(format!("the proof is not a JWT: {e}")))?;
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(invalid("the proof's typ must be dpop+jwt"));
        }
        if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256) {
            return Err(invalid("the proof's alg must be ES256 or RS256"));
        }
        let jwk = header
            .jwk
            .ok_or_else(|| invalid("the proof has no jwk in its header"))?;
        let jwk_json = serde_json::to_value(&jwk).unwrap_or_default();
        if jwk_json.get("d").is_some() {
            return Err(invalid("the proof's jwk contains a private key"));
        }
        let key = decoding_key(&jwk)?;
        let claims = verify_signature(proof, &key, &[header.alg])
            .map_err(|e| ProofRefusal::Invalid(format!("the proof's signature: {e}")))?;
        let claim = |name: &str| claims.get(name).and_then(Value::as_str);
        if claim("htm") != Some(expected.method) {
            return Err(invalid("the proof is for another method (htm)"));
        }
        if claim("htu").map(without_query) != Some(without_query(expected.url)) {
            return Err(invalid("the proof is for another URL (htu)"));
        }
        let now = clock.unix();
        let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(0);
        if iat + IAT_WINDOW_SECS < now || iat > now + IAT_WINDOW_SECS {
            return Err(invalid("the proof's iat is not within a minute of now"));
        }
        match (expected.access_token, claim("ath")) {
            (Some(token), Some(ath)) if ath == token_hash(token) => {}
            (Some(_), _) => return Err(invalid("the proof's ath is not the token's hash")),
            (None, _) => {}
        }
        if let Some(wanted) = self.current_nonce() {
            if claim("nonce") != Some(wanted.as_str()) {
                return Err(ProofRefusal::UseNonce(wanted));
            }
        }
        let jti = claim("jti").ok_or_else(|| invalid("the proof has no jti"))?;
        if !lock(&self.seen).insert(jti.to_owned()) {
            *lock(&self.replays) += 1;
            return Err(invalid("the proof was used before (jti replayed)"));
        }
        Ok(thumbprint(&jwk_json))
    }
}

fn decoding_key(jwk: &Jwk) -> Result<DecodingKey, ProofRefusal> {
    DecodingKey::from_jwk(jwk)
        .map_err(|e| ProofRefusal::Invalid(format!("the proof's jwk is not a usable key: {e}")))
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// base64url(SHA-256(token)): a proof's `ath`.
pub fn token_hash(token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// The RFC 7638 thumbprint of a public JWK.
pub fn thumbprint(jwk: &Value) -> String {
    let field = |name: &str| jwk.get(name).cloned().unwrap_or(Value::Null);
    let members = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => json!({"e": field("e"), "kty": "RSA", "n": field("n")}),
        _ => json!({"crv": field("crv"), "kty": "EC", "x": field("x"), "y": field("y")}),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(members.to_string().as_bytes()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token endpoint's reading of the request's `DPoP` header: `Ok(None)` without one, the key's
/// thumbprint with a good one, or the RFC 9449 §5.7 / §8 error answer.
pub(crate) fn at_token_endpoint(
    checker: &ProofChecker,
    headers: &axum::http::HeaderMap,
    url: &str,
    clock: &TestClock,
) -> Result<Option<String>, Box<axum::response::Response>> {
    use crate::oauth::OAuthError;
    use axum::response::IntoResponse as _;
    let mut proofs = headers.get_all("dpop").iter();
    let Some(proof) = proofs.next() else {
        return Ok(None);
    };
    if proofs.next().is_some() {
        return Err(Box::new(
            OAuthError::new("invalid_dpop_proof", "more than one DPoP header").into_response(),
        ));
    }
    let proof = proof.to_str().unwrap_or_default();
    let expected = Expected {
        method: "POST",
        url,
        access_token: None,
    };
    match checker.check(proof, &expected, clock) {
        Ok(jkt) => Ok(Some(jkt)),
        Err(ProofRefusal::Invalid(why)) => Err(Box::new(
            OAuthError::new("invalid_dpop_proof", why).into_response(),
        )),
        Err(ProofRefusal::UseNonce(nonce)) => {
            let mut response = OAuthError::new(
                "use_dpop_nonce",
                "this server wants its nonce in the DPoP proof",
            )
            .into_response();
            if let Ok(value) = axum::http::HeaderValue::from_str(&nonce) {
                response.headers_mut().insert("dpop-nonce", value);
            }
            Err(Box::new(response))
        }
    }
}
