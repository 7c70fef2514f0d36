//! Client authentication at the fake token endpoints: `none`, `client_secret_basic`,
//! `client_secret_post` and `private_key_jwt`. A client must use exactly the method it is registered
//! with; anything else is `invalid_client`. Shared by the IdP and every authorization server.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::clock::TestClock;
use crate::config::{ClientAuth, RegisteredClient};
use crate::keys::{audience_contains, verify_signature};
use crate::oauth::{OAuthError, CLIENT_ASSERTION_JWT};

/// What a token endpoint needs to authenticate clients.
pub struct ClientVerifier<'a> {
    /// The registered clients.
    pub clients: &'a [RegisteredClient],
    /// Acceptable `aud` values of a client assertion (issuer, token endpoint).
    pub audiences: &'a [String],
    /// The clock for `exp` checks.
    pub clock: &'a TestClock,
    /// `jti`s of client assertions already used.
    pub seen_jtis: &'a Mutex<HashSet<String>>,
}

impl ClientVerifier<'_> {
    /// Authenticates the caller of a token endpoint; returns the registered client.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Result<RegisteredClient, OAuthError> {
        if let Some((id, secret)) = basic_credentials(headers)? {
            let client = self.find(&id).map_err(challenge)?;
            if let Some(form_id) = form.get("client_id") {
                if form_id != &id {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body differs from HTTP Basic",
                    ));
                }
            }
            return match &client.auth {
                ClientAuth::ClientSecretBasic(expected) if *expected == secret => Ok(client),
                ClientAuth::ClientSecretBasic(_) => {
                    Err(challenge(OAuthError::invalid_client("wrong client secret")))
                }
                other => Err(challenge(wrong_method(&id, other, "client_secret_basic"))),
            };
        }
        if let Some(assertion) = form.get("client_assertion") {
            if form.get("client_assertion_type").map(String::as_str) != Some(CLIENT_ASSERTION_JWT) {
                return Err(OAuthError::invalid_client(
                    "client_assertion_type must be the jwt-bearer assertion type",
                ));
            }
            return self.private_key_jwt(assertion, form.get("client_id"));
        }
        let id = form.get("client_id").ok_or_else(|| {
            OAuthError::invalid_client("no client authentication and no client_id")
        })?;
        let client = self.find(id)?;
        match (&client.auth, form.get("client_secret")) {
            (ClientAuth::ClientSecretPost(expected), Some(secret)) if expected == secret => {
                Ok(client)
            }
            (ClientAuth::ClientSecretPost(_), Some(_)) => {
                Err(OAuthError::invalid_client("wrong client secret"))
            }
            (ClientAuth::None, None) => Ok(client),
            (ClientAuth::None, Some(_)) => Err(OAuthError::invalid_client(
                "public client must not send a client_secret",
            )),
            (other, Some(_)) => Err(wrong_method(id, other, "client_secret_post")),
            (other, None) => Err(wrong_method(id, other, "none")),
        }
    }

    fn find(&self, id: &str) -> Result<RegisteredClient, OAuthError> {
        self.clients
            .iter()
            .find(|c| c.client_id == id)
            .cloned()
            .ok_or_else(|| OAuthError::invalid_client(format!("unknown client {id}")))
    }

    fn private_key_jwt(
        &self,
        assertion: &str,
        form_client_id: Option<&String>,
    ) -> Result<RegisteredClient, OAuthError> {
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
            .map_err(|e| OAuthError::invalid_client(format!("malformed client_assertion: {e}")))?;
        let claims = unverified.claims;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = form_client_id.map(String::as_str).unwrap_or(sub);
        let client = self.find(id)?;
        let ClientAuth::PrivateKeyJwt(pem) = &client.auth else {
            return Err(wrong_method(id, &client.auth, "private_key_jwt"));
        };
        let (key, algorithms) = public_key(pem)?;
        let claims = verify_signature(assertion, &key, &algorithms).map_err(|e| {
            OAuthError::invalid_client(format!("client_assertion signature invalid: {e}"))
        })?;
        let iss = claims.get("iss").and_then(Value::as_str);
        let sub = claims.get("sub").and_then(Value::as_str);
        if iss != Some(id) || sub != Some(id) {
            return Err(OAuthError::invalid_client(
                "client_assertion iss and sub must both equal the client_id",
            ));
        }
        if !self
            .audiences
            .iter()
            .any(|aud| audience_contains(claims.get("aud"), aud))
        {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion aud must be one of {:?}",
                self.audiences
            )));
        }
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if exp <= self.clock.unix() {
            return Err(OAuthError::invalid_client("client_assertion expired"));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .ok_or_else(|| OAuthError::invalid_client("client_assertion has no jti"))?;
        let mut seen = self
            .seen_jtis
            .lock()
            .map_err(|_| OAuthError::server_error("lock poisoned"))?;
        if !seen.insert(format!("{id}\u{0}{jti}")) {
            return Err(OAuthError::invalid_client(
                "client_assertion jti already used",
            ));
        }
        Ok(client)
    }
}

fn challenge(mut e: OAuthError) -> OAuthError {
    e.basic_challenge = e.error == "invalid_client";
    e
}

fn wrong_method(id: &str, registered: &ClientAuth, used: &str) -> OAuthError {
    OAuthError::invalid_client(format!(
        "client {id} is registered for {} but authenticated with {used}",
        registered.method_name()
    ))
}

pub(crate) fn public_key(pem: &str) -> Result<(DecodingKey, Vec<Algorithm>), OAuthError> {
    if pem.trim_start().starts_with('{') {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(pem)
            .map_err(|e| OAuthError::server_error(format!("registered JWK unusable: {e}")))?;
        let algorithms = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => vec![Algorithm::ES256],
            _ => vec![Algorithm::RS256],
        };
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| OAuthError::server_error(format!("registered JWK unusable: {e}")))?;
        return Ok((key, algorithms));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((
            key,
            vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
            ],
        ));
    }
    DecodingKey::from_ec_pem(pem.as_bytes())
        .map(|key| (key, vec![Algorithm::ES256, Algorithm::ES384]))
        .map_err(|e| OAuthError::server_error(format!("registered key unusable: {e}")))
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1: both parts form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_client("unreadable Authorization header"))?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            challenge(OAuthError::invalid_client(
                "malformed HTTP Basic credentials",
            ))
        })?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| challenge(OAuthError::invalid_client("HTTP Basic without ':'")))?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let raw = STANDARD.encode("my%20client:s%3Acret+x");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {raw}").parse().expect("header"),
        );
        let (id, secret) = basic_credentials(&headers).expect("ok").expect("some");
        assert_eq!(id, "my client");
        assert_eq!(secret, "s:cret x");
    }
}
