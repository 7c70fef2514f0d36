//! Token endpoint requests and their responses: authorization code + PKCE, refresh, RFC 8693 token
//! exchange for an ID-JAG, RFC 7523 jwt-bearer, client credentials, RFC 7009 revocation and RFC 8628
//! device authorization.
//!
//! Each grant is a pure function from typed inputs to an [`HttpRequest`]; each response is parsed by
//! a pure function from an [`HttpResponse`]. Nothing here sends, sleeps, stores or reads a clock.

use serde::Deserialize;
use url::Url;

use super::client_auth::{AssertionInputs, Client};
use super::error::{excerpt, OAuthErrorBody, WireError};
use super::http::{redacted_url, HttpRequest, HttpResponse};
use crate::secret::Secret;

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub const TOKEN_TYPE_ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
pub const TOKEN_TYPE_REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
pub const GRANT_PROFILE_ID_JAG: &str = "urn:ietf:params:oauth:grant-profile:id-jag";

/// A token endpoint and the issuer that owns it (the `aud` of client assertions).
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    pub url: Url,
    pub issuer: String,
}

fn token_request(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    grant_type: &str,
) -> Result<HttpRequest, WireError> {
    let mut request = HttpRequest::post_form(endpoint.url.clone());
    request.field("grant_type", grant_type);
    client.authenticate(&mut request, inputs)?;
    Ok(request)
}

fn scope_field(request: &mut HttpRequest, scopes: &[String]) {
    if !scopes.is_empty() {
        request.field("scope", scopes.join(" "));
    }
}

/// Authorization code + PKCE verifier → tokens.
pub fn authorization_code(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    code: &Secret,
    redirect_uri: &str,
    verifier: &Secret,
) -> Result<HttpRequest, WireError> {
    let mut request = token_request(endpoint, client, inputs, GRANT_AUTHORIZATION_CODE)?;
    request.secret_field("code", code);
    request.field("redirect_uri", redirect_uri);
    request.secret_field("code_verifier", verifier);
    Ok(request)
}

/// The RFC 7636 S256 challenge of a PKCE `verifier`.
pub fn pkce_s256_challenge(verifier: &Secret) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.expose().as_bytes()))
}

/// Refresh token → tokens (possibly with a rotated refresh token).
pub fn refresh(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    refresh_token: &Secret,
    scopes: &[String],
) -> Result<HttpRequest, WireError> {
    let mut request = token_request(endpoint, client, inputs, GRANT_REFRESH_TOKEN)?;
    request.secret_field("refresh_token", refresh_token);
    scope_field(&mut request, scopes);
    Ok(request)
}

/// The inputs of an RFC 8693 exchange of a subject token for an ID-JAG.
#[derive(Debug, Clone)]
pub struct IdJagExchange<'a> {
    pub subject_token: &'a Secret,
    /// `TOKEN_TYPE_ID_TOKEN`, `TOKEN_TYPE_SAML2` or `TOKEN_TYPE_REFRESH_TOKEN`.
    pub subject_token_type: &'a str,
    /// Exactly the `issuer` of the MCP server's authorization server.
    pub audience: &'a str,
    /// The RFC 9728 resource identifier of the MCP server.
    pub resource: &'a str,
    pub scopes: &'a [String],
}

/// Subject token → ID-JAG at the IdP.
pub fn token_exchange_for_id_jag(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    exchange: &IdJagExchange<'_>,
) -> Result<HttpRequest, WireError> {
    let mut request = token_request(endpoint, client, inputs, GRANT_TOKEN_EXCHANGE)?;
    request.field("requested_token_type", TOKEN_TYPE_ID_JAG);
    request.secret_field("subject_token", exchange.subject_token);
    request.field("subject_token_type", exchange.subject_token_type);
    request.field("audience", exchange.audience);
    request.field("resource", exchange.resource);
    scope_field(&mut request, exchange.scopes);
    Ok(request)
}

