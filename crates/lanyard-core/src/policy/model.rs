//! The policy's data model: the one set of Rust types every source (JSON files, macOS managed
//! preferences, the Windows registry) is read into, and from which the JSON Schema is generated.
//!
//! Plain serde types with defaults and no behaviour beyond lookups; reading sources, merging,
//! and validating live in sibling modules. A secret never appears here: a policy *refers* to a
//! keychain entry, a protected file or an environment variable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::oauth::KeyAlgorithm;
use lanyard_schedule::defaults;

/// The Lanyard policy: which identity provider to sign in at, which MCP servers to obtain tokens
/// for, and how the app behaves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Lanyard policy")]
pub struct Policy {
    /// The corporate identity provider. Optional when every server uses client credentials.
    #[serde(default)]
    pub idp: Option<IdpPolicy>,
    /// The MCP servers Lanyard obtains tokens for.
    #[serde(default)]
    pub servers: Vec<ServerPolicy>,
    /// How the app behaves.
    #[serde(default)]
    pub settings: Settings,
    /// Allows plain-HTTP loopback endpoints (the development testbed). Never set in production.
    #[serde(default)]
    pub dev_mode: bool,
}

/// The corporate identity provider (OpenID Connect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdpPolicy {
    /// The OpenID Connect issuer URL (HTTPS).
    pub issuer: String,
    /// Lanyard's client id at the identity provider.
    pub client_id: String,
    /// How Lanyard authenticates at the identity provider's token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuthPolicy,
    /// Scopes requested at sign-in; must include `openid`.
    #[serde(default = "default_idp_scopes")]
    #[schemars(default = "default_idp_scopes")]
    pub scopes: Vec<String>,
    /// Extra query parameters for the authorization request (e.g. `domain_hint`).
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    /// The single sign-on protocol: `oidc` (authorization code + PKCE) or `saml` (a SAML 2.0
    /// assertion exchanged at the token endpoint for an IdP refresh token, which is then the
    /// subject of every ID-JAG exchange). The token endpoint is still found from `issuer`.
    #[serde(default)]
    pub sign_in: SignInProtocol,
    /// With `sign_in: saml`: the IdP's SAML 2.0 single sign-on URL (HTTP-Redirect binding).
    #[serde(default)]
    pub saml_sso_url: Option<String>,
    /// With `sign_in: saml`: Lanyard's SAML service provider entity id at the IdP (the assertion's
    /// `Audience`, which the IdP maps to `client_id`). Defaults to `client_id`.
    #[serde(default)]
    pub saml_sp_entity_id: Option<String>,
}

/// How the user signs in at the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignInProtocol {
    /// OpenID Connect: authorization code + PKCE through the system browser.
    #[default]
    Oidc,
    /// SAML 2.0 Web Browser SSO (HTTP-Redirect request, HTTP-POST response to the loopback).
    Saml,
}

impl IdpPolicy {
    /// The SAML service provider entity id: `saml_sp_entity_id`, else `client_id`.
    pub fn sp_entity_id(&self) -> &str {
        self.saml_sp_entity_id.as_deref().unwrap_or(&self.client_id)
    }
}

