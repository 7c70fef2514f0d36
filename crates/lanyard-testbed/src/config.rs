//! What the testbed should expect and answer: the IdP, the authorization servers, the MCP servers,
//! their registered clients and test users. Plain data with `Default`s and small builder helpers;
//! nothing here opens a socket.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::TestClock;

/// How a registered client authenticates at a token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Public client: `client_id` in the body, no secret.
    None,
    /// HTTP Basic with the form-urlencoded client id and this secret.
    ClientSecretBasic(String),
    /// `client_id` and `client_secret` in the body.
    ClientSecretPost(String),
    /// `private_key_jwt` signed by the key whose public half is this PEM (RSA or EC), or this
    /// public JWK (JSON text: what Okta registers for an AI agent).
    PrivateKeyJwt(String),
}

impl ClientAuth {
    /// The `token_endpoint_auth_methods_supported` name.
    pub fn method_name(&self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::ClientSecretBasic(_) => "client_secret_basic",
            ClientAuth::ClientSecretPost(_) => "client_secret_post",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// A client registered at the IdP or at an authorization server.
#[derive(Clone, Debug)]
pub struct RegisteredClient {
    /// The client id.
    pub client_id: String,
    /// How it must authenticate.
    pub auth: ClientAuth,
}

impl RegisteredClient {
    /// A client with the given id and authentication method.
    pub fn new(client_id: impl Into<String>, auth: ClientAuth) -> Self {
        Self {
            client_id: client_id.into(),
            auth,
        }
    }

    /// A public client (`none`).
    pub fn public(client_id: impl Into<String>) -> Self {
        Self::new(client_id, ClientAuth::None)
    }
}

/// A user who can sign in at the IdP.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// Subject identifier (`sub`).
    pub sub: String,
    /// Email address (`email` claim).
    pub email: String,
    /// Display name.
    pub name: String,
}

impl TestUser {
    /// A user with the given sub, email and name.
    pub fn new(sub: &str, email: &str, name: &str) -> Self {
        Self {
            sub: sub.into(),
            email: email.into(),
            name: name.into(),
        }
    }

    /// Whether `who` names this user (by sub, email or name).
    pub fn matches(&self, who: &str) -> bool {
        self.sub == who || self.email.eq_ignore_ascii_case(who) || self.name == who
    }
}

/// Where an issuer lives under its listener: a path such as `/tenant-a` (or empty) and whether the
/// issuer string ends in `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerPath {
    /// Path prefix without a trailing slash (`""` or `/tenant-a`).
    pub path: String,
    /// Whether the issuer identifier ends with `/`.
    pub trailing_slash: bool,
}

impl IssuerPath {
    /// A path (leading slash added, trailing slash stripped) and the trailing-slash flag.
    pub fn new(path: &str, trailing_slash: bool) -> Self {
        let trimmed = path.trim_matches('/');
        Self {
            path: if trimmed.is_empty() {
                String::new()
            } else {
                format!("/{trimmed}")
            },
            trailing_slash,
        }
    }

    /// The issuer identifier for a listener at `origin` (`http://127.0.0.1:P`).
    pub fn issuer(&self, origin: &str) -> String {
        let slash = if self.trailing_slash { "/" } else { "" };
        format!("{origin}{}{slash}", self.path)
    }
}

/// Where an authorization server publishes its metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataStyle {
    /// RFC 8414 only: `/.well-known/oauth-authorization-server{path}`.
    Rfc8414,
    /// OpenID Connect only: `/.well-known/openid-configuration{path}` and
    /// `{path}/.well-known/openid-configuration`.
    OidcOnly,
    /// Both of the above.
    #[default]
    Both,
}

/// Where an MCP server publishes its RFC 9728 protected resource metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrmLocation {
    /// `/.well-known/oauth-protected-resource{mcp path}`.
    PathInserted,
    /// `/.well-known/oauth-protected-resource`.
    Root,
    /// Both.
    #[default]
    Both,
}

