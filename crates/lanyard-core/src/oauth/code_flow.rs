//! The standard MCP authorization for servers without Enterprise-Managed Authorization: OAuth 2.1
//! authorization code with PKCE S256, after the discovery of [`super::discovery`].
//!
//! It owns the decisions the MCP authorization spec leaves to the client, as pure functions: which
//! client identity to use, in the spec's order (a pre-registered `client_id`, a Client ID
//! Metadata Document URL when the authorization server takes one, dynamic registration only when
//! allowed); which scopes to ask for (the 401 challenge's `scope`, else the protected resource's
//! `scopes_supported`, else none; `offline_access` only when the authorization server lists it);
//! the authorization URL (PKCE S256, `state`, `resource`); and the redirect's verdict (`state`
//! exact, RFC 9207 `iss` compared byte for byte with the recorded issuer whenever it is present and
//! required when advertised). [`prepare`] and [`redeem`] drive them through the
//! [`HttpExecutor`]. It opens no browser, listens on no port, reads no clock and stores nothing:
//! callers bring the redirect (the loopback listener of [`crate::signin`], or a test reading the
//! `Location` header) and keep the tokens.

use serde::Deserialize;
use url::Url;

use super::client_auth::{AssertionInputs, Client, ClientAuth};
use super::discovery::{self, AuthorizationServerMetadata, DiscoveredServer, DiscoveredUrls};
use super::error::{capped_message, excerpt, WireError};
use super::http::{redacted_url, HttpExecutor};
use super::token::{self, TokenEndpoint, TokenResponse};
use crate::secret::Secret;

/// The scope that asks for a refresh token where the authorization server lists it (SEP-2207).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// How Lanyard may identify itself at a server's authorization server, as the policy says.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentityPolicy {
    /// A client id the administrator registered there.
    pub client_id: Option<String>,
    /// Its secret, for a pre-registered confidential client.
    pub client_secret: Option<Secret>,
    /// The URL of a Client ID Metadata Document the company hosts.
    pub metadata_document_url: Option<String>,
    /// Whether RFC 7591 dynamic registration may be used.
    pub allow_dynamic_registration: bool,
}

/// The identity chosen for one authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// The policy's client id.
    PreRegistered,
    /// The Client ID Metadata Document URL is the client id.
    MetadataDocument(String),
    /// Register at this endpoint first.
    Register(Url),
}

/// Picks the client identity in the spec's order; an error says what the administrator can set.
pub fn choose_client_identity(
    policy: &ClientIdentityPolicy,
    metadata: &AuthorizationServerMetadata,
) -> Result<ClientIdentity, WireError> {
    if policy.client_id.as_deref().is_some_and(|id| !id.is_empty()) {
        return Ok(ClientIdentity::PreRegistered);
    }
    if let Some(url) = &policy.metadata_document_url {
        if metadata.client_id_metadata_document_supported {
            return Ok(ClientIdentity::MetadataDocument(url.clone()));
        }
    }
    if policy.allow_dynamic_registration {
        if let Some(endpoint) = &metadata.registration_endpoint {
            return Ok(ClientIdentity::Register(endpoint.clone()));
        }
    }
    let mut tried = Vec::new();
    if policy.metadata_document_url.is_some() {
        tried.push("it does not accept Client ID Metadata Documents");
    }
    if policy.allow_dynamic_registration {
        tried.push("it offers no dynamic client registration");
    } else if metadata.registration_endpoint.is_some() {
        tried.push("the policy does not allow dynamic registration");
    }
    Err(WireError::Discovery(format!(
        "no client identity for the authorization server {}: {}; the administrator must register \
         Lanyard there and set the server's client_id",
        metadata.issuer,
        if tried.is_empty() {
            "the policy names neither a client_id nor a client_id_metadata_url".to_owned()
        } else {
            tried.join(", ")
        }
    )))
}

/// The client authentication for a pre-registered client: a secret goes by HTTP Basic unless the
/// authorization server lists only `client_secret_post` (RFC 8414: absent means Basic).
pub fn pre_registered_client(
    client_id: &str,
    secret: Option<&Secret>,
    metadata: &AuthorizationServerMetadata,
) -> Client {
    let methods = &metadata.token_endpoint_auth_methods_supported;
    let auth = match secret {
        None => ClientAuth::None,
        Some(secret)
            if !methods.is_empty()
                && !methods.iter().any(|m| m == "client_secret_basic")
                && methods.iter().any(|m| m == "client_secret_post") =>
        {
            ClientAuth::SecretPost(secret.clone())
        }
        Some(secret) => ClientAuth::SecretBasic(secret.clone()),
    };
    Client {
        client_id: client_id.to_owned(),
        auth,
    }
}