/// SAML 2.0 assertion → IdP refresh token (the ID-JAG draft's "SAML 2.0 Identity Assertion
/// Interoperability" section): `requested_token_type` is the refresh-token type, the assertion is
/// the subject token and `scope` carries the OpenID Connect scopes the draft asks for
/// (`openid offline_access`, more allowed). The assertion goes base64url-encoded without padding
/// and without line breaks (RFC 8693 §3 defines the saml2 type as base64url; RFC 7522 §2.1 says
/// pad characters SHOULD NOT be sent). The draft's example value ends in `=`: our testbed accepts
/// both, and so should an IdP; we send the form the RFCs name.
pub fn token_exchange_for_refresh_token(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    assertion_xml: &Secret,
    scopes: &[String],
) -> Result<HttpRequest, WireError> {
    use base64::Engine as _;
    let encoded = Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(assertion_xml.expose().as_bytes()),
    );
    let mut request = token_request(endpoint, client, inputs, GRANT_TOKEN_EXCHANGE)?;
    request.field("requested_token_type", TOKEN_TYPE_REFRESH_TOKEN);
    request.secret_field("subject_token", &encoded);
    request.field("subject_token_type", TOKEN_TYPE_SAML2);
    scope_field(&mut request, scopes);
    Ok(request)
}

/// ID-JAG → access token at the MCP server's authorization server.
pub fn jwt_bearer(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    assertion: &Secret,
    resource: &str,
    scopes: &[String],
) -> Result<HttpRequest, WireError> {
    let mut request = token_request(endpoint, client, inputs, GRANT_JWT_BEARER)?;
    request.secret_field("assertion", assertion);
    request.field("resource", resource);
    scope_field(&mut request, scopes);
    Ok(request)
}

/// Client credentials (the machine-to-machine extension).
pub fn client_credentials(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    resource: &str,
    scopes: &[String],
) -> Result<HttpRequest, WireError> {
    let mut request = token_request(endpoint, client, inputs, GRANT_CLIENT_CREDENTIALS)?;
    request.field("resource", resource);
    scope_field(&mut request, scopes);
    Ok(request)
}

/// RFC 8628 device code polling.
pub fn device_code(
    endpoint: &TokenEndpoint,
    client: &Client,
    inputs: &AssertionInputs,
    device_code: &Secret,
) -> Result<HttpRequest, WireError> {
    let mut request = token_request(endpoint, client, inputs, GRANT_DEVICE_CODE)?;
    request.secret_field("device_code", device_code);
    Ok(request)
}

/// RFC 7009 revocation of `token` at `revocation_url`.
pub fn revoke(
    revocation_url: &Url,
    issuer: &str,
    client: &Client,
    inputs: &AssertionInputs,
    token: &Secret,
    hint: &str,
) -> Result<HttpRequest, WireError> {
    let endpoint = TokenEndpoint {
        url: revocation_url.clone(),
        issuer: issuer.to_owned(),
    };
    let mut request = HttpRequest::post_form(endpoint.url.clone());
    request.secret_field("token", token);
    request.field("token_type_hint", hint);
    client.authenticate(&mut request, inputs)?;
    Ok(request)
}

/// RFC 8628 device authorization request.
pub fn device_authorization(
    url: &Url,
    issuer: &str,
    client: &Client,
    inputs: &AssertionInputs,
    scopes: &[String],
) -> Result<HttpRequest, WireError> {
    let _ = issuer;
    let mut request = HttpRequest::post_form(url.clone());
    client.authenticate(&mut request, inputs)?;
    scope_field(&mut request, scopes);
    Ok(request)
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: Secret,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub id_token: Option<Secret>,
    #[serde(default)]
    pub issued_token_type: Option<String>,
}

impl TokenResponse {
    /// Granted scopes as a list (empty when the server did not say).
    pub fn scopes(&self) -> Vec<String> {
        self.scope.as_deref().map(split_scopes).unwrap_or_default()
    }
}

/// Splits a space-separated scope string.
pub fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

