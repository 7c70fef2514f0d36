//! Finding an MCP server's authorization server, exactly in the order the MCP authorization spec
//! gives: the 401 challenge's `resource_metadata`, else RFC 9728 metadata path-inserted then at the
//! root; then RFC 8414 / OpenID Connect metadata at the well-knowns in the MCP order, accepting a
//! document only when its `issuer` equals the issuer asked for byte for byte.
//!
//! The URL arithmetic and parsing are pure functions; [`discover_server`] and
//! [`fetch_authorization_server_metadata`] drive them through the [`HttpExecutor`].
//!
//! Every URL discovery learns from a server (the challenge's `resource_metadata`, the PRM's
//! authorization server, the endpoints in the authorization server's metadata) must use https;
//! plain HTTP only to a loopback host, and only where [`DiscoveredUrls`] allows it (`dev_mode`).
//! A server cannot point Lanyard at a plain-HTTP host where its secrets would travel in clear.

use serde::Deserialize;
use url::Url;

use super::error::{capped_message, excerpt, WireError};
use super::http::{redacted_url, HttpExecutor, HttpRequest, HttpResponse};
use super::token::{GRANT_JWT_BEARER, GRANT_PROFILE_ID_JAG};

/// Which URLs that a server names may be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveredUrls {
    /// https only (production).
    HttpsOnly,
    /// https, and plain HTTP to a loopback host (`dev_mode`: the testbed).
    AlsoLoopbackHttp,
}

impl DiscoveredUrls {
    /// The rule for `dev_mode`.
    pub fn for_dev_mode(dev_mode: bool) -> Self {
        if dev_mode {
            Self::AlsoLoopbackHttp
        } else {
            Self::HttpsOnly
        }
    }

    /// The strictest rule the URL Lanyard started from already meets: a policy admits plain-HTTP
    /// loopback URLs only with `dev_mode`, so a start at one means `dev_mode` is on.
    pub fn like(start: &Url) -> Self {
        if start.scheme() == "http" && is_loopback(start) {
            Self::AlsoLoopbackHttp
        } else {
            Self::HttpsOnly
        }
    }

    /// Refuses `url` (named `what` in the error) unless this rule allows it.
    pub fn check(self, url: &Url, what: &str) -> Result<(), WireError> {
        match (url.scheme(), self) {
            ("https", _) => Ok(()),
            ("http", Self::AlsoLoopbackHttp) if is_loopback(url) => Ok(()),
            ("http", Self::HttpsOnly) if is_loopback(url) => Err(WireError::Discovery(format!(
                "{what} {} uses plain HTTP; loopback HTTP is followed only with dev_mode",
                redacted_url(url)
            ))),
            _ => Err(WireError::Discovery(format!(
                "{what} {} does not use https: refused",
                redacted_url(url)
            ))),
        }
    }