/// The `token_endpoint_auth_method` to register with: `none` (a native public client) unless the
/// authorization server lists methods without it, then the first secret method it lists.
pub fn registration_auth_method(metadata: &AuthorizationServerMetadata) -> &'static str {
    let methods = &metadata.token_endpoint_auth_methods_supported;
    if methods.is_empty() || methods.iter().any(|m| m == "none") {
        "none"
    } else if methods.iter().any(|m| m == "client_secret_basic") {
        "client_secret_basic"
    } else if methods.iter().any(|m| m == "client_secret_post") {
        "client_secret_post"
    } else {
        "none"
    }
}

/// The RFC 7591 registration document of a native client redirecting to `redirect_uri`.
pub fn registration_document(
    metadata: &AuthorizationServerMetadata,
    redirect_uri: &str,
    scopes: &[String],
) -> serde_json::Value {
    let mut grant_types = vec!["authorization_code"];
    if metadata.grant_types_supported.is_empty()
        || metadata
            .grant_types_supported
            .iter()
            .any(|g| g == token::GRANT_REFRESH_TOKEN)
    {
        grant_types.push(token::GRANT_REFRESH_TOKEN);
    }
    let mut document = serde_json::json!({
        "client_name": "Lanyard",
        "redirect_uris": [redirect_uri],
        "grant_types": grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": registration_auth_method(metadata),
        "application_type": "native",
    });
    if !scopes.is_empty() {
        document["scope"] = serde_json::Value::String(scopes.join(" "));
    }
    document
}

#[derive(Deserialize)]
struct RegistrationAnswer {
    client_id: String,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// Reads an RFC 7591 registration answer into the client it registered.
pub fn parse_registration(response: &super::HttpResponse) -> Result<Client, WireError> {
    if !(200..300).contains(&response.status) {
        return Err(match token::parse_error(response) {
            e @ WireError::OAuth(_) => e,
            _ => WireError::Status {
                url: redacted_url(&response.url),
                status: response.status,
                excerpt: excerpt(&response.body),
            },
        });
    }
    let answer: RegistrationAnswer =
        serde_json::from_slice(&response.body).map_err(|e| WireError::Malformed {
            url: redacted_url(&response.url),
            what: "client registration answer",
            detail: capped_message(e),
        })?;
    let auth = match (
        answer.client_secret,
        answer.token_endpoint_auth_method.as_deref(),
    ) {
        (None, _) | (_, Some("none")) => ClientAuth::None,
        (Some(secret), Some("client_secret_post")) => ClientAuth::SecretPost(secret),
        (Some(secret), _) => ClientAuth::SecretBasic(secret),
    };
    Ok(Client {
        client_id: answer.client_id,
        auth,
    })
}

/// The scopes to ask for: the policy's when it pins some; else the challenge's, else the
/// protected resource's `scopes_supported`, else none (the `scope` parameter is then left out);
/// plus `extra` (a step-up), and `offline_access` when the authorization server lists it.
pub fn select_scopes(
    policy_scopes: &[String],
    discovered: &DiscoveredServer,
    extra: &[String],
) -> Vec<String> {
    let mut scopes: Vec<String> = if policy_scopes.is_empty() {
        discovered.challenge_scopes.clone()
    } else {
        policy_scopes.to_vec()
    };
    for scope in extra {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    let offered = discovered
        .authorization_server
        .scopes_supported
        .iter()
        .any(|s| s == OFFLINE_ACCESS);
    if offered && !scopes.iter().any(|s| s == OFFLINE_ACCESS) {
        scopes.push(OFFLINE_ACCESS.to_owned());
    }
    if !offered {
        scopes.retain(|s| s != OFFLINE_ACCESS);
    }
    scopes
}

/// Everything an authorization request and its code exchange need for one server.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub discovered: DiscoveredServer,
    pub client: Client,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
}

impl Prepared {
    pub fn issuer(&self) -> &str {
        &self.discovered.authorization_server.issuer
    }