/// Some servers send numbers as strings; accept both.
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        None => None,
        Some(NumberOrString::Number(n)) => Some(n),
        Some(NumberOrString::Float(f)) if f.is_finite() && f >= 0.0 => Some(f as u64),
        Some(NumberOrString::Float(_)) => None,
        Some(NumberOrString::Text(s)) => s.trim().parse().ok(),
    })
}

#[derive(Deserialize)]
struct ErrorFields {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_uri: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    max_age: Option<u64>,
}

/// Reads an RFC 6749 §5.2 error body out of a non-success response, or a plain status error.
pub fn parse_error(response: &HttpResponse) -> WireError {
    match serde_json::from_slice::<ErrorFields>(&response.body) {
        Ok(fields) if !fields.error.is_empty() => WireError::OAuth(OAuthErrorBody {
            status: response.status,
            error: fields.error,
            description: fields.error_description,
            uri: fields.error_uri,
            max_age: fields.max_age,
            raw: excerpt(&response.body),
        }),
        _ => WireError::Status {
            url: redacted_url(&response.url),
            status: response.status,
            excerpt: excerpt(&response.body),
        },
    }
}

/// Parses a token endpoint response.
pub fn parse_token_response(response: &HttpResponse) -> Result<TokenResponse, WireError> {
    if !(200..300).contains(&response.status) {
        return Err(parse_error(response));
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&response.body).map_err(|e| WireError::Malformed {
            url: redacted_url(&response.url),
            what: "token response",
            // Never the body: a half-readable success body may contain a token.
            detail: format!(
                "{} bytes, not a token response ({})",
                response.body.len(),
                e.classify_name()
            ),
        })?;
    if parsed.access_token.is_empty() {
        return Err(WireError::Malformed {
            url: redacted_url(&response.url),
            what: "token response",
            detail: "empty access_token".into(),
        });
    }
    Ok(parsed)
}

/// Parses an RFC 8693 response and checks it carries an ID-JAG.
pub fn parse_id_jag_response(response: &HttpResponse) -> Result<TokenResponse, WireError> {
    let parsed = parse_token_response(response)?;
    match parsed.issued_token_type.as_deref() {
        Some(TOKEN_TYPE_ID_JAG) | None => Ok(parsed),
        Some(other) => Err(WireError::Malformed {
            url: redacted_url(&response.url),
            what: "token exchange response",
            detail: format!("issued_token_type is {other:?}, expected an ID-JAG"),
        }),
    }
}

/// Parses the answer to [`token_exchange_for_refresh_token`]: per the draft the refresh token
/// comes in `access_token` (RFC 8693 names the issued token that way whatever its type), with
/// `issued_token_type` the refresh-token type and `token_type` `N_A`. An IdP that puts it in
/// `refresh_token` instead (as a plain token response would) is understood too.
pub fn parse_refresh_token_exchange_response(
    response: &HttpResponse,
) -> Result<TokenResponse, WireError> {
    let mut parsed = parse_token_response(response)?;
    match parsed.issued_token_type.as_deref() {
        Some(TOKEN_TYPE_REFRESH_TOKEN) | None => {}
        Some(other) => {
            return Err(WireError::Malformed {
                url: redacted_url(&response.url),
                what: "token exchange response",
                detail: format!("issued_token_type is {other:?}, expected a refresh token"),
            })
        }
    }
    if parsed.issued_token_type.is_some() || parsed.refresh_token.is_none() {
        parsed.refresh_token = Some(parsed.access_token.clone());
    }
    Ok(parsed)
}

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub expires_in: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub interval: Option<u64>,
}

pub fn parse_device_authorization(
    response: &HttpResponse,
) -> Result<DeviceAuthorization, WireError> {
    if !(200..300).contains(&response.status) {
        return Err(parse_error(response));
    }
    serde_json::from_slice(&response.body).map_err(|e| WireError::Malformed {
        url: redacted_url(&response.url),
        what: "device authorization response",
        detail: format!("{} bytes ({})", response.body.len(), e.classify_name()),
    })
}