    /// [`DiscoveredUrls::check`] on every endpoint the metadata names.
    fn check_metadata(self, metadata: &AuthorizationServerMetadata) -> Result<(), WireError> {
        self.check(&metadata.token_endpoint, "the token endpoint")?;
        let optional = [
            (
                &metadata.authorization_endpoint,
                "the authorization endpoint",
            ),
            (&metadata.jwks_uri, "the key set (jwks_uri)"),
            (&metadata.revocation_endpoint, "the revocation endpoint"),
            (&metadata.registration_endpoint, "the registration endpoint"),
            (
                &metadata.device_authorization_endpoint,
                "the device authorization endpoint",
            ),
        ];
        for (url, what) in optional {
            if let Some(url) = url {
                self.check(url, what)?;
            }
        }
        Ok(())
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The parameters of a `Bearer` challenge in `WWW-Authenticate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Parses the `Bearer` challenge out of a `WWW-Authenticate` value (other schemes are skipped).
pub fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    parse_challenge(header, "bearer")
}

/// Parses the challenge of `scheme` (`Bearer`, `DPoP`; any case) out of a `WWW-Authenticate`
/// value; the parameters Lanyard reads are the same for both.
pub fn parse_challenge(header: &str, scheme: &str) -> Option<BearerChallenge> {
    let wanted = scheme;
    let mut rest = header.trim();
    loop {
        let (scheme, after) = split_token(rest);
        if scheme.is_empty() {
            return None;
        }
        let (params, remaining) = parse_auth_params(after);
        if scheme.eq_ignore_ascii_case(wanted) {
            let mut challenge = BearerChallenge::default();
            for (k, v) in params {
                match k.to_ascii_lowercase().as_str() {
                    "resource_metadata" => challenge.resource_metadata = Some(v),
                    "scope" => challenge.scope = Some(v),
                    "error" => challenge.error = Some(v),
                    "error_description" => challenge.error_description = Some(v),
                    _ => {}
                }
            }
            return Some(challenge);
        }
        rest = remaining.trim_start_matches([',', ' ']);
    }
}

fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s
        .find(|c: char| c.is_whitespace() || c == ',')
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// Reads `k=v` / `k="v"` pairs until the next challenge's scheme; returns the rest.
fn parse_auth_params(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = s.find('=') else {
            return (params, s);
        };
        let key = &s[..eq];
        if key.is_empty() || key.contains(char::is_whitespace) {
            // A new scheme starts here.
            return (params, s);
        }
        let after = &s[eq + 1..];
        if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => value.push(c),
                }
            }
            params.push((key.to_owned(), value));
            s = &quoted[end.min(quoted.len())..];
        } else {
            let end = after.find(',').unwrap_or(after.len());
            params.push((key.to_owned(), after[..end].trim().to_owned()));
            s = &after[end..];
        }
    }
}

/// RFC 9728 metadata locations for an MCP server URL: path-inserted, then root.
pub fn protected_resource_metadata_urls(server: &Url) -> Vec<Url> {
    let mut urls = Vec::new();
    let path = server.path().trim_end_matches('/');
    let mut base = server.clone();
    base.set_query(None);
    base.set_fragment(None);
    if !path.is_empty() {
        let mut u = base.clone();
        u.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
        urls.push(u);
    }
    let mut root = base;
    root.set_path("/.well-known/oauth-protected-resource");
    urls.push(root);
    urls
}

/// RFC 8414 / OIDC metadata locations for `issuer`, in the MCP order.
pub fn authorization_server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut base = issuer.clone();
    base.set_query(None);
    base.set_fragment(None);
    let at = |p: String| {
        let mut u = base.clone();
        u.set_path(&p);
        u
    };
    if path.is_empty() {
        vec![
            at("/.well-known/oauth-authorization-server".into()),
            at("/.well-known/openid-configuration".into()),
        ]
    } else {
        vec![
            at(format!("/.well-known/oauth-authorization-server{path}")),
            at(format!("/.well-known/openid-configuration{path}")),
            at(format!("{path}/.well-known/openid-configuration")),
        ]
    }
}

/// RFC 9728 protected resource metadata (the fields Lanyard reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// RFC 8414 / OpenID Connect Discovery metadata (the fields Lanyard reads).
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    #[serde(default)]
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Url,
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    #[serde(default)]
    pub device_authorization_endpoint: Option<Url>,
    /// RFC 7591 dynamic client registration, where offered.
    #[serde(default)]
    pub registration_endpoint: Option<Url>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(default)]
    pub authorization_grant_profiles_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub identity_chaining_requested_token_types_supported: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// RFC 9449 §5.1: the proof algorithms it takes; absent, it does not bind tokens.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Client ID Metadata Documents: a URL is accepted as `client_id`.
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

impl AuthorizationServerMetadata {
    /// Whether the server says it takes ID-JAGs. Absent lists are not proof of the contrary, so
    /// callers use this for diagnostics, not to refuse.
    pub fn advertises_id_jag(&self) -> bool {
        self.authorization_grant_profiles_supported
            .iter()
            .any(|p| p == GRANT_PROFILE_ID_JAG)
            || self
                .grant_types_supported
                .iter()
                .any(|g| g == GRANT_JWT_BEARER)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    response: &HttpResponse,
    what: &'static str,
) -> Result<T, WireError> {
    if !(200..300).contains(&response.status) {
        return Err(WireError::Status {
            url: redacted_url(&response.url),
            status: response.status,
            excerpt: excerpt(&response.body),
        });
    }
    serde_json::from_slice(&response.body).map_err(|e| WireError::Malformed {
        url: redacted_url(&response.url),
        what,
        detail: format!("{} ({})", capped_message(e), excerpt(&response.body)),
    })
}

/// Parses AS metadata fetched for `expected_issuer` and insists on a byte-exact issuer.
pub fn parse_authorization_server_metadata(
    response: &HttpResponse,
    expected_issuer: &str,
) -> Result<AuthorizationServerMetadata, WireError> {
    let metadata: AuthorizationServerMetadata =
        parse_json(response, "authorization server metadata")?;
    if metadata.issuer != expected_issuer {
        return Err(WireError::IssuerMismatch {
            url: redacted_url(&response.url),
            expected: expected_issuer.to_owned(),
            found: metadata.issuer,
        });
    }
    Ok(metadata)
}

pub fn parse_protected_resource_metadata(
    response: &HttpResponse,
) -> Result<ProtectedResourceMetadata, WireError> {
    parse_json(response, "protected resource metadata")
}

/// Whether two resource identifiers name the same resource (a trailing slash on the path is not a
/// difference any server means).
pub fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Whether the protected resource `resource` covers the MCP endpoint `server`: the same origin,
/// and the resource's path is the server's or one of its parent paths (a server at
/// `https://m.example/mcp` may name `https://m.example` as its resource, as the MCP SDKs accept).
/// A different origin, or a path beside the server's, is another resource.
pub fn resource_covers(resource: &str, server: &Url) -> bool {
    let Ok(resource) = Url::parse(resource) else {
        return false;
    };
    if resource.scheme() != server.scheme()
        || resource.host_str() != server.host_str()
        || resource.port_or_known_default() != server.port_or_known_default()
    {
        return false;
    }
    let parent = resource.path().trim_end_matches('/');
    let path = server.path().trim_end_matches('/');
    parent.is_empty() || path == parent || path.starts_with(&format!("{parent}/"))
}

/// Fetches AS metadata for `issuer`, trying the well-knowns in order. A 404 (or other 4xx) moves
/// on to the next location; an issuer mismatch or a transport failure stops at once. The
/// endpoints it names are held to [`DiscoveredUrls::like`] the issuer.
pub async fn fetch_authorization_server_metadata(
    http: &HttpExecutor,
    issuer: &str,
) -> Result<AuthorizationServerMetadata, WireError> {
    let issuer_url = parse_issuer(issuer)?;
    fetch_authorization_server_metadata_with(http, issuer, DiscoveredUrls::like(&issuer_url)).await
}

fn parse_issuer(issuer: &str) -> Result<Url, WireError> {
    Url::parse(issuer).map_err(|e| {
        WireError::Discovery(format!(
            "authorization server issuer {issuer:?} is not a URL: {e}"
        ))
    })
}

/// [`fetch_authorization_server_metadata`] under an explicit rule for the URLs it follows.
pub async fn fetch_authorization_server_metadata_with(
    http: &HttpExecutor,
    issuer: &str,
    urls: DiscoveredUrls,
) -> Result<AuthorizationServerMetadata, WireError> {
    let issuer_url = parse_issuer(issuer)?;
    urls.check(&issuer_url, "the authorization server")?;
    let mut last = None;
    for url in authorization_server_metadata_urls(&issuer_url) {
        let response = http.execute(&HttpRequest::get(url)).await?;
        if (400..500).contains(&response.status) {
            last = Some(response.status);
            continue;
        }
        let metadata = parse_authorization_server_metadata(&response, issuer)?;
        urls.check_metadata(&metadata)?;
        return Ok(metadata);
    }
    Err(WireError::Discovery(format!(
        "no authorization server metadata for {issuer} at any well-known location (last answer HTTP {})",
        last.unwrap_or(0)
    )))
}

/// What discovery learned about one MCP server.
#[derive(Debug, Clone)]
pub struct DiscoveredServer {
    /// The RFC 9728 resource identifier.
    pub resource: String,
    pub authorization_server: AuthorizationServerMetadata,
    /// Scopes the server asked for in its challenge (authoritative), else from its PRM.
    pub challenge_scopes: Vec<String>,
    /// Whether [`DiscoveredServer::challenge_scopes`] came from the 401 challenge (else from the
    /// protected resource metadata's `scopes_supported`, or nowhere).
    pub scopes_from_challenge: bool,
}

/// The body of the unauthenticated probe: an MCP `initialize`, which a protected server must answer
/// with 401 before looking at it.
const PROBE_BODY: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"lanyard","version":"0"}}}"#;