    pub fn token_endpoint(&self) -> TokenEndpoint {
        let metadata = &self.discovered.authorization_server;
        TokenEndpoint {
            url: metadata.token_endpoint.clone(),
            issuer: metadata.issuer.clone(),
        }
    }

    /// The authorization request's URL for `state` and the PKCE `verifier`.
    pub fn authorization_url(&self, state: &str, verifier: &Secret) -> Result<Url, WireError> {
        let metadata = &self.discovered.authorization_server;
        let mut url = metadata.authorization_endpoint.clone().ok_or_else(|| {
            WireError::Discovery(format!(
                "the authorization server {} has no authorization endpoint",
                metadata.issuer
            ))
        })?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("state", state)
                .append_pair("code_challenge", &token::pkce_s256_challenge(verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", &self.discovered.resource);
            if !self.scopes.is_empty() {
                query.append_pair("scope", &self.scopes.join(" "));
            }
        }
        Ok(url)
    }
}

/// Why a redirect back from the authorization server was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    #[error("the redirect's state is not the one this sign-in sent (a forged or stale redirect)")]
    State,
    #[error(
        "the redirect names issuer {found:?}, not the authorization server's {expected:?} (RFC 9207)"
    )]
    WrongIssuer { expected: String, found: String },
    #[error("the authorization server promised an iss parameter (RFC 9207) and sent none")]
    MissingIssuer,
    #[error("the authorization server refused: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        code: String,
        description: Option<String>,
    },
    #[error("the redirect carries no authorization code")]
    NoCode,
}

/// The code in a redirect's query `params`, after checking `state` and RFC 9207 `iss` against the
/// issuer recorded for this request (simple string comparison; present means checked even when
/// not advertised; advertised means required). An `error` answer is refused with its code, but
/// only once state and issuer say it is this request's answer.
pub fn read_redirect<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    expected_state: &str,
    metadata: &AuthorizationServerMetadata,
) -> Result<Secret, RedirectRefused> {
    let mut state = None;
    let mut iss = None;
    let mut code = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in params {
        match k {
            "state" => state = Some(v),
            "iss" => iss = Some(v),
            "code" => code = Some(v),
            "error" => error = Some(v),
            "error_description" => description = Some(v),
            _ => {}
        }
    }
    if state != Some(expected_state) {
        return Err(RedirectRefused::State);
    }
    match iss {
        Some(found) if found != metadata.issuer => {
            return Err(RedirectRefused::WrongIssuer {
                expected: metadata.issuer.clone(),
                found: found.to_owned(),
            })
        }
        None if metadata.authorization_response_iss_parameter_supported => {
            return Err(RedirectRefused::MissingIssuer)
        }
        _ => {}
    }
    if let Some(code) = error {
        return Err(RedirectRefused::Refused {
            code: code.to_owned(),
            description: description.map(str::to_owned),
        });
    }
    code.filter(|c| !c.is_empty())
        .map(Secret::new)
        .ok_or(RedirectRefused::NoCode)
}

/// Refuses an authorization server that does not offer PKCE S256 (the MCP spec: absent
/// `code_challenge_methods_supported` means no PKCE, and the client must not go on).
pub fn check_pkce(metadata: &AuthorizationServerMetadata) -> Result<(), WireError> {
    if metadata
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        Ok(())
    } else {
        Err(WireError::Discovery(format!(
            "the authorization server {} does not offer PKCE S256 (code_challenge_methods_supported); refused",
            metadata.issuer
        )))
    }
}

/// What [`prepare`] needs besides the executor.
#[derive(Debug, Clone)]
pub struct PrepareInputs<'a> {
    pub server_url: &'a Url,
    pub urls: DiscoveredUrls,
    pub identity: &'a ClientIdentityPolicy,
    pub redirect_uri: &'a str,
    /// The policy's scopes (empty: the server's).
    pub policy_scopes: &'a [String],
    /// Scopes a 403 `insufficient_scope` asked for on top.
    pub extra_scopes: &'a [String],
    /// A client registered earlier at the same issuer (kept by the caller); used instead of a new
    /// registration only when `issuer` is still the server's authorization server.
    pub registered: Option<(&'a str, &'a Client)>,
    /// The issuers the caller accepts (empty: any), checked before anything is sent to the
    /// authorization server: the MCP server does not choose where a registration, a client
    /// secret or the user's consent goes.
    pub accepted_issuers: &'a [String],
}