/// Checks a revocation answer: RFC 7009 says 200 even for unknown tokens.
pub fn parse_revocation_response(response: &HttpResponse) -> Result<(), WireError> {
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(parse_error(response))
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected fields",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// The shortest lifetime a token is taken to have, whatever `expires_in` says: `0` (or `1`) would
/// otherwise make the schedule mint again at once, in a loop.
pub const MIN_TOKEN_LIFETIME_SECS: u64 = 30;

/// The longest lifetime a token is taken to have (a year): a hostile `expires_in` near `u64::MAX`
/// must not wrap `now + expires_in` or keep a token forever.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// `expires_in` held between [`MIN_TOKEN_LIFETIME_SECS`] and [`MAX_TOKEN_LIFETIME_SECS`].
pub fn clamp_lifetime(expires_in: u64) -> u64 {
    expires_in.clamp(MIN_TOKEN_LIFETIME_SECS, MAX_TOKEN_LIFETIME_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::client_auth::ClientAuth;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            url: Url::parse("http://127.0.0.1/token?x=1").expect("static URL"),
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn token_exchange_has_every_field_the_spec_asks_for() {
        let endpoint = TokenEndpoint {
            url: Url::parse("http://idp/token").expect("static"),
            issuer: "http://idp".into(),
        };
        let client = Client {
            client_id: "app".into(),
            auth: ClientAuth::None,
        };
        let inputs = AssertionInputs {
            audience: "http://idp".into(),
            now: 1,
            jti: "j".into(),
        };
        let subject = Secret::new("idtoken");
        let scopes = vec!["a".to_owned(), "b".to_owned()];
        let req = token_exchange_for_id_jag(
            &endpoint,
            &client,
            &inputs,
            &IdJagExchange {
                subject_token: &subject,
                subject_token_type: TOKEN_TYPE_ID_TOKEN,
                audience: "https://as.example/",
                resource: "https://mcp.example/mcp",
                scopes: &scopes,
            },
        )
        .expect("request");
        assert_eq!(req.form_value("grant_type"), Some(GRANT_TOKEN_EXCHANGE));
        assert_eq!(
            req.form_value("requested_token_type"),
            Some(TOKEN_TYPE_ID_JAG)
        );
        assert_eq!(req.form_value("subject_token"), Some("idtoken"));
        assert_eq!(
            req.form_value("subject_token_type"),
            Some(TOKEN_TYPE_ID_TOKEN)
        );
        assert_eq!(req.form_value("audience"), Some("https://as.example/"));
        assert_eq!(req.form_value("resource"), Some("https://mcp.example/mcp"));
        assert_eq!(req.form_value("scope"), Some("a b"));
        assert_eq!(req.form_value("client_id"), Some("app"));
    }

    #[test]
    fn error_body_keeps_code_description_and_raw() {
        let err = parse_token_response(&response(
            400,
            r#"{"error":"insufficient_user_authentication","error_description":"too old","max_age":"60"}"#,
        ))
        .expect_err("error");
        match err {
            WireError::OAuth(body) => {
                assert_eq!(body.error, "insufficient_user_authentication");
                assert_eq!(body.description.as_deref(), Some("too old"));
                assert_eq!(body.max_age, Some(60));
                assert!(body.raw.contains("too old"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_success_body_never_echoes_the_body() {
        let err = parse_token_response(&response(200, r#"{"access_token":"SECRETTOKEN","#))
            .expect_err("bad");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("SECRETTOKEN"), "{text}");
        assert!(!text.contains("x=1"), "query dropped from URL: {text}");
        assert!(err.is_transient());
    }

    #[test]
    fn non_json_error_is_a_status_error() {
        let err = parse_token_response(&response(503, "<html>down</html>")).expect_err("bad");
        assert!(matches!(err, WireError::Status { status: 503, .. }));
        assert!(err.is_transient());
    }

    #[test]
    fn expires_in_accepts_strings() {
        let ok = parse_token_response(&response(
            200,
            r#"{"access_token":"t","token_type":"Bearer","expires_in":"300"}"#,
        ))
        .expect("ok");
        assert_eq!(ok.expires_in, Some(300));
    }
}