fn default_idp_scopes() -> Vec<String> {
    ["openid", "offline_access", "email"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// How an MCP server's token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServerMode {
    /// Exchange the user's ID token for an ID-JAG at the IdP, then redeem it at the server's
    /// authorization server.
    #[default]
    EnterpriseManaged,
    /// The OAuth client-credentials grant (machines, CI).
    ClientCredentials,
    /// Workload identity federation (SEP-1933): the machine's platform JWT (a CI job's OIDC
    /// token, a Kubernetes service-account token), read from `workload_token`, is the jwt-bearer
    /// assertion at the server's authorization server. No stored secret, no user.
    WorkloadIdentity,
    /// The standard MCP authorization (OAuth 2.1 authorization code + PKCE) for servers without
    /// Enterprise-Managed Authorization: the employee connects once in the browser
    /// (`lanyard connect <id>`), then the agent refreshes the tokens. The client identity is
    /// `client_id` (registered there by the administrator), else `client_id_metadata_url`, else
    /// dynamic registration where `allow_dynamic_registration` allows it.
    Oauth,
}

impl ServerMode {
    /// Whether tokens are for the signed-in employee (else for the machine, with no sign-in).
    pub fn needs_user(self) -> bool {
        self == Self::EnterpriseManaged
    }
}

/// One MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerPolicy {
    /// A stable identifier: letters, digits, `-`, `_` or `.`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub id: String,
    /// The name users see.
    pub display_name: String,
    /// The MCP endpoint URL (HTTPS).
    pub url: String,
    /// The authorization server's issuer; discovered from the server when absent. Required (or
    /// `allowed_authorization_servers`) when Lanyard authenticates there with a secret or a key.
    #[serde(default)]
    pub authorization_server: Option<String>,
    /// Issuers that discovery may find for this server, when `authorization_server` is absent.
    /// Without this list the first issuer discovered is pinned, and a different one later is an
    /// error an administrator must accept here.
    #[serde(default)]
    pub allowed_authorization_servers: Vec<String>,
    /// The RFC 9728 resource identifier; discovered (or the URL) when absent.
    #[serde(default)]
    pub resource: Option<String>,
    /// Lanyard's client id at the server's authorization server. Required, except with
    /// `"mode": "oauth"`, where `client_id_metadata_url` or `allow_dynamic_registration` may stand
    /// in for it.
    #[serde(default)]
    pub client_id: String,
    /// With `oauth`: the URL of the Client ID Metadata Document the company hosts for Lanyard
    /// (https), used as the client id where the authorization server accepts such documents.
    #[serde(default)]
    pub client_id_metadata_url: Option<String>,
    /// With `oauth`: whether Lanyard may register itself at the authorization server (RFC 7591
    /// dynamic client registration) when neither `client_id` nor a metadata document applies.
    #[serde(default)]
    pub allow_dynamic_registration: bool,
    /// How Lanyard authenticates at the server's authorization server.
    #[serde(default)]
    pub client_auth: ClientAuthPolicy,
    /// Scopes to request. Also the ceiling: a client (or a server's 403 `insufficient_scope`) may
    /// ask for more only among `allowed_extra_scopes`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Scopes beyond `scopes` that a client may ask for, one request at a time (after a 403
    /// `insufficient_scope`). Empty: `scopes` is the ceiling.
    #[serde(default)]
    pub allowed_extra_scopes: Vec<String>,
    /// How the token is obtained.
    #[serde(default)]
    pub mode: ServerMode,
    /// With `workload-identity`: where the workload's platform JWT is. A file is read again at
    /// every grant, so a rotated token (Kubernetes projects a new one before the old expires) is
    /// the one used; an environment variable is read at every grant too.
    #[serde(default)]
    pub workload_token: Option<SecretSource>,
    /// When the authorization server answers the jwt-bearer grant with a refresh token, renew
    /// the access token with it instead of a new ID-JAG, for at most 8 hours after that ID-JAG
    /// (then a new ID-JAG: the identity provider decides again). Off by default: every renewal
    /// then asks the identity provider, which can cut a user off within one access token's life.
    #[serde(default)]
    pub use_refresh_token: bool,
    /// Sender-constrained tokens (RFC 9449 DPoP): `if_supported` (the default) binds the tokens
    /// to this device's key when the authorization server offers it, `required` refuses bearer
    /// tokens, `off` never asks. A bound token works only through `lanyard proxy` (or with
    /// `lanyard token --dpop`), never as a fixed header.
    #[serde(default)]
    pub dpop: crate::oauth::DpopUse,
}

/// Where a client secret comes from. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// An entry of Lanyard's keychain service.
    Keychain(String),
    /// A root-deployed file (one trailing newline is ignored).
    File(PathBuf),
    /// An environment variable (CI and daemons).
    Env(String),
}