/// Discovers the server's authorization server, checks PKCE, and settles the client identity
/// (registering when that is the way) and the scopes.
pub async fn prepare(
    http: &HttpExecutor,
    inputs: &PrepareInputs<'_>,
) -> Result<Prepared, WireError> {
    let discovered = discovery::discover_server_with(http, inputs.server_url, inputs.urls).await?;
    let metadata = &discovered.authorization_server;
    if !inputs.accepted_issuers.is_empty() && !inputs.accepted_issuers.contains(&metadata.issuer) {
        return Err(WireError::Discovery(format!(
            "the server names the authorization server {}, which the policy does not name \
             (authorization_server or allowed_authorization_servers): refused",
            metadata.issuer
        )));
    }
    check_pkce(metadata)?;
    let scopes = select_scopes(inputs.policy_scopes, &discovered, inputs.extra_scopes);
    let client = match choose_client_identity(inputs.identity, metadata)? {
        ClientIdentity::PreRegistered => pre_registered_client(
            inputs.identity.client_id.as_deref().unwrap_or_default(),
            inputs.identity.client_secret.as_ref(),
            metadata,
        ),
        ClientIdentity::MetadataDocument(url) => Client {
            client_id: url,
            auth: ClientAuth::None,
        },
        ClientIdentity::Register(endpoint) => match inputs.registered {
            Some((issuer, client)) if issuer == metadata.issuer => client.clone(),
            _ => {
                let document = registration_document(metadata, inputs.redirect_uri, &scopes);
                parse_registration(&http.post_json(&endpoint, &document).await?)?
            }
        },
    };
    Ok(Prepared {
        discovered,
        client,
        scopes,
        redirect_uri: inputs.redirect_uri.to_owned(),
    })
}

/// The code exchange's request (the `resource` sent again, RFC 8707), for callers that add to it
/// (a DPoP proof) before sending.
pub fn code_exchange(
    prepared: &Prepared,
    code: &Secret,
    verifier: &Secret,
    assertion: &AssertionInputs,
) -> Result<super::HttpRequest, WireError> {
    let mut request = token::authorization_code(
        &prepared.token_endpoint(),
        &prepared.client,
        assertion,
        code,
        &prepared.redirect_uri,
        verifier,
    )?;
    request.field("resource", prepared.discovered.resource.clone());
    Ok(request)
}

/// Exchanges the code for tokens ([`code_exchange`], sent).
pub async fn redeem(
    http: &HttpExecutor,
    prepared: &Prepared,
    code: &Secret,
    verifier: &Secret,
    assertion: AssertionInputs,
) -> Result<TokenResponse, WireError> {
    let request = code_exchange(prepared, code, verifier, &assertion)?;
    token::parse_token_response(&http.execute(&request).await?)
}

