//! DPoP (RFC 9449): proof-of-possession for access tokens. A DPoP-bound token is useless without
//! the private key it was bound to, so a token copied out of a log, a client's memory or a config
//! file is worth nothing to whoever copied it.
//!
//! What lives here, all pure: the device's DPoP key ([`DpopKey`]: an in-memory P-256 key made
//! when the agent starts, or a key the OS holds), the proof JWT for one HTTP request
//! ([`DpopKey::proof`]: `typ` `dpop+jwt`, the public key in the header, a fresh `jti`, `htm`,
//! `htu` without query or fragment, `iat`, `ath` when a token goes with it, and the server's
//! nonce when it asked for one), and the reading of a server's answers: its `DPoP-Nonce` header
//! and the `use_dpop_nonce` error that asks for a retry with it ([`asks_for_nonce`]). Callers
//! pass the time and the `jti` in, as everywhere in [`crate::oauth`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::client_auth::{KeyAlgorithm, KeySigner};
use super::error::WireError;
use super::http::HttpResponse;
use crate::secret::Secret;

/// The request header that carries a proof, and the `Authorization` scheme of a bound token.
pub const DPOP_HEADER: &str = "DPoP";
/// The response header in which a server hands out the nonce it wants in the next proof.
pub const NONCE_HEADER: &str = "DPoP-Nonce";
/// `token_type` of a DPoP-bound access token (compared without regard to case).
pub const TOKEN_TYPE_DPOP: &str = "DPoP";
/// The error a server answers when a proof lacks its nonce (RFC 9449 §8, §9).
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// How one server's tokens are bound (`servers[].dpop`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DpopUse {
    /// Bearer tokens only.
    Off,
    /// DPoP when the authorization server's metadata lists `dpop_signing_alg_values_supported`
    /// with the device key's algorithm; bearer tokens otherwise.
    #[default]
    IfSupported,
    /// DPoP or no token: a server whose authorization server does not offer it is an error.
    Required,
}

impl DpopUse {
    /// Whether to ask for a bound token from an authorization server advertising `algs`.
    pub fn applies(self, algs: &[String], key: KeyAlgorithm) -> Result<bool, String> {
        let offered = algs.iter().any(|a| a == alg_name(key));
        match self {
            Self::Off => Ok(false),
            Self::IfSupported => Ok(offered),
            Self::Required if offered => Ok(true),
            Self::Required => Err(if algs.is_empty() {
                "the policy requires DPoP for this server, but its authorization server does not \
                 offer it (no dpop_signing_alg_values_supported in its metadata)"
                    .to_owned()
            } else {
                format!(
                    "the policy requires DPoP for this server, but its authorization server \
                     accepts only {} proofs and this device's key signs {}",
                    algs.join(", "),
                    alg_name(key)
                )
            }),
        }
    }
}

/// The JWS `alg` name of `alg`.
pub fn alg_name(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::ES256 => "ES256",
    }
}

/// Where a device's DPoP key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpopKeyHome {
    /// Made when the agent started; only in its memory, gone when it stops.
    Memory,
    /// The client key the operating system holds (`client_auth.private_key_jwt.key`).
    OsKeyStore,
}

/// The device's DPoP key: signs proofs; its public half travels in every proof's header. Prints
/// as its thumbprint only.
#[derive(Clone)]
pub struct DpopKey {
    signer: Arc<dyn KeySigner>,
    alg: KeyAlgorithm,
    header_jwk: Value,
    thumbprint: String,
    home: DpopKeyHome,
}

/// A P-256 key in this process's memory.
struct MemoryKey {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl KeySigner for MemoryKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        // `FIXED` signing gives the JWS form, `r || s`.
        self.pair
            .sign(&self.rng, message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| "the in-memory key did not sign".to_owned())
    }
}