/// The fake corporate IdP.
#[derive(Clone, Debug)]
pub struct IdpConfig {
    /// Issuer path and trailing-slash flag.
    pub issuer_path: IssuerPath,
    /// Clients allowed to sign users in and exchange tokens.
    pub clients: Vec<RegisteredClient>,
    /// Users on the login page.
    pub users: Vec<TestUser>,
    /// Whether to advertise and send the RFC 9207 `iss` authorization response parameter.
    pub advertise_iss_parameter: bool,
    /// ID token lifetime.
    pub id_token_lifetime: Duration,
    /// IdP access token lifetime (`expires_in` of code/refresh grants).
    pub access_token_lifetime: Duration,
    /// ID-JAG lifetime (`exp - iat`).
    pub id_jag_lifetime: Duration,
    /// Device-flow polling interval in seconds.
    pub device_interval_secs: u64,
    /// Device code lifetime.
    pub device_code_lifetime: Duration,
    /// Extra or overriding audience → client id mappings for the ID-JAG `client_id` claim (the
    /// testbed's own authorization servers are mapped automatically).
    pub audience_client_ids: HashMap<String, String>,
    /// Reject token exchanges whose `audience` is not a known authorization server
    /// (`invalid_target`). Off by default so wrong audiences reach the AS and fail there.
    /// Proofs at the token exchange must carry the IdP's nonce (`use_dpop_nonce` first). The
    /// IdP always takes a proof there and binds the ID-JAG to its key (`cnf.jkt`).
    pub dpop_require_nonce: bool,
    pub reject_unknown_audience: bool,
    /// Initial denials: (user sub or email, audience).
    pub denied: Vec<(String, String)>,
    /// Initial step-up rules: audience → maximum age of the user's authentication.
    pub require_auth_within: HashMap<String, Duration>,
    /// SAML service providers: SP entity id → the OAuth client id it maps to at the token
    /// exchange (the ID-JAG draft's Audience → client mapping). An entity id equal to a registered
    /// client id maps to that client without an entry here.
    pub saml_service_providers: HashMap<String, String>,
    /// How long the IdP session behind a SAML sign-in lasts: the refresh token the SAML exchange
    /// issues, and every one rotated from it, stops working this long after the sign-in.
    pub saml_session_lifetime: Duration,
    /// How long an assertion may be presented at the token endpoint (`NotOnOrAfter`).
    pub saml_assertion_lifetime: Duration,
}

impl Default for IdpConfig {
    fn default() -> Self {
        Self {
            issuer_path: IssuerPath::default(),
            clients: vec![RegisteredClient::public("lanyard-desktop")],
            users: vec![
                TestUser::new("alice", "alice@example.com", "Alice Example"),
                TestUser::new("bob", "bob@example.com", "Bob Example"),
            ],
            advertise_iss_parameter: true,
            id_token_lifetime: Duration::from_secs(3600),
            access_token_lifetime: Duration::from_secs(3600),
            id_jag_lifetime: Duration::from_secs(300),
            device_interval_secs: 5,
            device_code_lifetime: Duration::from_secs(600),
            audience_client_ids: HashMap::new(),
            reject_unknown_audience: false,
            dpop_require_nonce: false,
            denied: Vec::new(),
            require_auth_within: HashMap::new(),
            saml_service_providers: HashMap::new(),
            saml_session_lifetime: Duration::from_secs(8 * 3600),
            saml_assertion_lifetime: Duration::from_secs(300),
        }
    }
}

impl IdpConfig {
    /// Replaces the registered clients with this one.
    pub fn with_client(mut self, client: RegisteredClient) -> Self {
        self.clients = vec![client];
        self
    }

    /// Adds a registered client.
    pub fn add_client(mut self, client: RegisteredClient) -> Self {
        self.clients.push(client);
        self
    }

    /// Sets the issuer path.
    pub fn with_issuer_path(mut self, path: &str, trailing_slash: bool) -> Self {
        self.issuer_path = IssuerPath::new(path, trailing_slash);
        self
    }
}