/// The second probe, for a server that answered the first without a challenge.
const SECOND_PROBE_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;

/// Discovers the authorization server of the MCP server at `server_url`.
///
/// Sends an MCP request without a token and reads the 401 challenge; a server that answers
/// anything else (or no `resource_metadata`) is looked up at the RFC 9728 well-knowns. What it
/// names is held to [`DiscoveredUrls::like`] the server's URL.
pub async fn discover_server(
    http: &HttpExecutor,
    server_url: &Url,
) -> Result<DiscoveredServer, WireError> {
    discover_server_with(http, server_url, DiscoveredUrls::like(server_url)).await
}

/// [`discover_server`] under an explicit rule for the URLs it follows.
pub async fn discover_server_with(
    http: &HttpExecutor,
    server_url: &Url,
    urls: DiscoveredUrls,
) -> Result<DiscoveredServer, WireError> {
    let response = http.probe_post_json(server_url, PROBE_BODY).await?;
    let challenge = if response.status == 401 {
        response
            .header_values("www-authenticate")
            .find_map(parse_bearer_challenge)
    } else {
        None
    };
    // A server may leave `initialize` open and protect only what follows: ask again with a
    // request it must protect, so the challenge (and its `scope`) is the one a client meets.
    let challenge = match challenge {
        Some(challenge) => Some(challenge),
        None if response.status != 401 => {
            let again = http.probe_post_json(server_url, SECOND_PROBE_BODY).await?;
            (again.status == 401)
                .then(|| {
                    again
                        .header_values("www-authenticate")
                        .find_map(parse_bearer_challenge)
                })
                .flatten()
        }
        None => None,
    };
    let challenge = challenge.unwrap_or_default();
    let prm_urls: Vec<Url> = match challenge.resource_metadata.as_deref().map(Url::parse) {
        // The advertised location first; if it is gone, the well-knowns (servers get this wrong).
        Some(Ok(url)) => {
            urls.check(&url, "the server's resource_metadata")?;
            std::iter::once(url)
                .chain(protected_resource_metadata_urls(server_url))
                .collect()
        }
        Some(Err(e)) => {
            return Err(WireError::Discovery(format!(
                "the server's resource_metadata is not a URL: {e}"
            )));
        }
        None => protected_resource_metadata_urls(server_url),
    };
    let mut prm = None;
    let mut last_error = None;
    for url in prm_urls {
        let response = http.execute(&HttpRequest::get(url)).await?;
        if (400..500).contains(&response.status) {
            last_error = Some(response.status);
            continue;
        }
        prm = Some(parse_protected_resource_metadata(&response)?);
        break;
    }
    let prm = prm.ok_or_else(|| {
        WireError::Discovery(format!(
            "{} publishes no protected resource metadata (last answer HTTP {})",
            redacted_url(server_url),
            last_error.unwrap_or(0)
        ))
    })?;
    if !resource_covers(&prm.resource, server_url) {
        return Err(WireError::Discovery(format!(
            "protected resource metadata names resource {:?}, not {}",
            prm.resource,
            redacted_url(server_url)
        )));
    }
    let issuer = prm.authorization_servers.first().ok_or_else(|| {
        WireError::Discovery(format!(
            "{} names no authorization server",
            redacted_url(server_url)
        ))
    })?;
    let authorization_server = fetch_authorization_server_metadata_with(http, issuer, urls).await?;
    let challenge_scopes = match challenge.scope.as_deref() {
        Some(scope) => super::token::split_scopes(scope),
        None => prm.scopes_supported.clone(),
    };
    Ok(DiscoveredServer {
        resource: prm.resource,
        authorization_server,
        challenge_scopes,
        scopes_from_challenge: challenge.scope.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("static URL")
    }

    /// Found by the `prm_metadata` fuzz property (fuzz/regressions/prm_metadata/): serde quotes a
    /// wrongly typed value whole, so a megabyte string made a megabyte error message.
    #[test]
    fn a_huge_wrongly_typed_value_makes_a_short_error() {
        let body = format!(
            r#"{{"resource":"https://m.example/mcp","authorization_servers":"{}"}}"#,
            "é".repeat(512 * 1024)
        );
        let response = HttpResponse {
            url: url("https://m.example/.well-known/oauth-protected-resource"),
            status: 200,
            headers: Vec::new(),
            body: body.into_bytes(),
        };
        let error = parse_protected_resource_metadata(&response).expect_err("a string, not a list");
        let text = error.to_string();
        assert!(text.len() < 4 * 1024, "{} bytes", text.len());
        assert!(text.contains("invalid type: string"), "{text}");
    }

    #[test]
    fn challenge_with_quoted_params_and_other_schemes() {
        let c = parse_bearer_challenge(
            r#"Basic realm="x", Bearer resource_metadata="https://m.example/.well-known/oauth-protected-resource/mcp", scope="a b", error="invalid_token""#,
        )
        .expect("bearer");
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://m.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("a b"));
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(parse_bearer_challenge("Basic realm=\"x\""), None);
        assert_eq!(
            parse_bearer_challenge("Bearer"),
            Some(BearerChallenge::default())
        );
    }

    #[test]
    fn prm_urls_path_inserted_then_root() {
        let urls = protected_resource_metadata_urls(&url("https://m.example/tenant/mcp?x=1"));
        assert_eq!(
            urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            [
                "https://m.example/.well-known/oauth-protected-resource/tenant/mcp",
                "https://m.example/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            protected_resource_metadata_urls(&url("https://m.example/")).len(),
            1
        );
    }

    #[test]
    fn as_metadata_urls_in_mcp_order() {
        let with_path = authorization_server_metadata_urls(&url("https://as.example/tenant/"));
        assert_eq!(
            with_path.iter().map(Url::as_str).collect::<Vec<_>>(),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant",
                "https://as.example/.well-known/openid-configuration/tenant",
                "https://as.example/tenant/.well-known/openid-configuration",
            ]
        );
        let root = authorization_server_metadata_urls(&url("https://as.example"));
        assert_eq!(
            root.iter().map(Url::as_str).collect::<Vec<_>>(),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn a_resource_covers_its_own_path_and_below() {
        let server = url("https://m.example/tenant/mcp");
        for covers in [
            "https://m.example",
            "https://m.example/",
            "https://m.example/tenant",
            "https://m.example/tenant/mcp/",
            "https://m.example:443/tenant/mcp",
        ] {
            assert!(resource_covers(covers, &server), "{covers}");
        }
        for other in [
            "https://evil.example/tenant/mcp",
            "http://m.example/tenant/mcp",
            "https://m.example:8443/tenant/mcp",
            "https://m.example/ten",
            "https://m.example/other/mcp",
            "https://m.example/tenant/mcp/more",
            "not a url",
        ] {
            assert!(!resource_covers(other, &server), "{other}");
        }
    }

    #[test]
    fn issuer_must_match_byte_for_byte() {
        let response = HttpResponse {
            url: url("https://as.example/.well-known/oauth-authorization-server"),
            status: 200,
            headers: vec![],
            body:
                br#"{"issuer":"https://as.example/","token_endpoint":"https://as.example/token"}"#
                    .to_vec(),
        };
        assert!(parse_authorization_server_metadata(&response, "https://as.example/").is_ok());
        let err = parse_authorization_server_metadata(&response, "https://as.example")
            .expect_err("mismatch");
        assert!(matches!(err, WireError::IssuerMismatch { .. }));
    }
}
