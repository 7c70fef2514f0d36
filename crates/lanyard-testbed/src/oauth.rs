//! Shared OAuth wire pieces for the fake servers: RFC 6749 §5.2 error bodies, form bodies, random
//! values, PKCE. Pure helpers; no state, no clock.

use std::collections::HashMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Grant type of RFC 8693 token exchange.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Grant type of the RFC 7523 JWT bearer grant.
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Grant type of the RFC 8628 device authorization grant.
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Token type of an Identity Assertion JWT Authorization Grant.
pub const TOKEN_TYPE_ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// Token type of an OpenID Connect ID token.
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// RFC 8693: a refresh token (the SAML exchange issues one; an ID-JAG exchange may present it).
pub const TOKEN_TYPE_REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// RFC 8693: a base64url-encoded SAML 2.0 assertion.
pub const TOKEN_TYPE_SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
/// Grant profile advertised by authorization servers that accept ID-JAGs.
pub const GRANT_PROFILE_ID_JAG: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// JWT `typ` of an ID-JAG.
pub const JWT_TYPE_ID_JAG: &str = "oauth-id-jag+jwt";
/// `client_assertion_type` for `private_key_jwt`.
pub const CLIENT_ASSERTION_JWT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Extension identifier of MCP Enterprise-Managed Authorization.
pub const EXT_ENTERPRISE_MANAGED: &str = "io.modelcontextprotocol/enterprise-managed-authorization";
/// Extension identifier of MCP OAuth Client Credentials.
pub const EXT_CLIENT_CREDENTIALS: &str = "io.modelcontextprotocol/oauth-client-credentials";

/// An RFC 6749 §5.2 error answer: status, `error`, `error_description` and extra members.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// HTTP status (400 unless `invalid_client`, which is 401).
    pub status: StatusCode,
    /// The `error` code.
    pub error: String,
    /// The `error_description`.
    pub description: String,
    /// Extra JSON members (e.g. `max_age`).
    pub extra: Map<String, Value>,
    /// Whether to answer `WWW-Authenticate: Basic` (client authentication by HTTP Basic failed).
    pub basic_challenge: bool,
}

impl OAuthError {
    /// A 400 error with the given code and description.
    pub fn new(error: &str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: error.to_string(),
            description: description.into(),
            extra: Map::new(),
            basic_challenge: false,
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }

    /// `server_error` (500): the fake itself failed (e.g. the IdP's JWKS was unreachable).
    pub fn server_error(description: impl Into<String>) -> Self {
        let mut e = Self::new("server_error", description);
        e.status = StatusCode::INTERNAL_SERVER_ERROR;
        e
    }

    /// `invalid_client` (401).
    pub fn invalid_client(description: impl Into<String>) -> Self {
        let mut e = Self::new("invalid_client", description);
        e.status = StatusCode::UNAUTHORIZED;
        e
    }

    /// Adds an extra JSON member.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.error));
        body.insert("error_description".into(), Value::String(self.description));
        body.extend(self.extra);
        let mut resp = (self.status, Json(Value::Object(body))).into_response();
        no_store(&mut resp);
        if self.basic_challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"lanyard-testbed\""),
            );
        }
        resp
    }
}

/// A successful token-endpoint answer (`Cache-Control: no-store`).
pub fn token_response(body: Value) -> Response {
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    no_store(&mut resp);
    resp
}

fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// An `application/x-www-form-urlencoded` body as a map (last value wins; empty values dropped, as
/// RFC 6749 §3.1 treats them as omitted).
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A URL-safe random string of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The S256 code challenge of a PKCE verifier.
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Splits a space-separated scope string.
pub fn scopes(s: Option<&String>) -> Vec<String> {
    s.map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A JSON object with `error` and `error_description` (for non-token endpoints).
pub fn error_json(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn form_drops_empty_values() {
        let f = parse_form(b"a=1&b=&c=x%20y");
        assert_eq!(f.get("a").map(String::as_str), Some("1"));
        assert!(!f.contains_key("b"));
        assert_eq!(f.get("c").map(String::as_str), Some("x y"));
    }
}