/// One MCP authorization server.
#[derive(Clone, Debug)]
pub struct AsConfig {
    /// Name used to refer to it (MCP servers name the AS that protects them).
    pub name: String,
    /// Issuer path and trailing-slash flag.
    pub issuer_path: IssuerPath,
    /// Where its metadata is published.
    pub metadata_style: MetadataStyle,
    /// Fault: publish a different `issuer` in metadata than the one it is reached at.
    pub wrong_issuer_in_metadata: bool,
    /// Clients registered here (ids may differ from the IdP's).
    pub clients: Vec<RegisteredClient>,
    /// The client id the IdP places in ID-JAGs for this audience (default: first client's id).
    pub id_jag_client_id: Option<String>,
    /// The IdP it trusts: `(issuer, jwks_uri)`; `None` = the testbed's own IdP.
    pub trusted_idp: Option<(String, String)>,
    /// Access token lifetime.
    pub access_token_lifetime: Duration,
    /// Scopes it may grant (empty = any requested scope).
    pub allowed_scopes: Vec<String>,
    /// Answer a jwt-bearer grant with a refresh token too, valid this long (rotated at each use);
    /// `None`: no refresh tokens.
    pub refresh_token_lifetime: Option<Duration>,
    /// A workload platform it trusts for jwt-bearer (workload identity federation, SEP-1933): a
    /// CI's or a cluster's JWT issuer and the public key (PEM) its tokens are signed with.
    pub trusted_workload: Option<TrustedWorkload>,
    /// DPoP (RFC 9449): advertised in its metadata; a token request with a proof gets a token
    /// bound to the proof's key, and an ID-JAG bound by the IdP (`cnf.jkt`) is redeemed only
    /// with a proof of that key.
    pub dpop: Option<DpopSettings>,
    /// The standard MCP authorization (authorization code + PKCE) for `oauth` servers: an
    /// authorization endpoint that approves as `subject`, and dynamic registration if allowed.
    pub code_flow: Option<CodeFlowSettings>,
}

/// How an authorization server of the testbed runs the authorization code flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeFlowSettings {
    /// Who approves at its authorization endpoint (the tokens' `sub`).
    pub subject: String,
    /// Offer RFC 7591 dynamic registration (`registration_endpoint`).
    pub dynamic_registration: bool,
    /// Advertise and send RFC 9207 `iss` on the redirect.
    pub iss_parameter: bool,
}

/// How a server of the testbed treats DPoP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpopSettings {
    /// Hand out a nonce and refuse proofs without it (`use_dpop_nonce`).
    pub require_nonce: bool,
}

/// A workload identity issuer an authorization server trusts (a CI's OIDC tokens, a cluster's
/// service-account tokens).
#[derive(Clone, Debug)]
pub struct TrustedWorkload {
    /// The tokens' `iss`.
    pub issuer: String,
    /// The public key (PEM, RSA or EC) the tokens are signed with.
    pub public_key_pem: String,
}

impl AsConfig {
    /// This server binds tokens with DPoP (and wants its nonce in proofs when `require_nonce`).
    pub fn with_dpop(mut self, require_nonce: bool) -> Self {
        self.dpop = Some(DpopSettings { require_nonce });
        self
    }

    /// An authorization server at the root of its listener with one public client.
    pub fn new(name: &str, client_id: &str) -> Self {
        Self {
            name: name.into(),
            issuer_path: IssuerPath::default(),
            metadata_style: MetadataStyle::Both,
            wrong_issuer_in_metadata: false,
            clients: vec![RegisteredClient::public(client_id)],
            id_jag_client_id: None,
            trusted_idp: None,
            access_token_lifetime: Duration::from_secs(300),
            allowed_scopes: Vec::new(),
            refresh_token_lifetime: None,
            trusted_workload: None,
            dpop: None,
            code_flow: None,
        }
    }

    /// This server runs the authorization code flow for `alice@example.com`'s consent (subject
    /// `alice`), with RFC 9207 `iss`, dynamic registration when `dynamic_registration`, and
    /// rotating refresh tokens valid for a day.
    pub fn with_code_flow(mut self, dynamic_registration: bool) -> Self {
        self.code_flow = Some(CodeFlowSettings {
            subject: "alice".into(),
            dynamic_registration,
            iss_parameter: true,
        });
        self.refresh_token_lifetime
            .get_or_insert(Duration::from_secs(24 * 3600));
        self
    }

    /// Trusts the workload tokens of `issuer`, signed with the key whose public half is `pem`.
    pub fn trusting_workload(mut self, issuer: &str, pem: &str) -> Self {
        self.trusted_workload = Some(TrustedWorkload {
            issuer: issuer.into(),
            public_key_pem: pem.into(),
        });
        self
    }

    /// Sets the issuer path.
    pub fn with_issuer_path(mut self, path: &str, trailing_slash: bool) -> Self {
        self.issuer_path = IssuerPath::new(path, trailing_slash);
        self
    }

    /// Replaces the registered clients with this one.
    pub fn with_client(mut self, client: RegisteredClient) -> Self {
        self.clients = vec![client];
        self
    }

    /// Adds a registered client.
    pub fn add_client(mut self, client: RegisteredClient) -> Self {
        self.clients.push(client);
        self
    }