/// Renews the tokens with a refresh token (the `resource` sent again). The answer's refresh
/// token, when there is one, replaces the old one (rotation); callers keep the old one otherwise.
pub async fn refresh(
    http: &HttpExecutor,
    endpoint: &TokenEndpoint,
    client: &Client,
    refresh_token: &Secret,
    resource: &str,
    assertion: AssertionInputs,
) -> Result<TokenResponse, WireError> {
    let mut request = token::refresh(endpoint, client, &assertion, refresh_token, &[])?;
    request.field("resource", resource.to_owned());
    token::parse_token_response(&http.execute(&request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(json: serde_json::Value) -> AuthorizationServerMetadata {
        let mut base = serde_json::json!({
            "issuer": "https://as.example",
            "token_endpoint": "https://as.example/token",
            "authorization_endpoint": "https://as.example/authorize",
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(base).expect("metadata")
    }

    fn discovered(challenge: &[&str], as_meta: AuthorizationServerMetadata) -> DiscoveredServer {
        DiscoveredServer {
            resource: "https://m.example/mcp".into(),
            authorization_server: as_meta,
            challenge_scopes: challenge.iter().map(|s| s.to_string()).collect(),
            scopes_from_challenge: !challenge.is_empty(),
        }
    }

    #[test]
    fn identity_in_the_spec_order() {
        let m = metadata(serde_json::json!({
            "client_id_metadata_document_supported": true,
            "registration_endpoint": "https://as.example/register",
        }));
        let mut policy = ClientIdentityPolicy {
            client_id: Some("pre".into()),
            metadata_document_url: Some("https://corp.example/lanyard.json".into()),
            allow_dynamic_registration: true,
            ..Default::default()
        };
        assert_eq!(
            choose_client_identity(&policy, &m).expect("pre"),
            ClientIdentity::PreRegistered
        );
        policy.client_id = None;
        assert_eq!(
            choose_client_identity(&policy, &m).expect("cimd"),
            ClientIdentity::MetadataDocument("https://corp.example/lanyard.json".into())
        );
        let no_cimd = metadata(serde_json::json!({
            "registration_endpoint": "https://as.example/register",
        }));
        assert!(matches!(
            choose_client_identity(&policy, &no_cimd).expect("dcr"),
            ClientIdentity::Register(_)
        ));
        policy.allow_dynamic_registration = false;
        let error = choose_client_identity(&policy, &no_cimd).expect_err("nothing allowed");
        let text = error.to_string();
        assert!(
            text.contains("does not allow dynamic registration"),
            "{text}"
        );
        assert!(text.contains("client_id"), "{text}");
    }

    #[test]
    fn scopes_from_challenge_then_prm_and_offline_access_only_where_listed() {
        let plain = metadata(serde_json::json!({}));
        assert_eq!(
            select_scopes(&[], &discovered(&["read"], plain.clone()), &[]),
            ["read"]
        );
        assert!(select_scopes(&[], &discovered(&[], plain.clone()), &[]).is_empty());
        assert_eq!(
            select_scopes(&[], &discovered(&["read", "offline_access"], plain), &[]),
            ["read"]
        );
        let offline = metadata(serde_json::json!({"scopes_supported": ["read", "offline_access"]}));
        assert_eq!(
            select_scopes(
                &[],
                &discovered(&["read"], offline.clone()),
                &["write".into()]
            ),
            ["read", "write", "offline_access"]
        );
        assert_eq!(
            select_scopes(&["pinned".into()], &discovered(&["read"], offline), &[]),
            ["pinned", "offline_access"]
        );
    }

    #[test]
    fn redirect_checks_state_and_iss() {
        let advertised =
            metadata(serde_json::json!({"authorization_response_iss_parameter_supported": true}));
        let silent = metadata(serde_json::json!({}));
        let ok = [("code", "c"), ("state", "s"), ("iss", "https://as.example")];
        assert_eq!(
            read_redirect(ok, "s", &advertised).expect("ok").expose(),
            "c"
        );
        assert_eq!(
            read_redirect(ok, "other", &advertised),
            Err(RedirectRefused::State)
        );
        assert_eq!(
            read_redirect([("code", "c"), ("state", "s")], "s", &advertised),
            Err(RedirectRefused::MissingIssuer)
        );
        assert!(read_redirect([("code", "c"), ("state", "s")], "s", &silent).is_ok());
        // Present but not advertised: still compared; no URL normalization.
        for wrong in [
            "https://evil.example",
            "https://as.example/",
            "HTTPS://as.example",
        ] {
            assert!(matches!(
                read_redirect(
                    [("code", "c"), ("state", "s"), ("iss", wrong)],
                    "s",
                    &silent
                ),
                Err(RedirectRefused::WrongIssuer { .. })
            ));
        }
        assert!(matches!(
            read_redirect([("error", "access_denied"), ("state", "s")], "s", &silent),
            Err(RedirectRefused::Refused { .. })
        ));
    }

    #[test]
    fn secrets_go_the_way_the_server_takes_them() {
        let secret = Secret::new("s");
        let basic = metadata(serde_json::json!({}));
        let post = metadata(
            serde_json::json!({"token_endpoint_auth_methods_supported": ["client_secret_post"]}),
        );
        assert_eq!(
            pre_registered_client("c", Some(&secret), &basic)
                .auth
                .method_name(),
            "client_secret_basic"
        );
        assert_eq!(
            pre_registered_client("c", Some(&secret), &post)
                .auth
                .method_name(),
            "client_secret_post"
        );
        assert_eq!(registration_auth_method(&basic), "none");
        assert_eq!(registration_auth_method(&post), "client_secret_post");
    }

    #[test]
    fn pkce_s256_is_required() {
        assert!(check_pkce(&metadata(serde_json::json!({}))).is_err());
        assert!(check_pkce(&metadata(
            serde_json::json!({"code_challenge_methods_supported": ["S256"]})
        ))
        .is_ok());
    }
}