/// Client authentication at a token endpoint, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientAuthPolicy {
    /// A public client.
    #[default]
    None,
    /// HTTP Basic with a client secret.
    ClientSecretBasic {
        /// Where the secret is.
        secret: SecretSource,
    },
    /// The client secret in the form body.
    ClientSecretPost {
        /// Where the secret is.
        secret: SecretSource,
    },
    /// A JWT client assertion signed with a private key (RFC 7523). Exactly one of `key` (a key
    /// the operating system holds and never lets out: a TPM, the Secure Enclave, a PKCS#11 token,
    /// CNG) and `key_file` (a PEM file: servers and CI).
    PrivateKeyJwt {
        /// A PEM private key file deployed by the administrator.
        #[serde(default)]
        key_file: Option<PathBuf>,
        /// A key held by the operating system, by reference.
        #[serde(default)]
        key: Option<KeyReference>,
        /// The signature algorithm. Default: ES256 for `key`, RS256 for `key_file`.
        #[serde(default)]
        #[schemars(with = "Option<KeyAlgorithmName>")]
        alg: Option<KeyAlgorithm>,
        /// The key id announced in the assertion header. Default for `key`: the key's RFC 7638
        /// thumbprint, which `lanyard device-key show` prints for registration.
        #[serde(default)]
        kid: Option<String>,
    },
}

impl ClientAuthPolicy {
    /// The signature algorithm of a `private_key_jwt` configuration: as set, else ES256 for a key
    /// the OS holds (the one every store signs with, the Secure Enclave's only one) and RS256 for
    /// a PEM file (what earlier versions assumed).
    pub fn key_algorithm(&self) -> Option<KeyAlgorithm> {
        match self {
            Self::PrivateKeyJwt { alg: Some(alg), .. } => Some(*alg),
            Self::PrivateKeyJwt { key: Some(_), .. } => Some(KeyAlgorithm::ES256),
            Self::PrivateKeyJwt { .. } => Some(KeyAlgorithm::RS256),
            _ => None,
        }
    }
}

/// A private key the operating system holds, named by where it is; the key itself never leaves
/// the store. `store` picks the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "store", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyReference {
    /// A PKCS#11 token (Linux): a TPM 2.0 through `tpm2-pkcs11`, a smart card, SoftHSM2.
    Pkcs11 {
        /// The PKCS#11 module (an administrator's file), e.g.
        /// `/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so`.
        module: PathBuf,
        /// The token's label.
        token: String,
        /// The private key's `CKA_LABEL`.
        #[serde(default)]
        label: Option<String>,
        /// The private key's `CKA_ID`, in hex; with `label`, both must match.
        #[serde(default)]
        id: Option<String>,
        /// The token's user PIN, where the token asks for one.
        #[serde(default)]
        pin: Option<SecretSource>,
    },
    /// A CNG key (Windows): by key name in a key storage provider, or by the thumbprint of a
    /// certificate whose private key is in CNG (an Intune PKCS or SCEP certificate).
    Windows {
        /// The persisted key's name.
        #[serde(default)]
        name: Option<String>,
        /// The certificate's SHA-1 thumbprint, in hex.
        #[serde(default)]
        thumbprint: Option<String>,
        /// The user's keys and certificates, or the machine's.
        #[serde(default)]
        scope: KeyScope,
    },
    /// A key in the macOS Keychain, by label; a Secure Enclave key is found the same way.
    Macos {
        /// The key's label (`kSecAttrLabel`).
        label: String,
    },
}

/// Whose key store a Windows key is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    #[default]
    User,
    Machine,
}

// The schema's view of `KeyAlgorithm`, which lives in the wire layer.
/// A signature algorithm for `private_key_jwt`.
#[derive(JsonSchema)]
#[allow(clippy::upper_case_acronyms, dead_code)]
enum KeyAlgorithmName {
    RS256,
    ES256,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn filter(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// An AI client whose MCP configuration Lanyard may wire up automatically.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AiClient {
    ClaudeCode,
    ClaudeDesktop,
    Cursor,
    Vscode,
    Gemini,
    Codex,
}

/// An AI client that can do enterprise-managed authorization itself, configured from the policy
/// by `lanyard clients install` instead of being wired to Lanyard.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum NativeEmaClient {
    /// VS Code 1.122 or later (`oauth.enterpriseManaged` servers, `mcp.enterpriseManagedAuth.idp`).
    Vscode,
    /// OpenAI Codex CLI (`auth = "ema_auth"` servers, `[mcp_enterprise_managed_auth.idp]`).
    Codex,
}