    /// Sets the allowed scopes.
    pub fn with_scopes(mut self, scopes: &[&str]) -> Self {
        self.allowed_scopes = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The client id the IdP should place in ID-JAGs for this AS.
    pub fn jag_client_id(&self) -> Option<String> {
        self.id_jag_client_id
            .clone()
            .or_else(|| self.clients.first().map(|c| c.client_id.clone()))
    }
}

impl Default for AsConfig {
    fn default() -> Self {
        Self::new("docs", "lanyard-docs").with_scopes(&["docs.read", "docs.write"])
    }
}

/// One MCP server (streamable HTTP).
#[derive(Clone, Debug)]
pub struct McpConfig {
    /// Name (used in the server info and the demo policy).
    pub name: String,
    /// Path of the MCP endpoint (`/mcp`, `/tenant/mcp`).
    pub path: String,
    /// Name of the [`AsConfig`] that protects it.
    pub auth_server: String,
    /// Scopes every request needs.
    pub required_scopes: Vec<String>,
    /// Where the protected resource metadata lives.
    pub prm_location: PrmLocation,
    /// Whether the 401 challenge carries `resource_metadata`.
    pub advertise_resource_metadata: bool,
    /// Answer POSTed requests as a `text/event-stream` (a `tools/call` then sends its progress
    /// and log notifications before the result) instead of one JSON body.
    pub sse_responses: bool,
    /// DPoP-bound tokens must come with proofs carrying this server's nonce (RFC 9449 §9).
    pub dpop_require_nonce: bool,
    /// Offer the GET stream for server-initiated messages (else GET answers 405); see
    /// `McpHandle::push`.
    pub get_stream: bool,
}

impl McpConfig {
    /// An MCP server at `/mcp` protected by the named AS, requiring `scopes`.
    pub fn new(name: &str, auth_server: &str, scopes: &[&str]) -> Self {
        Self {
            name: name.into(),
            path: "/mcp".into(),
            auth_server: auth_server.into(),
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            prm_location: PrmLocation::Both,
            advertise_resource_metadata: true,
            sse_responses: false,
            dpop_require_nonce: false,
            get_stream: false,
        }
    }

    /// Answers requests as SSE streams and offers the GET stream.
    pub fn streaming(mut self) -> Self {
        self.sse_responses = true;
        self.get_stream = true;
        self
    }

    /// Sets the endpoint path.
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = format!("/{}", path.trim_start_matches('/'));
        self
    }
}

impl Default for McpConfig {
    fn default() -> Self {
        Self::new("docs", "docs", &["docs.read"])
    }
}

/// Everything the testbed starts.
#[derive(Clone, Debug)]
pub struct TestbedConfig {
    /// The IdP.
    pub idp: IdpConfig,
    /// The authorization servers.
    pub auth_servers: Vec<AsConfig>,
    /// The MCP servers.
    pub mcp_servers: Vec<McpConfig>,
    /// Latency added to every request (changeable at runtime).
    pub latency: Duration,
    /// The clock all components read.
    pub clock: TestClock,
    /// Log every token-endpoint request ([`crate::Testbed::traffic`]); peaks are kept regardless.
    pub record_traffic: bool,
}

impl Default for TestbedConfig {
    fn default() -> Self {
        Self {
            idp: IdpConfig::default(),
            auth_servers: vec![AsConfig::default()],
            mcp_servers: vec![McpConfig::default()],
            latency: Duration::ZERO,
            clock: TestClock::new(),
            record_traffic: false,
        }
    }
}

impl TestbedConfig {
    /// An IdP with no authorization servers or MCP servers.
    pub fn idp_only() -> Self {
        Self {
            auth_servers: Vec::new(),
            mcp_servers: Vec::new(),
            ..Self::default()
        }
    }

    /// Adds an authorization server.
    pub fn with_auth_server(mut self, config: AsConfig) -> Self {
        self.auth_servers.push(config);
        self
    }

    /// Adds an MCP server.
    pub fn with_mcp_server(mut self, config: McpConfig) -> Self {
        self.mcp_servers.push(config);
        self
    }

    /// Uses this clock.
    pub fn with_clock(mut self, clock: TestClock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the injected latency.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Logs every token-endpoint request with its time and the number in flight.
    pub fn with_traffic_log(mut self) -> Self {
        self.record_traffic = true;
        self
    }

    /// Replaces the IdP configuration.
    pub fn with_idp(mut self, idp: IdpConfig) -> Self {
        self.idp = idp;
        self
    }
}