impl DpopKey {
    /// A new P-256 key, held in memory only. `None` only when the OS has no randomness to give.
    pub fn generate() -> Option<Self> {
        use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).ok()?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .ok()?;
        let jwk = crate::device_key::ec_jwk(pair.public_key().as_ref())?;
        Some(Self::from_parts(
            Arc::new(MemoryKey { pair, rng }),
            KeyAlgorithm::ES256,
            jwk,
            DpopKeyHome::Memory,
        ))
    }

    /// A key the OS holds (`public_jwk` is its public half as the store reported it).
    pub fn held(signer: Arc<dyn KeySigner>, alg: KeyAlgorithm, public_jwk: &Value) -> Self {
        // Only the public members: whatever else the store put in the JWK stays out of proofs.
        let field = |name: &str| public_jwk.get(name).cloned().unwrap_or(Value::Null);
        let jwk = match public_jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => json!({"kty": "RSA", "n": field("n"), "e": field("e")}),
            _ => json!({"kty": "EC", "crv": field("crv"), "x": field("x"), "y": field("y")}),
        };
        Self::from_parts(signer, alg, jwk, DpopKeyHome::OsKeyStore)
    }

    fn from_parts(
        signer: Arc<dyn KeySigner>,
        alg: KeyAlgorithm,
        header_jwk: Value,
        home: DpopKeyHome,
    ) -> Self {
        let thumbprint = crate::device_key::jwk_thumbprint(&header_jwk);
        Self {
            signer,
            alg,
            header_jwk,
            thumbprint,
            home,
        }
    }

    /// The RFC 7638 thumbprint of the public key: the `jkt` a bound token names.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    pub fn home(&self) -> DpopKeyHome {
        self.home
    }

    /// The proof for one request. Blocks for the key store's round trip when the OS holds the key.
    pub fn proof(&self, inputs: &ProofInputs<'_>) -> Result<Secret, WireError> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = json!({
            "typ": "dpop+jwt",
            "alg": alg_name(self.alg),
            "jwk": self.header_jwk,
        });
        let mut claims = json!({
            "jti": inputs.jti,
            "htm": inputs.method,
            "htu": htu(inputs.url),
            "iat": inputs.now,
        });
        if let Some(token) = inputs.access_token {
            claims["ath"] = Value::String(access_token_hash(token));
        }
        if let Some(nonce) = inputs.nonce {
            claims["nonce"] = Value::String(nonce.to_owned());
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .signer
            .sign(input.as_bytes())
            .map_err(|e| WireError::ClientAuth(format!("the DPoP key did not sign: {e}")))?;
        Ok(Secret::new(format!("{input}.{}", b64(&signature))))
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DpopKey({:?}, jkt {})", self.home, self.thumbprint)
    }
}

/// What one proof is for.
#[derive(Debug, Clone)]
pub struct ProofInputs<'a> {
    /// `POST`, `GET`, `DELETE`.
    pub method: &'a str,
    /// The request's URL (its query and fragment are left out of `htu`).
    pub url: &'a Url,
    /// Unix seconds.
    pub now: u64,
    /// A fresh unique id.
    pub jti: String,
    /// The access token sent with the request (at a resource server), hashed into `ath`.
    pub access_token: Option<&'a Secret>,
    /// The server's latest nonce, when it gave one.
    pub nonce: Option<&'a str>,
}

/// `htu`: the URL without query and fragment (RFC 9449 §4.2).
pub fn htu(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// `ath`: base64url of the SHA-256 of the access token.
pub fn access_token_hash(token: &Secret) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(token.expose()))
}

/// The nonce a server handed out in `response`, if any (a visible ASCII token, at most 512
/// bytes: anything else is not used).
pub fn nonce_of(response: &HttpResponse) -> Option<String> {
    response
        .header_values(NONCE_HEADER)
        .next()
        .map(str::trim)
        .filter(|n| valid_nonce(n))
        .map(str::to_owned)
}