/// How the app behaves. Every key has a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Renew the sign-in session, and every server when servers are kept warm all day
    /// (`idle_after_secs` 0), when this fraction of the token's lifetime has passed (0.5–0.9). A
    /// server kept warm because clients use it is renewed late in its token's life instead (each
    /// renewal costs an ID-JAG): about two minutes before expiry, sized from what clients need,
    /// clock skew and the measured time of a grant, or `min_refresh_lead_secs` if longer.
    #[schemars(range(min = 0.5, max = 0.9))]
    pub refresh_at_fraction: f64,
    /// Refresh at least this many seconds before a token expires. A server in use is renewed in
    /// the window of this lead (or the measured one, if longer) before it: raising it lets clients
    /// ride out longer outages of the identity provider, at the price of more ID-JAGs.
    pub min_refresh_lead_secs: u64,
    /// How many requests to a host that many grants share run at once (1–256): token exchanges at
    /// the identity provider, discoveries and client-credentials grants. As many again may be
    /// under way at servers' own authorization servers, each asked as soon as its ID-JAG is in hand.
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrency: usize,
    /// How many scheduled grants (refreshes, retries) run at once against one host: the identity
    /// provider or one authorization server (1–256). A sign-in, a client's request or "refresh
    /// now" is not held back by it, only by `max_concurrency`.
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrency_per_host: usize,
    /// How widely refreshes spread: a refresh at `refresh_at_fraction` moves earlier by a random
    /// part of up to this fraction of the token's lifetime (0–0.4), so tokens granted together
    /// drift apart. (A server in use is renewed at a random point of a window one lead wide.)
    #[schemars(range(min = 0.0, max = 0.4))]
    pub refresh_jitter: f64,
    /// During an outage, a retry waits about as long as the outage has lasted so far, up to this
    /// many seconds (0–3600): when the network comes back, a fleet's retries spread over about the
    /// outage's length instead of arriving at once.
    #[schemars(range(max = 3600))]
    pub recovery_jitter_secs: u64,
    /// Servers whose token is minted only when a client first asks for it, not at sign-in (ids,
    /// or `*` for all); once minted it is kept fresh as usual.
    pub on_demand_servers: Vec<String>,
    /// A server that no client asked for in this many seconds is not refreshed in the background
    /// (0–604800; 0 keeps every server warm all day). It shows as ready on first use; the next
    /// request mints its token, one wait of about two round trips. Every ID-JAG costs quota at
    /// the identity provider (Okta: 250 per user and app a month without its AI-agent plan).
    #[schemars(range(max = 604800))]
    pub idle_after_secs: u64,
    /// ID-JAGs a server may mint in 30 days before its background refreshes stop (at 90 % of
    /// it). A client's request is never refused because of it. Absent: no budget.
    #[schemars(range(min = 1))]
    pub id_jag_monthly_budget: Option<u64>,
    /// Where "contact IT" points: an https or mailto URL.
    pub support_url: Option<String>,
    /// The proxy every request of Lanyard goes through (administrator only; Lanyard ignores
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and the system's proxy settings).
    pub proxy: Option<String>,
    /// Extra PEM CA bundles trusted on top of the OS trust store (administrator only; each file
    /// must be owned by root / an administrator and writable by no one else).
    pub extra_ca_files: Vec<PathBuf>,
    /// The agent's log verbosity (`LANYARD_LOG`, when set, wins).
    pub log_level: LogLevel,
    /// Start the tray when the user logs in (the tray starts the agent if none runs). The agent's
    /// own login item (systemd user unit, LaunchAgent, Run key) belongs to the installer.
    pub autostart: bool,
    /// Show desktop notifications (sign-in needed, access denied).
    pub notifications: bool,
    /// The AI clients `lanyard clients install all` wires (empty: every client Lanyard knows).
    pub ai_clients: Vec<AiClient>,
    /// The AI clients that do enterprise-managed authorization themselves (`vscode`, `codex`):
    /// `lanyard clients install` writes their own configuration from this policy (the IdP's
    /// issuer and client id, each enterprise-managed server marked as such) instead of entries
    /// that go through Lanyard. Empty: every client goes through Lanyard.
    pub ai_clients_native: Vec<NativeEmaClient>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            refresh_at_fraction: defaults::REFRESH_AT_FRACTION,
            min_refresh_lead_secs: defaults::MIN_REFRESH_LEAD_SECS,
            max_concurrency: defaults::MAX_CONCURRENCY,
            max_concurrency_per_host: defaults::MAX_CONCURRENCY_PER_HOST,
            refresh_jitter: defaults::REFRESH_JITTER,
            recovery_jitter_secs: defaults::RECOVERY_JITTER_SECS,
            on_demand_servers: Vec::new(),
            idle_after_secs: defaults::IDLE_AFTER_SECS,
            id_jag_monthly_budget: None,
            support_url: None,
            proxy: None,
            extra_ca_files: Vec::new(),
            log_level: LogLevel::Info,
            autostart: true,
            notifications: true,
            ai_clients: Vec::new(),
            ai_clients_native: Vec::new(),
        }
    }
}

/// What an administrator can do with a setting, and when a change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The key under `settings`.
    pub key: &'static str,
    /// Whether a mandatory value locks it (otherwise the administrator's value is only a default
    /// the user may change).
    pub lockable: bool,
    /// Whether a change applies to a running Lanyard (otherwise at the next start).
    pub dynamic: bool,
    /// Whether only an administrator's source may set it at all (the user's own configuration
    /// may not): what decides where sign-ins travel and whom TLS trusts.
    pub admin_only: bool,
}

const fn spec(key: &'static str, lockable: bool, dynamic: bool) -> SettingSpec {
    SettingSpec {
        key,
        lockable,
        dynamic,
        admin_only: false,
    }
}

const fn admin_spec(key: &'static str, dynamic: bool) -> SettingSpec {
    SettingSpec {
        key,
        lockable: true,
        dynamic,
        admin_only: true,
    }
}

/// Every key of [`Settings`], with its lock and reload behaviour.
pub const SETTING_SPECS: &[SettingSpec] = &[
    spec("refresh_at_fraction", true, true),
    spec("min_refresh_lead_secs", true, true),
    spec("max_concurrency", true, true),
    spec("max_concurrency_per_host", true, true),
    spec("refresh_jitter", true, true),
    spec("recovery_jitter_secs", true, true),
    spec("on_demand_servers", true, true),
    spec("idle_after_secs", true, true),
    spec("id_jag_monthly_budget", true, true),
    spec("support_url", true, true),
    admin_spec("proxy", true),
    admin_spec("extra_ca_files", true),
    spec("log_level", false, false),
    spec("autostart", true, false),
    spec("notifications", false, true),
    spec("ai_clients", true, true),
    spec("ai_clients_native", true, true),
];

/// The spec of settings key `key`.
pub fn setting_spec(key: &str) -> Option<&'static SettingSpec> {
    SETTING_SPECS.iter().find(|s| s.key == key)
}

/// Top-level keys only an administrator may set (users' own configuration may not).
pub const ADMIN_ONLY_KEYS: &[&str] = &["idp", "servers", "dev_mode"];

impl Policy {
    /// The server with id `id`.
    pub fn server(&self, id: &str) -> Option<&ServerPolicy> {
        self.servers.iter().find(|s| s.id == id)
    }
}

/// The JSON Schema of the policy, as deployed in `deploy/policy.schema.json`.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Policy).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".into(),
            serde_json::Value::String("urn:lanyard:policy".into()),
        );
    }
    schema
}