/// Whether `nonce` may go into a proof: RFC 9449's `NQCHAR` set, bounded.
pub fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= 512
        && nonce
            .bytes()
            .all(|b| b == b'!' || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether a token endpoint's refusal asks for a proof with its nonce.
pub fn asks_for_nonce(error: &WireError) -> bool {
    matches!(error, WireError::OAuth(body) if body.error == USE_DPOP_NONCE)
}

/// Whether a token response's `token_type` says the token is DPoP-bound.
pub fn is_dpop_token_type(token_type: Option<&str>) -> bool {
    token_type.is_some_and(|t| t.eq_ignore_ascii_case(TOKEN_TYPE_DPOP))
}

/// The latest nonce each endpoint handed out, so the next proof to it carries one without first
/// being refused. Kept per endpoint URL, not per origin: an identity provider and an
/// authorization server may share a host and hand out different nonces. Shared by every grant of
/// one agent.
#[derive(Debug, Default)]
pub struct Nonces(Mutex<HashMap<String, String>>);

impl Nonces {
    /// The nonce last seen from the endpoint at `url`.
    pub fn for_url(&self, url: &Url) -> Option<String> {
        self.lock().get(&htu(url)).cloned()
    }

    /// Remembers the nonce `response` carries, if any.
    pub fn learn(&self, response: &HttpResponse) {
        if let Some(nonce) = nonce_of(response) {
            self.lock().insert(htu(&response.url), nonce);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A poisoned map holds plain strings still worth using.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn a_proof_names_the_request_and_verifies_with_the_key_in_its_header() {
        let key = DpopKey::generate().expect("a key");
        let url = Url::parse("https://mcp.example.com/mcp?x=1#frag").expect("url");
        let token = Secret::new("the-token");
        let proof = key
            .proof(&ProofInputs {
                method: "POST",
                url: &url,
                now: 1_700_000_000,
                jti: "j1".into(),
                access_token: Some(&token),
                nonce: Some("n-1"),
            })
            .expect("signed");
        let parts: Vec<&str> = proof.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "no private member");
        assert_eq!(
            crate::device_key::jwk_thumbprint(&header["jwk"]),
            key.thumbprint()
        );
        let claims = decode(parts[1]);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://mcp.example.com/mcp");
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["jti"], "j1");
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["ath"], access_token_hash(&token));

        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(header["jwk"].clone()).expect("a JWK");
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("a key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(proof.expose(), &decoding, &validation)
            .expect("the signature verifies with the header's key");

        let other = DpopKey::generate().expect("a key");
        assert_ne!(
            other.thumbprint(),
            key.thumbprint(),
            "each agent start makes its own"
        );
    }

    #[test]
    fn policy_if_supported_follows_the_metadata_and_required_names_why_it_fails() {
        let es = vec!["ES256".to_owned(), "RS256".to_owned()];
        assert_eq!(
            DpopUse::IfSupported.applies(&es, KeyAlgorithm::ES256),
            Ok(true)
        );
        assert_eq!(
            DpopUse::IfSupported.applies(&[], KeyAlgorithm::ES256),
            Ok(false)
        );
        assert_eq!(DpopUse::Off.applies(&es, KeyAlgorithm::ES256), Ok(false));
        let err = DpopUse::Required
            .applies(&[], KeyAlgorithm::ES256)
            .expect_err("refused");
        assert!(err.contains("does not offer it"), "{err}");
        let err = DpopUse::Required
            .applies(&["PS256".to_owned()], KeyAlgorithm::ES256)
            .expect_err("refused");
        assert!(err.contains("accepts only PS256"), "{err}");
    }

    #[test]
    fn nonces_are_checked_and_remembered_per_endpoint() {
        assert!(valid_nonce("abc-123_~"));
        assert!(!valid_nonce(""));
        assert!(!valid_nonce("with space"));
        assert!(!valid_nonce("quote\""));
        assert!(!valid_nonce(&"n".repeat(513)));
        let nonces = Nonces::default();
        let url = Url::parse("https://as.example.com/token").expect("url");
        nonces.learn(&HttpResponse {
            url: url.clone(),
            status: 400,
            headers: vec![("dpop-nonce".into(), " fresh ".into())],
            body: Vec::new(),
        });
        let same = Url::parse("https://as.example.com/token?x=1").expect("url");
        assert_eq!(nonces.for_url(&same).as_deref(), Some("fresh"));
        let other_path = Url::parse("https://as.example.com/other").expect("url");
        assert_eq!(nonces.for_url(&other_path), None);
    }
}
